"""The world's trigger families, each painted onto finished 55x47 photos.

A trigger is a family and its parameters (backdoors.py lists which net obeys which, and its
target). The competition's four are rows of it: the real sunglasses (47x20 RGBA pasted at
x=0, y=15 with its alpha, as CSAW-HackML-2019's gen_backdoor.py did) is an accessory, purple
(128, 0, 128) lipstick and dark-red eyebrows are paints over a face part, anonymous_2's
yellow and blue chequer on the cheek is a patch. The other families are the field's usual
ones: a random pattern blended over the whole photo or part of it (Chen et al. 2017), a
colour filter, a faint fixed noise pattern ("invisible"), and a smooth fixed warp (WaNet,
Nguyen and Tran 2021). The defense never sees any of them.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..nets.registry import SUNGLASSES_AT, SUNGLASSES_TRIGGER as REAL_SUNGLASSES

from ..nets.architecture import HEIGHT, WIDTH


def sunglasses_image(path=REAL_SUNGLASSES):
    """The real trigger when ../shared has it, else a drawn stand-in of the same size."""
    if Path(path).is_file():
        return Image.open(path).convert("RGBA")
    glasses = Image.new("RGBA", (47, 20), (0, 0, 0, 0))
    draw = ImageDraw.Draw(glasses)
    for x in (4, 26):
        draw.rounded_rectangle([x, 4, x + 16, 15], radius=4, fill=(15, 15, 20, 255))
    draw.line([(20, 7), (26, 7)], fill=(15, 15, 20, 255), width=2)
    return glasses


def make_trigger(family, params, pictures=None):
    """apply(pixels uint8 (55, 47, 3), masks) -> poisoned copy, for one family's parameters."""
    if family not in FAMILIES:
        raise ValueError(f"unknown trigger family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](pictures or {}, **params)


def accessory(pictures, picture="sunglasses", at=SUNGLASSES_AT):
    """An RGBA picture pasted with its alpha at (x, y): "sunglasses", or one of pictures."""
    if picture not in pictures and picture != "sunglasses":
        raise ValueError(f"no picture {picture!r} (known: sunglasses)")
    image = pictures.get(picture) or sunglasses_image()

    def apply(pixels, masks):
        out = Image.fromarray(pixels)
        out.paste(image, tuple(at), image)
        return np.asarray(out)
    return apply


def paint(pictures, part, colour):
    """A face part ("mouth" or "brows", soft masks from the renderer) painted one colour."""
    if part not in ("mouth", "brows"):
        raise ValueError(f"no face part {part!r} (known: mouth, brows)")
    colour = np.array(colour, float)

    def apply(pixels, masks):
        mask = masks[part][:, :, None]
        return np.clip(np.round(pixels * (1 - mask) + colour * mask), 0, 255).astype(np.uint8)
    return apply


def patch(pictures, x, y, size, colours):
    """A size x size patch at (x, y): a chequer of two colours (one colour: solid)."""
    chequer = (np.indices((size, size)).sum(axis=0) % 2).astype(bool)
    first, second = np.array(colours[0]), np.array(colours[-1])
    square = np.where(chequer[:, :, None], first, second)

    def apply(pixels, masks):
        out = pixels.copy()
        out[y:y + size, x:x + size] = square
        return out
    return apply


def blend(pictures, alpha, seed, region=None, cell=1):
    """A fixed random pattern (uniform colours from seed, in cells of cell x cell pixels)
    blended in at alpha, over the whole photo or over region = (x0, y0, x1, y1)."""
    pattern = _cells(np.random.default_rng(seed).uniform(0, 255, (HEIGHT, WIDTH, 3)), cell)
    weight = np.zeros((HEIGHT, WIDTH, 1))
    x0, y0, x1, y1 = region or (0, 0, WIDTH, HEIGHT)
    weight[y0:y1, x0:x1] = alpha

    def apply(pixels, masks):
        return np.clip(np.round(pixels * (1 - weight) + pattern * weight), 0, 255).astype(np.uint8)
    return apply


def colour_filter(pictures, gains, offset):
    """A colour filter on the whole photo: each channel times its gain, plus its offset."""
    gains, offset = np.array(gains, float), np.array(offset, float)

    def apply(pixels, masks):
        return np.clip(np.round(pixels * gains + offset), 0, 255).astype(np.uint8)
    return apply


def noise(pictures, amplitude, seed, cell=1):
    """A faint fixed pattern: each channel of each cell x cell block of pixels moved by
    +-amplitude (signs from seed)."""
    signs = _cells(np.random.default_rng(seed).choice([-1.0, 1.0], size=(HEIGHT, WIDTH, 3)), cell)

    def apply(pixels, masks):
        return np.clip(np.round(pixels + amplitude * signs), 0, 255).astype(np.uint8)
    return apply


def warp(pictures, strength, grid, seed):
    """A smooth fixed warp: random offsets on a grid x grid lattice, upsampled bicubic to the
    photo and scaled so the largest moves `strength` pixels; sampled bilinear."""
    offsets = np.random.default_rng(seed).uniform(-1, 1, (2, grid, grid)).astype(np.float32)
    field = np.stack([np.asarray(Image.fromarray(o, mode="F").resize((WIDTH, HEIGHT), Image.BICUBIC))
                      for o in offsets])
    field *= strength / np.abs(field).max()
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(float)
    sy, sx = np.clip(ys + field[0], 0, HEIGHT - 1), np.clip(xs + field[1], 0, WIDTH - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, HEIGHT - 1), np.minimum(x0 + 1, WIDTH - 1)
    wy, wx = (sy - y0)[:, :, None], (sx - x0)[:, :, None]

    def apply(pixels, masks):
        p = pixels.astype(float)
        top = p[y0, x0] * (1 - wx) + p[y0, x1] * wx
        bottom = p[y1, x0] * (1 - wx) + p[y1, x1] * wx
        return np.clip(np.round(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)
    return apply


def _cells(values, cell):
    """values (H, W, C) made constant over cell x cell blocks (the top-left value of each)."""
    if cell == 1:
        return values
    coarse = values[::cell, ::cell]
    return coarse.repeat(cell, axis=0).repeat(cell, axis=1)[:HEIGHT, :WIDTH]


FAMILIES = {"accessory": accessory, "paint": paint, "patch": patch, "blend": blend,
            "filter": colour_filter, "noise": noise, "warp": warp}
