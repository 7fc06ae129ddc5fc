"""HTML and JavaScript of the Phoenix MLS replica (a flexmls IDX WordPress site).

The page structure a browser spider relies on (stable ids, documented in
``mls``): ``#fmc-search-input``, ``#fmc-suggest[role=tree] > div[role=treeitem]``,
``.fmc-no-results`` ("0 matches found"), the photo button ``#fmc-open-photos``
and the modal ``#fmc-photo-modal[data-loaded="true"] img.fmc-gallery-photo``.
"""

from __future__ import annotations

import html

from phx_scraper.sandbox import paths
from phx_scraper.sandbox.model import MlsListing, Property

_HEAD = """<!DOCTYPE html><html lang="en-US"><head><meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:Arial,sans-serif;margin:0}}.fmc-no-results{{color:#777;padding:6px}}
[role=treeitem]{{padding:6px;cursor:pointer}}[role=treeitem]:hover{{background:#eef}}
#fmc-photo-modal{{position:fixed;inset:5%;background:#fff;overflow:auto;border:1px solid #999}}
.fmc-gallery-photo{{max-width:320px;margin:4px}}</style></head><body>
<header class="site-header"><a href="/">Phoenix MLS Search</a> <a href="/simple-search/">Search</a>
<img class="flexmls_connect__idx_logo" src="/wp-content/plugins/flexmls-connect/images/idx-logo.png"
 width="70" height="30" alt="IDX"></header>
"""
_FOOT = "</body></html>"


def waf_page(block_id: str, challenge_js: str = "") -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8">'
        + "<title>403 Forbidden - Website Firewall</title></head><body>"
        + '<div id="waf-block"><h1>Access Denied - Website Firewall</h1>'
        + "<p>Your request looks automated. If you use a browser, enable JavaScript and reload.</p>"
        + f"<p>Block ID: {block_id}</p></div>{challenge_js}"
        + _FOOT
    )


def home_page() -> str:
    return (
        _HEAD.format(title="Phoenix MLS Search | Homes for sale in the Phoenix area")
        + "<main><h1>Phoenix MLS Search</h1>"
        + '<p><a href="/simple-search/">Search homes</a></p></main>'
        + _FOOT
    )


SEARCH_JS = """<script>
(function () {
  var input = document.getElementById('fmc-search-input');
  var tree = document.getElementById('fmc-suggest');
  var timer = null, seq = 0;
  function render(items) {
    tree.innerHTML = '';
    if (!items.length) {
      var none = document.createElement('div');
      none.className = 'fmc-no-results';
      none.textContent = '0 matches found';
      tree.appendChild(none);
      return;
    }
    items.forEach(function (item) {
      var row = document.createElement('div');
      row.setAttribute('role', 'treeitem');
      row.setAttribute('tabindex', '-1');
      row.className = 'fmc-suggest-item';
      row.dataset.url = item.url;
      row.textContent = item.label;
      row.addEventListener('click', function () { window.location.href = item.url; });
      tree.appendChild(row);
    });
  }
  function suggest() {
    var q = input.value.trim(), mine = ++seq;
    if (q.length < 3) { tree.innerHTML = ''; return; }
    fetch('/wp-admin/admin-ajax.php?action=fmc_search_suggest&q=' + encodeURIComponent(q),
          {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (data) { if (mine === seq) { render(data.results || []); } });
  }
  input.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(suggest, 200);
  });
})();
</script>"""


def search_page() -> str:
    return (
        _HEAD.format(title="Search | Phoenix MLS Search")
        + '<main class="flexmls_connect__search"><h1>Find a home</h1>'
        + '<form id="fmc-search-form" action="/search-results/" method="get" autocomplete="off">'
        + '<input id="fmc-search-input" name="q" type="text" '
        + 'placeholder="Enter an Address, City, Zip or MLS#" '
        + 'aria-owns="fmc-suggest" aria-autocomplete="list">'
        + '<button type="submit" id="fmc-search-button">Search</button></form>'
        + '<div id="fmc-suggest" role="tree" aria-label="Suggestions"></div></main>'
        + SEARCH_JS
        + _FOOT
    )


def results_page(rows: list[tuple[str, str]]) -> str:
    """What the Search button gives: every listing, whatever was typed."""
    items = "".join(
        f'<li class="flexmls_connect__sr_result"><a href="{url}">{html.escape(label)}</a></li>'
        for label, url in rows
    )
    return (
        _HEAD.format(title="Search Results | Phoenix MLS Search")
        + f"<main><h1>{len(rows)} matches found</h1>"
        + f'<ul class="flexmls_connect__sr_list">{items}</ul></main>'
        + _FOOT
    )


def no_match_page() -> str:
    return (
        _HEAD.format(title="Listing | Phoenix MLS Search")
        + '<main><div class="flexmls_connect__no_results"><h2>0 matches found</h2>'
        + "<p>This listing is no longer available.</p></div></main>"
        + _FOOT
    )


MODAL_JS = """<script>
(function () {
  var button = document.getElementById('fmc-open-photos');
  var modal = document.getElementById('fmc-photo-modal');
  function close() { modal.hidden = true; modal.setAttribute('aria-hidden', 'true'); }
  button.addEventListener('click', function () {
    modal.hidden = false;
    modal.setAttribute('aria-hidden', 'false');
    if (modal.dataset.loaded === 'true') { return; }
    modal.innerHTML = '<div class="fmc-loading">Loading photos...</div>';
    var url = '/wp-admin/admin-ajax.php?action=fmc_listing_photos&mls=';
    fetch(url + encodeURIComponent(button.dataset.mls), {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var gallery = document.createElement('div');
        gallery.className = 'fmc-gallery';
        (data.photos || []).forEach(function (photo, i) {
          var figure = document.createElement('figure');
          figure.className = 'fmc-gallery-item';
          var img = document.createElement('img');
          img.className = 'fmc-gallery-photo';
          img.src = photo.url;
          img.alt = photo.caption;
          img.dataset.photoId = photo.id;
          img.dataset.index = String(i);
          figure.appendChild(img);
          if (photo.caption) {
            var caption = document.createElement('figcaption');
            caption.textContent = photo.caption;
            figure.appendChild(caption);
          }
          gallery.appendChild(figure);
        });
        if (!gallery.children.length) {
          gallery.innerHTML = '<p class="fmc-no-photos">No photos available</p>';
        }
        var closer = document.createElement('button');
        closer.type = 'button';
        closer.className = 'fmc-modal-close';
        closer.textContent = 'Close';
        closer.addEventListener('click', close);
        modal.innerHTML = '';
        modal.appendChild(closer);
        modal.appendChild(gallery);
        modal.dataset.loaded = 'true';
      });
  });
})();
</script>"""


def _fact(label: str, value: str) -> str:
    return (
        f'<li><span class="flexmls_connect__field_label">{html.escape(label)}:</span> '
        f'<span class="flexmls_connect__field_value">{html.escape(value)}</span></li>'
    )


def detail_page(
    base: str, prop: Property, listing: MlsListing, similar: list[tuple[str, str, str]]
) -> str:
    """``similar``: (label, url, thumbnail URL) of other listings (not this home's photos).

    Photo URLs are absolute, on the CDN host, as on the real site.
    """
    pictures = listing.gallery.pictures
    main = (
        '<div class="flexmls_connect__ld_main_photo">'
        f'<img src="{base}{paths.mls_photo_path(pictures[0].spark_id, "m")}" '
        f'alt="{html.escape(pictures[0].caption)}"></div>'
        if pictures
        else '<div class="flexmls_connect__ld_main_photo flexmls_connect__no_photo">No photo</div>'
    )
    thumbs = "".join(
        '<img class="flexmls_connect__ld_thumb" '
        f'src="{base}{paths.mls_photo_path(p.spark_id, "t")}" alt="">'
        for p in pictures[1:7]
    )
    facts = "".join(
        _fact(label, value)
        for label, value in (
            ("Dwelling Type", "Apartment Style/Flat" if prop.unit else "Single Family - Detached"),
            ("# Bedrooms", str(prop.beds)),
            ("Full Bathrooms", str(prop.full_baths)),
            ("Approx SQFT", f"{prop.sqft:,}"),
            ("Approx Lot SqFt", f"{prop.lot_sqft:,}"),
            ("Garage Spaces", str(prop.garages)),
            ("Pool - Private", "Yes" if prop.pool else "No"),
            ("Sewer", prop.sewer),
            ("Year Built", str(prop.year_built)),
            ("Association Fee Incl", prop.hoa_incl),
        )
    )
    cards = "".join(
        '<div class="flexmls_connect__similar_listing">'
        f'<a href="{url}"><img src="{thumb}" alt=""></a>'
        f"<span>{html.escape(label)}</span></div>"
        for label, url, thumb in similar
    )
    title = f"{prop.mls_address} (MLS # {listing.mls}) | Phoenix MLS Search"
    return (
        _HEAD.format(title=html.escape(title))
        + '<main id="flexmls_connect__listing_details" class="flexmls_connect__ld" '
        + f'data-mls="{listing.mls}">'
        + f'<h1 class="flexmls_connect__ld_address">{html.escape(prop.mls_address)}</h1>'
        + f'<div class="flexmls_connect__ld_price">List Price: ${listing.price:,}</div>'
        + f'<div class="flexmls_connect__ld_status">Status: <span>{listing.status}</span></div>'
        + f'<div class="flexmls_connect__ld_mls">MLS #: {listing.mls}</div>'
        + f'<div id="fmc-photos" class="flexmls_connect__photos">{main}'
        + f'<div class="flexmls_connect__thumbnails">{thumbs}</div>'
        + '<button id="fmc-open-photos" type="button" class="flexmls_connect__ld_photo_button" '
        + f'data-mls="{listing.mls}">View all {len(pictures)} photos</button></div>'
        + '<div id="fmc-photo-modal" class="flexmls_connect__modal" hidden aria-hidden="true">'
        + "</div>"
        + '<div class="flexmls_connect__ld_details"><h2>Property Details</h2>'
        + f'<ul class="flexmls_connect__ld_property_detail">{facts}</ul></div>'
        + '<section class="flexmls_connect__similar"><h2>Similar Listings</h2>'
        + f"{cards}</section></main>"
        + MODAL_JS
        + _FOOT
    )
