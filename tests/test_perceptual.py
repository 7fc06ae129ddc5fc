"""store/perceptual.py gives the hashes imagehash gives, on photos and on odd images."""

from __future__ import annotations

import random

import imagehash
import pytest
from PIL import Image, ImageDraw

from phx_scraper.sandbox.images import scene
from phx_scraper.store.perceptual import perceptual_hashes

KINDS = ("exterior", "interior", "kitchen", "bath", "pool")


def _noise(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def _shapes(seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (256, 171), (rng.randrange(256),) * 3)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(200), rng.randrange(120)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + rng.randrange(10, 80), y + rng.randrange(10, 60)), colour)
    return image


IMAGES = [
    *(
        scene(seed, kind, aspect).resize((256, 171))
        for seed in range(8)
        for kind in KINDS
        for aspect in [(3, 2)]
    ),
    *(scene(seed, "exterior", (2, 3)).resize((171, 256)) for seed in range(4)),
    *(_noise(seed, (256, 171)) for seed in range(10)),
    *(_shapes(seed) for seed in range(20)),
    *(_noise(seed, (64, 64)).convert("L") for seed in range(5)),
]


@pytest.mark.parametrize("n", range(len(IMAGES)))
def test_equal_to_imagehash(n: int) -> None:
    image = IMAGES[n]
    assert perceptual_hashes(image) == (str(imagehash.phash(image)), str(imagehash.dhash(image)))


def test_a_flat_image_hashes_to_its_dc_bit_only() -> None:
    # Every frequency but the mean is zero: rounding must not turn noise into bits.
    assert perceptual_hashes(Image.new("RGB", (256, 171), (120, 130, 140))) == (
        "8000000000000000",
        "0000000000000000",
    )
