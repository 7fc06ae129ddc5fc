"""Settings of phx_scraper: every default lives here, grouped per component.

Each ``PHX_*`` setting is documented where it is read and in the README's
settings table. Every URL a spider requests comes from one of the
``PHX_*_URL`` settings below, which default to the live sites; the bundled
replica (``phx_scraper.sandbox``) is used by pointing them at loopback.
"""

from __future__ import annotations

from scrapy.settings import default_settings

BOT_NAME = "phx_scraper"

SPIDER_MODULES = ["phx_scraper.spiders"]
NEWSPIDER_MODULE = "phx_scraper.spiders"
COMMANDS_MODULE = "phx_scraper.commands"

# --- Source endpoints (URL prefixes; the spiders append the documented paths) ---
PHX_ZILLOW_BASE_URL = "https://www.zillow.com"
PHX_ZILLOW_AUTOCOMPLETE_URL = "https://www.zillowstatic.com/autocomplete/v3/suggestions"
PHX_REDFIN_BASE_URL = "https://www.redfin.com"
PHX_MARICOPA_API_URL = "https://mcassessor.maricopa.gov"
PHX_MARICOPA_GIS_URL = "https://gis.mcassessor.maricopa.gov/arcgis/rest/services/MaricopaDynamicQueryService/MapServer/3"
PHX_MARICOPA_AERIAL_URL = (
    "https://gis.mcassessor.maricopa.gov/arcgis/rest/services/Aerials/MapServer"
)
PHX_MLS_BASE_URL = "https://phoenixmlssearch.com"

# --- Politeness for the live sites (the demo and the tests override these) ---
# A current desktop browser User-Agent: Redfin answers 403 to anything else.
# This is the honest description of the client class, not fingerprint evasion:
# no cookies, CAPTCHAs or TLS fingerprints are faked.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Safari/537.36"
)
# robots.txt of zillow.com and redfin.com disallow the paths we read; we keep
# it off deliberately because a user asks for a handful of named houses, and
# politeness is enforced by the delays, AutoThrottle and the circuit breaker.
ROBOTSTXT_OBEY = False
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 2.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
RETRY_TIMES = 2
DOWNLOAD_TIMEOUT = 60
COOKIES_ENABLED = True
TELNETCONSOLE_ENABLED = False
# Scrapy's remote control runs Python code sent to it over HTTP: not wanted here.
# It is also left out of the extensions Scrapy loads (EXTENSIONS below): Scrapy
# imports every extension it lists, even a disabled one, and that import (aiohttp)
# cost every crawl 0.1 s.
REMOTE_CONTROL_ENABLED = False

# --- Store ---
# The store root is Scrapy's own IMAGES_STORE; IMAGES_EXPIRES (days) bounds
# how long a URL-index entry is trusted before the image is fetched again.
IMAGES_STORE = "store"
IMAGES_EXPIRES = 90
# Photos the store does not want: smaller than this on either side.
IMAGES_MIN_WIDTH = 200
IMAGES_MIN_HEIGHT = 200

# Standardization of stored images (see README "The store").
PHX_IMAGE_MAX_SIDE = 2048
PHX_IMAGE_FORMAT = "jpeg"
PHX_IMAGE_QUALITY = 90
PHX_IMAGE_MAX_PIXELS = 60_000_000
# Keep (or convert to sRGB and drop) the ICC colour profile of stored images.
PHX_IMAGE_KEEP_ICC = False
PHX_IMAGE_WORKERS = 0  # 0 = two per core
# Photos downloading or waiting for a worker at once (0 = 8 per worker): bounds memory.
PHX_IMAGE_INFLIGHT = 0
PHX_THUMB_SIZES = [256]
# Storage ceiling ("20GB", "500MB"; None = no limit) and the share that warns.
PHX_STORE_QUOTA = None
PHX_STORE_QUOTA_WARN = 0.9
# scrapy cleanup: orphans and temp files younger than this are never deleted.
PHX_CLEANUP_GRACE_DAYS = 14
# Also keep the downloaded bytes under originals/, named by their MD5 (source_md5).
PHX_STORE_ORIGINALS = False
# Near-duplicate groups: Hamming distance limits of the 64-bit pHash and dHash.
PHX_NEAR_DUP_PHASH = 10
PHX_NEAR_DUP_DHASH = 12

# The manifest is checkpointed every N items or T seconds during a crawl.
PHX_MANIFEST_CHECKPOINT_ITEMS = 50
PHX_MANIFEST_CHECKPOINT_SECONDS = 60

# Store locks are leases refreshed by a heartbeat: a holder on another host (a
# store on a shared filesystem) that stops refreshing for this many seconds
# loses its locks. Every process on a store must use the same value.
PHX_LOCK_LEASE = 30

# After every crawl the store is checked against the manifest: the files the
# crawl wrote are hashed, the others checked by size. True hashes every file
# (what `scrapy reconcile` always does).
PHX_RECONCILE_HASH_ALL = False

# Run records kept under <IMAGES_STORE>/runs/ (older ones are pruned).
PHX_RUNS_KEEP = 100

# Scrapy stops starting requests while this many bytes of responses are being
# processed; an item stays "in processing" until its photos are stored. The
# default (5 MB) lets hundreds of small listing pages (JSON APIs) wait at once,
# each with its item: memory would grow with the crawl. 100 KB keeps a few.
SCRAPER_SLOT_MAX_ACTIVE_SIZE = 100_000

ITEM_PIPELINES = {
    "phx_scraper.pipelines.images.ContentAddressedImagesPipeline": 300,
}
# Per-domain circuit breaker (keyed by download slot): open after this many
# consecutive failures (blocks, 429, 5xx, timeouts), hold that domain's
# requests for the cooldown (doubling per trip, capped), give the source up
# for the run after MAX_TRIPS trips.
PHX_BREAKER_ENABLED = True
PHX_BREAKER_FAILURES = 3
PHX_BREAKER_COOLDOWN = 300
PHX_BREAKER_MAX_COOLDOWN = 3600
PHX_BREAKER_MAX_TRIPS = 4
# A page that answered with a block page is asked again (after the breaker's
# hold) this many times before its property is recorded as blocked.
PHX_BLOCK_RETRIES = 4

# Incremental crawls: a property/source pair completed less than this many
# days ago is not visited again (-a refresh_days=N per crawl, -a force=1 for all).
DELTAFETCH_ENABLED = True
PHX_REFRESH_DAYS = 7
SPIDER_MIDDLEWARES = {
    "phx_scraper.middlewares.deltafetch.ItemConfirmedDeltaFetch": 100,
}

DOWNLOADER_MIDDLEWARES = {
    # Between Redirect (600) and Cookies (700): a block (a 302 to the
    # rate-limit page included) is seen before redirects and retries act on it.
    "phx_scraper.middlewares.breaker.CircuitBreakerMiddleware": 650,
    # Next to the downloader, so the token is off the request before retries copy it.
    "phx_scraper.middlewares.secrets.MaricopaTokenMiddleware": 890,
}
EXTENSIONS_BASE = {
    name: order
    for name, order in default_settings.EXTENSIONS_BASE.items()
    if name != "scrapy.extensions.remote_control.RemoteControl"
}
EXTENSIONS = {
    "phx_scraper.extensions.manifest.ManifestWriter": 500,
    "phx_scraper.extensions.progress.ProgressLog": 600,
    "phx_scraper.extensions.jobdir.JobdirGuard": 700,
}
# Progress: one log line every PHX_PROGRESS_INTERVAL seconds (0 = none).
PHX_PROGRESS_INTERVAL = 30

# Browser: which sources fetch their pages through scrapy-playwright.
PHX_BROWSER_SOURCES = "zillow,phoenix_mls"
# Empty = auto-detect /usr/bin/chromium (Debian) or chromium on PATH.
PHX_BROWSER_EXECUTABLE = ""

# Maricopa aerial image: pixel size, margin around the parcel (fraction of the
# parcel's larger side) and format of the ArcGIS MapServer export.
PHX_MARICOPA_AERIAL_SIZE = "1024,1024"
PHX_MARICOPA_AERIAL_MARGIN = 0.25
PHX_MARICOPA_AERIAL_FORMAT = "jpg"

TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"
