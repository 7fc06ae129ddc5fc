"""The four sources: their names, endpoint settings and image CDN hosts.

One table that the spiders, the images pipeline (host allow-list) and the
tests share, so a source is described once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


@dataclass(frozen=True)
class Source:
    name: str
    #: Settings holding every URL prefix the source's spider requests.
    url_settings: tuple[str, ...]
    #: The live site's image CDN hosts.
    cdn_hosts: tuple[str, ...]


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "zillow",
            ("PHX_ZILLOW_BASE_URL", "PHX_ZILLOW_AUTOCOMPLETE_URL"),
            ("photos.zillowstatic.com",),
        ),
        Source("redfin", ("PHX_REDFIN_BASE_URL",), ("ssl.cdn-redfin.com",)),
        Source(
            "maricopa",
            ("PHX_MARICOPA_API_URL", "PHX_MARICOPA_GIS_URL", "PHX_MARICOPA_AERIAL_URL"),
            (),
        ),
        Source(
            "phoenix_mls",
            ("PHX_MLS_BASE_URL",),
            ("cdn.photos.sparkplatform.com", "cdn.resize.sparkplatform.com"),
        ),
    )
}


def image_hosts(source: str, settings: BaseSettings) -> frozenset[str]:
    """Hosts a photo of ``source`` may come from: its CDNs and its configured hosts."""
    spec = SOURCES[source]
    configured = {urlsplit(settings.get(name) or "").netloc for name in spec.url_settings}
    return frozenset(spec.cdn_hosts) | {host for host in configured if host}


def parse_sources(text: str) -> tuple[str, ...]:
    """``"zillow,redfin"`` -> ``("zillow", "redfin")``; unknown names are an error."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise ValueError(
            f"-a sources={text!r}: unknown source(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SOURCES)}"
        )
    return names
