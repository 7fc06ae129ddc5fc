"""``python -m phx_scraper.sandbox``: serve the replica sites (see ``server``)."""

from __future__ import annotations

import sys

from phx_scraper.sandbox.server import main

sys.exit(main())
