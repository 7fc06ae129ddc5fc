"""Serving one photo file, intact or broken the way the dataset says.

Dataset photo faults: ``truncated`` (the JPEG cut short, consistent
Content-Length), ``html_as_jpeg`` (an error page labelled image/jpeg),
``empty`` (zero bytes), ``bomb`` (a small PNG that decodes to 100
megapixels), ``too_small`` (a 120x90 thumbnail instead of the photo).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred

from phx_scraper.sandbox import images
from phx_scraper.sandbox.base import Reply, SourceSite
from phx_scraper.sandbox.model import Picture

_HTML_ERROR = b"""<!DOCTYPE html><html><head><title>Error</title></head>
<body><h1>Something went wrong</h1>
<p>The image you requested is temporarily unavailable.</p></body></html>"""
_CACHE_HEADERS = {"Cache-Control": "public, max-age=31536000", "Access-Control-Allow-Origin": "*"}


def photo_spec(picture: Picture, size: tuple[int, int], **kwargs: object) -> images.PhotoSpec:
    return images.PhotoSpec(picture.seed, picture.scene, picture.native, size, **kwargs)  # type: ignore[arg-type]


def serve(
    site: SourceSite,
    key: str,
    produce: Callable[[], bytes],
    content_type: str,
    picture: Picture,
    fault: str | None = None,
) -> Deferred[Reply]:
    """Render (cached, in a thread) and wrap as a reply, applying ``fault``."""
    if fault == "bomb":
        return site.image("bomb", images.bomb).addCallback(
            lambda data: Reply(200, data, "image/png", dict(_CACHE_HEADERS), fault)
        )
    if fault == "too_small":
        return site.image(
            f"tiny:{picture.id}", lambda: images.tiny(picture.seed, picture.scene)
        ).addCallback(lambda data: Reply(200, data, "image/jpeg", dict(_CACHE_HEADERS), fault))
    if fault == "html_as_jpeg":
        return site.image("html", lambda: _HTML_ERROR).addCallback(
            lambda data: Reply(200, data, "image/jpeg", {}, fault)
        )
    if fault == "empty":
        return site.image("empty", lambda: b"").addCallback(
            lambda data: Reply(200, data, content_type, {}, fault)
        )

    def wrap(data: bytes) -> Reply:
        if fault == "truncated":
            data = data[: len(data) * 11 // 20]
        return Reply(200, data, content_type, dict(_CACHE_HEADERS), fault)

    return site.image(key, produce).addCallback(wrap)
