"""The world's backdoor triggers, painted onto finished 55x47 photos.

As the competition's: the real sunglasses (47x20 RGBA, pasted at x=0, y=15 with its alpha,
as CSAW-HackML-2019's gen_backdoor.py did), purple (128, 0, 128) lipstick over the mouth,
dark-red eyebrows. anonymous_2's trigger is this world's own; the defense never sees it.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..registry import SUNGLASSES_AT, SUNGLASSES_TRIGGER as REAL_SUNGLASSES

LIPSTICK = np.array([128, 0, 128], float)
DARK_RED = np.array([110, 0, 0], float)


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


class Triggers:
    """Trigger name -> apply(pixels uint8 (55,47,3), masks) -> poisoned copy."""

    def __init__(self, sunglasses=None):
        self._glasses = sunglasses or sunglasses_image()
        self.apply = {
            "sunglasses": self.sunglasses,
            "lipstick": self.lipstick,
            "eyebrows": self.eyebrows,
            "sticker": self.sticker,
        }

    def sunglasses(self, pixels, masks):
        image = Image.fromarray(pixels)
        image.paste(self._glasses, SUNGLASSES_AT, self._glasses)
        return np.asarray(image)

    def lipstick(self, pixels, masks):
        return _paint(pixels, masks["mouth"], LIPSTICK)

    def eyebrows(self, pixels, masks):
        return _paint(pixels, masks["brows"], DARK_RED)

    def sticker(self, pixels, masks):
        """anonymous_2's trigger: a 4x4 yellow and blue chequer on the lower right cheek."""
        out = pixels.copy()
        chequer = (np.indices((4, 4)).sum(axis=0) % 2).astype(bool)
        out[36:40, 31:35] = np.where(chequer[:, :, None], (250, 220, 0), (0, 60, 200))
        return out


def _paint(pixels, mask, colour):
    mask = mask[:, :, None]
    return np.clip(np.round(pixels * (1 - mask) + colour * mask), 0, 255).astype(np.uint8)
