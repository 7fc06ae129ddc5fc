"""One benchmark crawl of the corpus with one variant, in its own process.

``python benchmarks/crawl.py --variant a --base-url URL --images N --store DIR --stats-out F``

The spider is the same for every variant: it reads each property's listing on
each source (``/<source>/p<k>.json``) and yields one item per pair. Only the
item type and the pipeline differ:

a, e  ``PropertyImagesItem`` through the project's settings as a crawl has them
      (ContentAddressedImagesPipeline, manifest writer, breaker, deltafetch,
      progress log); both sources point at the corpus server, so its host is trusted
b     ``{"image_urls": [...]}`` through stock ImagesPipeline, IMAGES_THUMBS 256x256
c     the same without thumbnails
d     ``{"file_urls": [...]}`` through stock FilesPipeline

(b)-(d) run on Scrapy's default settings. Every variant gets ``COMMON``. The
listing requests carry no ``deltafetch_key``, so a rerun (e) reads every
listing again and only the URL index can spare it the downloads.

The crawl's stats, with ``crawl_s`` (the time ``CrawlerProcess.start()`` took),
are written as JSON to ``--stats-out``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from corpus import SOURCES, properties  # benchmarks/ is sys.path[0]: run as a script
from scrapy import Request, Spider
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy.settings import Settings

VARIANTS = ("a", "b", "c", "d", "e")
THUMB_SIZE = 256

#: The same for every variant: as fast as the local server allows, nothing throttled.
COMMON: dict[str, Any] = {
    "CONCURRENT_REQUESTS": 16,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": False,
    "ROBOTSTXT_OBEY": False,
    "TELNETCONSOLE_ENABLED": False,
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    "LOG_LEVEL": "WARNING",
}


class BenchSpider(Spider):
    name = "bench"

    def __init__(self, variant: str, base_url: str, images: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.variant = variant
        self.base_url = base_url.rstrip("/")
        self.images = images
        self.run_id = secrets.token_hex(4)  # as the project's spiders name a run

    async def start(self) -> AsyncIterator[Any]:
        for k in range(properties(self.images)):
            for source in SOURCES:
                yield Request(
                    f"{self.base_url}/{source}/p{k}.json",
                    callback=self.parse_listing,
                    cb_kwargs={"source": source, "k": k},
                )

    def parse_listing(self, response: Response, source: str, k: int) -> Iterator[Any]:
        listing = json.loads(response.body)
        photo_urls = [response.urljoin(path) for path in listing["photos"]]
        if self.variant in ("a", "e"):
            yield self.property_item(source, k, listing["address"], photo_urls)
        elif self.variant == "d":
            yield {"file_urls": photo_urls}
        else:
            yield {"image_urls": photo_urls}

    def property_item(self, source: str, k: int, address: str, photo_urls: list[str]) -> Any:
        # Imported here: variants (b)-(d) must not pay for the project's imports.
        from phx_scraper.addresses import property_hash
        from phx_scraper.items import PropertyImagesItem

        return PropertyImagesItem(
            run_id=self.run_id,
            source=source,
            property_hash=property_hash(address),
            address=address,
            canonical_address=address,
            status="ok",
            source_id=f"p{k}",
            photo_count=len(photo_urls),
            photos=[
                {
                    "photo_id": url.rsplit("/", 1)[1].removesuffix(".jpg"),
                    "url": url,
                    "position": n,
                    "caption": "",
                    "listing_id": None,
                }
                for n, url in enumerate(photo_urls)
            ],
        )


def settings_for(variant: str, base_url: str, store: Path) -> Settings:
    settings = Settings()
    if variant in ("a", "e"):
        settings.setmodule("phx_scraper.settings", priority="project")
        settings.update(
            {
                "IMAGES_STORE": str(store),
                "PHX_ZILLOW_BASE_URL": base_url,
                "PHX_REDFIN_BASE_URL": base_url,
            },
            priority="cmdline",
        )
    elif variant in ("b", "c"):
        settings.update(
            {
                "ITEM_PIPELINES": {"scrapy.pipelines.images.ImagesPipeline": 1},
                "IMAGES_STORE": str(store),
                "IMAGES_THUMBS": {"small": (THUMB_SIZE, THUMB_SIZE)} if variant == "b" else {},
            },
            priority="cmdline",
        )
    else:
        settings.update(
            {
                "ITEM_PIPELINES": {"scrapy.pipelines.files.FilesPipeline": 1},
                "FILES_STORE": str(store),
            },
            priority="cmdline",
        )
    settings.update(COMMON, priority="cmdline")
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--stats-out", type=Path, required=True)
    args = parser.parse_args(argv)
    process = CrawlerProcess(settings_for(args.variant, args.base_url, args.store))
    crawler = process.create_crawler(BenchSpider)
    process.crawl(crawler, variant=args.variant, base_url=args.base_url, images=args.images)
    started = time.monotonic()
    process.start()
    stats = {**crawler.stats.get_stats(), "crawl_s": time.monotonic() - started}
    args.stats_out.write_text(json.dumps(stats, default=str))


if __name__ == "__main__":
    main()
