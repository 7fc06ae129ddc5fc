"""A JavaScript cookie challenge, the way bot walls tell browsers from scripts.

The block page carries a nonce and a few lines of JS that derive a cookie
from it and reload. A browser passes on the reload; a plain HTTP client keeps
getting the block page. (Anyone can port the hash, of course: the point is
that a spider without a browser does not get through by accident.)
"""

from __future__ import annotations

import secrets


def _hash(text: str) -> str:
    value = 5381
    for char in text:
        value = ((value * 33) ^ ord(char)) & 0xFFFFFFFF
    return format(value, "x")


def new_nonce() -> str:
    return secrets.token_hex(8)


def valid(cookie: str | None) -> bool:
    if not cookie or "." not in cookie:
        return False
    nonce, _, digest = cookie.partition(".")
    return bool(nonce) and _hash(nonce) == digest


def script(cookie_name: str, nonce: str) -> str:
    return f"""<script>(function () {{
  var n = "{nonce}", x = 5381;
  for (var i = 0; i < n.length; i++) {{ x = ((x * 33) ^ n.charCodeAt(i)) >>> 0; }}
  document.cookie = "{cookie_name}=" + n + "." + x.toString(16) + "; path=/; SameSite=Lax";
  setTimeout(function () {{ location.reload(); }}, 100);
}})();</script>"""
