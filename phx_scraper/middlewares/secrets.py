"""Adds the Assessor's API token to its requests at the last moment, and takes it off again.

The token (environment variable ``PHX_MARICOPA_TOKEN``) is never part of a
request as the spider builds it: a JOBDIR serializes scheduled requests with
their headers, so the header exists only while the request is on the wire.
This middleware sits next to the downloader; its ``process_response`` runs
before the retry and redirect middlewares copy the request.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

TOKEN_ENV = "PHX_MARICOPA_TOKEN"
#: ``request.meta`` key a spider sets on requests that need the token.
META_KEY = "phx_maricopa_auth"
HEADER = "AUTHORIZATION"


def maricopa_token() -> str:
    return os.environ.get(TOKEN_ENV, "").strip()


class MaricopaTokenMiddleware:
    def __init__(self, token: str) -> None:
        self.token = token

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        # Without a token the Maricopa spider uses the ArcGIS route and never
        # marks a request, so an empty token is simply never sent.
        return cls(maricopa_token())

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if self.token and request.meta.get(META_KEY):
            request.headers[HEADER] = self.token

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Response:
        request.headers.pop(HEADER, None)
        return response

    def process_exception(
        self, request: Request, exception: Exception, spider: Spider | None = None
    ) -> None:
        request.headers.pop(HEADER, None)
