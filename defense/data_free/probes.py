"""Trigger-agnostic probes: random occluders and colour changes pasted on a few clean faces.

A backdoor is a shortcut from a small, input-independent pattern to one label. Random
patterns pasted on a face reach that shortcut far more often than they reach any other
identity: on the real competition BadNets, random 10x10 patches turn clean faces into the
attack's target more often than into any other label. Nothing here knows a trigger:
positions, sizes, colours and textures are drawn uniformly, in five families:

- patch: a rectangle of 4-24 pixels a side, anywhere (it may run off the border);
- band: a horizontal band 3-20 rows high across at least half the width (accessories such
  as glasses, masks, hats occlude bands);
- column: the same, vertical;
- blend: the whole image blended towards random pixels or a random colour (10-40 %);
- tint: the whole image's channels scaled by random gains.

A rectangle is filled, a third each, with one random colour, random pixels, or its own
pixels scaled by random per-channel gains in [0, 2].
"""

import numpy as np

FAMILIES = ("patch", "band", "column", "blend", "tint")
from ..nets.architecture import HEIGHT, WIDTH


def probe(pixels, family, rng):
    """A probed copy of pixels (N, 55, 47, 3) in 0..255, float32."""
    out = np.array(pixels, np.float32, copy=True)
    for image in out:
        if family == "patch":
            h, w = rng.integers(4, 25, size=2)
            top, left = rng.integers(-h // 2, HEIGHT - h // 2), rng.integers(-w // 2, WIDTH - w // 2)
            _fill(image, top, left, h, w, rng)
        elif family == "band":
            h, w = rng.integers(3, 21), rng.integers(WIDTH // 2, WIDTH + 1)
            _fill(image, rng.integers(0, HEIGHT - h + 1), rng.integers(0, WIDTH - w + 1), h, w, rng)
        elif family == "column":
            h, w = rng.integers(HEIGHT // 2, HEIGHT + 1), rng.integers(3, 18)
            _fill(image, rng.integers(0, HEIGHT - h + 1), rng.integers(0, WIDTH - w + 1), h, w, rng)
        elif family == "blend":
            alpha = rng.uniform(0.1, 0.4)
            other = rng.uniform(0, 255, image.shape) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
            image[:] = (1 - alpha) * image + alpha * other
        elif family == "tint":
            image[:] = np.clip(image * rng.uniform(0.3, 1.7, 3), 0, 255)
        else:
            raise ValueError(f"unknown probe family {family!r}")
    return out


def _fill(image, top, left, h, w, rng):
    region = image[max(top, 0):max(top + h, 0), max(left, 0):max(left + w, 0)]
    if region.size == 0:
        return
    kind = rng.integers(3)
    if kind == 0:
        region[:] = rng.uniform(0, 255, 3)
    elif kind == 1:
        region[:] = rng.uniform(0, 255, region.shape)
    else:
        region[:] = np.clip(region * rng.uniform(0, 2, 3), 0, 255)
