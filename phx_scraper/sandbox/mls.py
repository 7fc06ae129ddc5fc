"""Replica of Phoenix MLS Search (phoenixmlssearch.com, flexmls IDX) and the Spark CDN.

A JavaScript site behind a WAF (sources.md §4). Every page and AJAX request
without the ``fmc_waf`` cookie gets a 403 "Website Firewall" page whose inline
JS sets that cookie and reloads: a browser passes, a plain HTTP client does
not. The CDN paths are not protected.

For a browser spider:

1. ``/simple-search/``: type into ``#fmc-search-input`` (placeholder "Enter an
   Address, City, Zip or MLS#"); suggestions appear as
   ``#fmc-suggest[role=tree] div[role=treeitem]`` with text like
   ``"4560 E SUNRISE Drive, Phoenix, AZ 85044 / 6937912 (MLS #)"`` and a
   ``data-url``; none -> ``#fmc-suggest .fmc-no-results`` "0 matches found".
   Relisted homes show one item per MLS#; the newest (highest MLS#) is the
   live one, older ones are Closed. The Search button lists every listing.
2. Detail ``/mls/<ADDRESS-SLUG>-mls_<MLS#>/`` (slug not checked): labelled facts
   in ``.flexmls_connect__ld_property_detail`` ("# Bedrooms: 4"...), the status,
   ~7 thumbnails (``-m``/``-t``), and "Similar Listings" thumbnails of OTHER
   homes. Closed or unknown listings: "0 matches found".
3. Click ``#fmc-open-photos``; wait for ``#fmc-photo-modal[data-loaded="true"]``;
   the gallery is ``#fmc-photo-modal img.fmc-gallery-photo`` (``src`` = ``-l``
   or ``-m`` URL, ``data-photo-id`` = Spark id), in gallery order, "No photos
   available" when empty.

CDN: ``/az/<26-digit id>-<t|m|l|o>.jpg`` and ``/az/<W>x<H>/true/<id>-o.jpg``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from twisted.internet.defer import Deferred

from phx_scraper.sandbox import addresses, challenge, dataset, images, paths, photos
from phx_scraper.sandbox import mls_pages as pages
from phx_scraper.sandbox.base import Call, Context, Reply, SourceSite, html, json_reply, not_found
from phx_scraper.sandbox.model import MlsListing, Picture, Property

COOKIE = "fmc_waf"
_HOMES = tuple(p for p in dataset.ALL_HOMES if p.mls)


def _label(prop: Property, listing: MlsListing) -> str:
    return f"{prop.mls_address} / {listing.mls} (MLS #)"


class MlsSite(SourceSite):
    source = "phoenix_mls"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.listings = {m.mls: (p, m) for p in _HOMES for m in p.mls}
        self.photos: dict[str, tuple[MlsListing, int, Picture]] = {
            pic.spark_id: (m, i, pic)
            for p in _HOMES
            for m in p.mls
            for i, pic in enumerate(m.gallery.pictures)
        }
        r = self.router
        r.add(r"/", lambda call, m: html(pages.home_page()))
        r.add(r"/simple-search/?", lambda call, m: html(pages.search_page()))
        r.add(r"/search-results/?", self.search_results)
        r.add(r"/mls/(?P<slug>[^/]*)-mls_(?P<mls>\d+)/?", self.detail)
        r.add(r"/wp-admin/admin-ajax\.php", self.ajax)
        r.add(r"/wp-content/plugins/flexmls-connect/images/idx-logo\.png", self.logo)
        r.add(r"/az/(?P<id>\d{26})-(?P<size>[tmlo])\.jpg", self.cdn_photo)
        r.add(r"/az/(?P<w>\d{1,5})x(?P<h>\d{1,5})/true/(?P<id>\d{26})-o\.jpg", self.cdn_resize)

    def is_cdn(self, path: str) -> bool:
        return path.startswith("/az/")

    def handle(self, call: Call) -> Reply | Deferred[Reply]:
        if not self.is_cdn(call.path) and not challenge.valid(call.cookie(COOKIE)):
            script = challenge.script(COOKIE, challenge.new_nonce())
            reply = html(pages.waf_page(secrets.token_hex(6), script), 403)
            reply.fault = "js_challenge"
            return reply
        return super().handle(call)

    def block_page(self, call: Call, kind: str, retry_after: int | None = None) -> Reply:
        return html(pages.waf_page(secrets.token_hex(6)), 403)

    # --- pages ---
    def search_results(self, call: Call, match: re.Match[str]) -> Reply:
        rows = [
            (_label(p, m), p.mls_path(m.mls))
            for p, m in self.listings.values()
            if m.status != "Closed"
        ]
        return html(pages.results_page(rows))

    def detail(self, call: Call, match: re.Match[str]) -> Reply:
        found = self.listings.get(match["mls"])
        if found is None or found[1].status == "Closed":
            return html(pages.no_match_page())
        prop, listing = found
        return html(pages.detail_page(call.base, prop, listing, self._similar(call.base, prop)))

    def _similar(self, base: str, prop: Property) -> list[tuple[str, str, str]]:
        cards = []
        for other in dataset.neighbours(prop.key):
            current = other.mls_current
            if current is not None and current.gallery.pictures:
                thumb = base + paths.mls_photo_path(current.gallery.pictures[0].spark_id, "t")
                cards.append((_label(other, current), other.mls_path(current.mls), thumb))
        return cards

    # --- AJAX (what the page's JavaScript calls) ---
    def ajax(self, call: Call, match: re.Match[str]) -> Reply:
        action = call.query.get("action")
        if action == "fmc_search_suggest":
            return json_reply({"results": self.suggest(call.query.get("q", ""))})
        if action == "fmc_listing_photos":
            found = self.listings.get(call.query.get("mls", ""))
            if found is None or found[1].status == "Closed":
                return json_reply({"photos": []})
            listing = found[1]
            size = listing.modal_size
            return json_reply(
                {
                    "photos": [
                        {
                            "id": pic.spark_id,
                            "url": call.base + paths.mls_photo_path(pic.spark_id, size),
                            "caption": pic.caption,
                        }
                        for pic in listing.gallery.pictures
                    ]
                }
            )
        return Reply(400, b"0", "text/html; charset=UTF-8")

    def suggest(self, text: str) -> list[dict[str, Any]]:
        number = text.strip()
        if re.fullmatch(r"\d{7}", number) and number in self.listings:
            prop, listing = self.listings[number]
            return [
                {
                    "label": _label(prop, listing),
                    "url": prop.mls_path(listing.mls),
                    "mls": listing.mls,
                }
            ]
        # Matched on the street part only: a full address still lists the same
        # street in other cities, and the user (spider) picks by city and ZIP.
        street = text.split(",")[0]
        rows = []
        for _, prop in addresses.search(street, _HOMES)[:10]:
            for listing in prop.mls:
                rows.append(
                    {
                        "label": _label(prop, listing),
                        "url": prop.mls_path(listing.mls),
                        "mls": listing.mls,
                    }
                )
        return rows

    # --- CDN ---
    def logo(self, call: Call, match: re.Match[str]) -> Deferred[Reply]:
        return self.image("idx-logo", lambda: images.badge(70, 30, "IDX")).addCallback(
            lambda data: Reply(200, data, "image/png")
        )

    def cdn_photo(self, call: Call, match: re.Match[str]) -> Reply | Deferred[Reply]:
        found = self.photos.get(match["id"])
        if found is None:
            return not_found()
        listing, position, picture = found
        size_name = match["size"]
        variant = paths.MLS_SIZES[size_name]
        if variant is None:  # the original upload, with its EXIF
            spec = photos.photo_spec(picture, picture.native, quality=85, exif=picture.exif)
        else:
            spec = photos.photo_spec(picture, variant.size(picture.native), quality=80)
        return photos.serve(
            self,
            f"mls:{picture.id}:{size_name}",
            lambda: images.render_photo(spec),
            "image/jpeg",
            picture,
            listing.gallery.fault(position),
        )

    def cdn_resize(self, call: Call, match: re.Match[str]) -> Reply | Deferred[Reply]:
        found = self.photos.get(match["id"])
        width, height = int(match["w"]), int(match["h"])
        if found is None or not (
            0 < width <= paths.MLS_RESIZE_MAX and 0 < height <= paths.MLS_RESIZE_MAX
        ):
            return not_found()
        listing, position, picture = found
        size = paths.fit(picture.native, (width, height))
        spec = photos.photo_spec(picture, size, quality=82)
        return photos.serve(
            self,
            f"mls:{picture.id}:{size[0]}x{size[1]}",
            lambda: images.render_photo(spec),
            "image/jpeg",
            picture,
            listing.gallery.fault(position),
        )
