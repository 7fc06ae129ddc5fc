"""pHash and dHash of an image, as 16 hex digits: the values ``imagehash`` gives.

``imagehash.phash`` runs scipy's full 32x32 DCT twice per image and spends most
of its 1 ms in per-call overhead; the hash needs only the 8x8 lowest
frequencies, which are two small matrix products with a fixed basis (0.4 ms,
and scipy is never imported by a crawl). ``tests/test_perceptual.py`` checks
that both hashes equal imagehash's, which stays the reference.

numpy is imported with this module: ``imaging`` loads it when the first image
is processed, so a crawl that downloads nothing does not pay for it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_HASH = 8  # 8x8 bits
_PHASH_SIDE = 32  # imagehash's hash_size x highfreq_factor
_n = np.arange(_PHASH_SIDE)
#: The first 8 rows of scipy.fftpack's unnormalized DCT-II matrix:
#: X[k] = 2 * sum(x[n] * cos(pi * k * (2n + 1) / 2N)).
_DCT = 2 * np.cos(np.pi * np.arange(_HASH)[:, None] * (2 * _n[None, :] + 1) / (2 * _PHASH_SIDE))


def perceptual_hashes(image: Image.Image) -> tuple[str, str]:
    """``(phash, dhash)`` of ``image``, equal to ``str(imagehash.phash(image))``
    and ``str(imagehash.dhash(image))``."""
    gray = image.convert("L")
    pixels = np.asarray(
        gray.resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.LANCZOS), dtype=np.float64
    )
    # Rounded: where a frequency is zero (a flat or symmetric image) its float
    # noise must not decide the bit.
    low = np.round(_DCT @ pixels @ _DCT.T, 6)
    columns = np.asarray(gray.resize((_HASH + 1, _HASH), Image.Resampling.LANCZOS))
    return _hex(low > np.median(low)), _hex(columns[:, 1:] > columns[:, :-1])


def _hex(bits: np.ndarray) -> str:
    """imagehash's hex form: the bits row by row, most significant first."""
    return np.packbits(bits).tobytes().hex()
