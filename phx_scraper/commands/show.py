"""``scrapy show <address or property_hash> [--json]``: one property's manifest record.

The property is named by its 8-hex ``property_hash`` or by any spelling of its
address (canonicalized as the crawl does). The readable form shows each
source's outcome, the images by near-duplicate group (``*`` marks a group's
best member) and the rejected photos; ``--json`` prints the manifest entry as
stored. Exit status: 0; 1 when the manifest has no such property; 2 when the
address cannot be parsed, or there is no manifest at ``IMAGES_STORE`` or it
is unusable.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from phx_scraper.addresses import AddressError, canonicalize
from phx_scraper.store.manifest import MANIFEST_NAME, ManifestError, load

if TYPE_CHECKING:
    import argparse

PROPERTY_HASH = re.compile(r"[0-9a-fA-F]{8}")


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False

    def syntax(self) -> str:
        return "<address or property_hash> [--json]"

    def short_desc(self) -> str:
        return "Show one property's record in the manifest: sources, images, rejected photos"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="print the manifest entry")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if not args:
            raise UsageError("give an address or a property_hash")
        # Unquoted, an address arrives as several arguments.
        text = " ".join(args).strip()
        root = Path(self.settings["IMAGES_STORE"]).resolve()
        if PROPERTY_HASH.fullmatch(text):
            key, wanted = text.lower(), text.lower()
        else:
            try:
                address = canonicalize(text)
            except AddressError as exc:
                self.fail(str(exc), 2)
                return
            key, wanted = address.property_hash, f"{address.canonical} ({address.property_hash})"
        if not (root / MANIFEST_NAME).is_file():
            self.fail(f"no manifest at {root / MANIFEST_NAME} (IMAGES_STORE)", 2)
            return
        try:
            prop = load(root)["properties"].get(key)
        except (OSError, ManifestError) as exc:
            self.fail(str(exc), 2)
            return
        if prop is None:
            self.fail(f"no property {wanted} in {root / MANIFEST_NAME}", 1)
            return
        if opts.json:
            print(json.dumps(prop, indent=1, sort_keys=True, ensure_ascii=False))
        else:
            print(format_property(prop))

    def fail(self, message: str, code: int) -> None:
        print(f"error: {message}", file=sys.stderr)
        self.exitcode = code


def format_property(prop: dict[str, Any]) -> str:
    lines = [
        prop.get("address") or prop.get("canonical_address") or "",
        f"  canonical address  {prop.get('canonical_address')}",
        f"  property_hash      {prop.get('property_hash')}",
        "sources:",
    ]
    for name, outcome in sorted((prop.get("sources") or {}).items()):
        lines += _source_lines(name, outcome)
    images = prop.get("images") or []
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for image in images:
        groups.setdefault(image.get("group"), []).append(image)
    named = sorted(g for g in groups if g is not None)
    lines.append(f"images: {len(images)} stored, {_count(len(named), 'near-duplicate group')}")
    for group in named:
        lines.append(f"  group {group} ({_count(len(groups[group]), 'image')})")
        lines += [_image_line(image) for image in _by_position(groups[group])]
    if None in groups:
        lines.append(f"  no near-duplicate ({_count(len(groups[None]), 'image')})")
        lines += [_image_line(image) for image in _by_position(groups[None])]
    rejected = prop.get("rejected") or []
    lines.append(f"rejected: {len(rejected)}")
    lines += [
        f"  {r.get('source')}  {r.get('reason')}  photo {r.get('photo_id') or '-'}  "
        f"run {r.get('run_id') or '-'}  {r.get('url')}"
        for r in sorted(rejected, key=lambda r: (r.get("source") or "", r.get("url") or ""))
    ]
    if missing := prop.get("missing"):
        lines.append(f"missing (lost or corrupt; the next crawl fetches them): {len(missing)}")
        lines += [f"  {m.get('md5')}  {m.get('reason')}  {m.get('path')}" for m in missing]
    return "\n".join(lines)


def _source_lines(name: str, outcome: dict[str, Any]) -> list[str]:
    status = outcome.get("status") or "-"
    if outcome.get("reason"):
        status += f" ({outcome['reason']})"
    photos = ", ".join(
        f"{label} {_dash(outcome.get(key))}"
        for label, key in (
            ("expected", "photos_expected"),
            ("listed", "photos_listed"),
            ("stored", "photos_stored"),
        )
    )
    lines = [
        f"  {name:<12} {status:<20} id {_dash(outcome.get('id'))}  photos {photos}  "
        f"run {_dash(outcome.get('run_id'))} at {_dash(outcome.get('time'))}"
    ]
    if ids := outcome.get("ids"):
        lines.append(f"  {'':<12} ids: {_pairs(ids)}")
    if facts := outcome.get("facts"):
        lines.append(f"  {'':<12} facts: {_pairs(facts)}")
    return lines


def _image_line(image: dict[str, Any]) -> str:
    origins = ", ".join(
        f"{o.get('source')}:{o.get('photo_id') or o.get('url')}" for o in image.get("origins") or ()
    )
    best = "*" if image.get("group") and image.get("best") else " "
    return (
        f"    {best} {image.get('md5')}  {image.get('width')}x{image.get('height')}  "
        f"{image.get('bytes')} bytes  {origins}"
    )


def _by_position(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In the order the sources list them, so the listing reads like the source's gallery."""

    def key(image: dict[str, Any]) -> tuple[str, int, str]:
        origins = image.get("origins") or [{}]
        first = min(origins, key=lambda o: (o.get("source") or "", o.get("position") or 0))
        return first.get("source") or "", first.get("position") or 0, image.get("md5") or ""

    return sorted(images, key=key)


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} {value if isinstance(value, str) else json.dumps(value)}"
        for key, value in sorted(values.items())
    )


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
