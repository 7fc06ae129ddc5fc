"""A faithful local replica of the four photo sources, for tests, demos and benchmarks.

No machine of this project reaches the live sites, so the spiders are built and
tested against this replica of Zillow, Redfin, the Maricopa County Assessor and
Phoenix MLS: their pages, JSON APIs, CDNs, block pages and failure modes as
``/work/shared/sources.md`` describes them -- every uncertain variant, every
kind of contamination -- never a simplified version.

Contract
--------
``python -m phx_scraper.sandbox [--port 0] [--request-log FILE]
[--fault SOURCE:MODE[:ARG...]]... [--maricopa-token TOKEN] [--cache-dir DIR]``
serves each source on its own loopback address (zillow 127.0.0.1, redfin
127.0.0.2, maricopa 127.0.0.3, phoenix_mls 127.0.0.4; one ephemeral port each
unless ``--port``), prints ONE line of JSON ``{"zillow": "http://127.0.0.1:PORT",
...}`` on stdout, logs to stderr, and stops cleanly on SIGTERM/SIGINT.

Point the spiders at it with these settings (``process.Sandbox.settings()``):
``PHX_ZILLOW_BASE_URL`` = zillow, ``PHX_ZILLOW_AUTOCOMPLETE_URL`` = zillow +
``/autocomplete/v3/suggestions``, ``PHX_REDFIN_BASE_URL`` = redfin,
``PHX_MARICOPA_API_URL`` = maricopa, ``PHX_MARICOPA_GIS_URL`` = maricopa +
``/arcgis/rest/services/MaricopaDynamicQueryService/MapServer/3``,
``PHX_MARICOPA_AERIAL_URL`` = maricopa + ``/arcgis/rest/services/Aerials/MapServer``,
``PHX_MLS_BASE_URL`` = phoenix_mls. Image CDNs live on their source's host at
the real CDN paths, and pages/APIs emit absolute URLs on that host.

Modules
-------
- ``dataset``: the homes and what a correct spider must find (pure data);
  ``model`` and ``paths``: its types and the CDN URL conventions.
- ``zillow`` / ``zillow_pages``, ``redfin``, ``maricopa`` / ``arcgis``,
  ``mls`` / ``mls_pages``: the four sites (each module docstring lists its
  endpoints and quirks).
- ``faults``: block pages, bursts, delays, dropped connections (spec syntax there).
- ``images`` / ``photos``: deterministic photo-like images, cached; broken photos.
- ``requestlog``: the JSONL request log; ``base``: routing, faults, logging, and
  the control endpoint ``/__sandbox__/faults`` (GET, or POST ``{"faults": [...]}``).
- ``process.Sandbox``: run it as a subprocess from tests, ``scrapy demo`` and benchmarks.
- ``demo_addresses.csv``: every ``dataset.PROPERTIES`` address, header ``address``.
"""
