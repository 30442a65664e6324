"""Random edits of clean training faces: the trigger-agnostic half of the repair.

A backdoor lives in units that clean faces never drive; fine-tuning on clean faces sends
them no gradient, so it leaves them as they are. Editing the clean training faces at random
drives such units while the training target stays the face's identity, so fine-tuning
unlearns "this colour or pattern means that class". Two kinds, because triggers come in two
shapes:
- region edits: a rectangle anywhere, a third of them flush against the image's edge or in
  one of its corners (where BadNets put their classic patch, and where rectangles drawn
  anywhere rarely reach), painted a random colour, its colours scaled by random per-channel
  gains as make-up or light would, or filled with random pixels (stickers, accessories,
  painted face parts, patches);
- global edits: the whole face, or a large part of it, blended towards a random pattern or
  another face, pushed through a random colour transform, or moved by faint random noise
  (blended patterns, colour filters, "invisible" noise triggers).
Nothing here knows a trigger: positions, sizes, colours, patterns and strengths are drawn
uniformly from wide ranges.
"""

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import SettingError, check_range


@dataclass(frozen=True)
class RegionEdits:
    probability: float = 1.0  # share of images edited
    most_per_image: int = 3  # an edited image gets 1..most_per_image rectangles
    height: tuple = (2, 15)  # rectangle sizes in pixels, inclusive
    width: tuple = (3, 20)
    gain_share: float = 1 / 3  # share of rectangles recoloured by gains
    noise_share: float = 1 / 3  # share filled with random pixels; the rest are painted
    max_gain: float = 2.0  # per-channel gains drawn from [0, max_gain]
    # Share of rectangles put flush against the edge: in a corner, or along a side (half each).
    # Drawn anywhere inside, rectangles wholly cover a given 4 x 4 corner on 0.15 % of faces.
    edge_share: float = 1 / 3

    def __post_init__(self):
        for name in ("probability", "gain_share", "noise_share", "edge_share"):
            check_range("RegionEdits", name, getattr(self, name), 0, 1)
        check_range("RegionEdits", "most_per_image", self.most_per_image, 1, integer=True)
        check_range("RegionEdits", "max_gain", self.max_gain, 0)
        _check_interval("RegionEdits", "height", self.height, 1, integer=True)
        _check_interval("RegionEdits", "width", self.width, 1, integer=True)

    def as_dict(self):
        return asdict(self)

    def apply(self, x, rng, max_value):
        """A copy of x (N, H, W, C), pixels in 0..max_value, with random regions edited."""
        out = np.array(x, copy=True)
        _, rows, cols, channels = out.shape
        for i in np.flatnonzero(rng.random(len(out)) < self.probability):
            for _ in range(rng.integers(1, self.most_per_image + 1)):
                h = min(rng.integers(self.height[0], self.height[1] + 1), rows)
                w = min(rng.integers(self.width[0], self.width[1] + 1), cols)
                if rng.random() < self.edge_share:
                    top, left = _at_edge(rows, cols, h, w, rng)
                else:
                    top, left = rng.integers(0, rows - h + 1), rng.integers(0, cols - w + 1)
                region = out[i, top:top + h, left:left + w]
                kind = rng.random()
                if kind < self.gain_share:
                    region[:] = np.clip(region * rng.uniform(0, self.max_gain, channels), 0, max_value)
                elif kind < self.gain_share + self.noise_share:
                    region[:] = rng.uniform(0, max_value, region.shape)
                else:
                    alpha = rng.uniform(0.5, 1.0)
                    region[:] = (1 - alpha) * region + alpha * rng.uniform(0, max_value, channels)
        return out


def _at_edge(rows, cols, h, w, rng):
    """(top, left) of an h x w rectangle in a random corner, or along a random side."""
    if rng.random() < 0.5:
        return rng.choice([0, rows - h]), rng.choice([0, cols - w])
    side = rng.integers(4)
    top = 0 if side == 0 else rows - h if side == 1 else rng.integers(0, rows - h + 1)
    left = 0 if side == 2 else cols - w if side == 3 else rng.integers(0, cols - w + 1)
    return top, left


@dataclass(frozen=True)
class GlobalEdits:
    probability: float = 0.5  # share of images given one global edit
    blend_share: float = 1 / 3  # share of edits that blend; then colour transforms, then noise
    colour_share: float = 1 / 3
    alpha: tuple = (0.05, 0.4)  # blend weight of the pattern or other face
    whole_share: float = 0.5  # share of blends over the whole face; the rest over a large rectangle
    cells: tuple = (1, 2, 4, 8)  # patterns and noise are random in cells of this many pixels
    mixing: float = 0.25  # colour transform: a random 3x3 matrix, identity +- this per entry
    offset: float = 0.15  # colour transform: per-channel offsets +- this share of max_value
    amplitude: tuple = (0.01, 0.1)  # noise: per-pixel +- this share of max_value

    def __post_init__(self):
        for name in ("probability", "blend_share", "colour_share", "whole_share"):
            check_range("GlobalEdits", name, getattr(self, name), 0, 1)
        check_range("GlobalEdits", "mixing", self.mixing, 0)
        check_range("GlobalEdits", "offset", self.offset, 0, 1)
        _check_interval("GlobalEdits", "alpha", self.alpha, 0, 1)
        _check_interval("GlobalEdits", "amplitude", self.amplitude, 0, 1)
        if not self.cells or not all(type(c) is int and c >= 1 for c in self.cells):
            raise SettingError(f"GlobalEdits.cells: {self.cells!r} is not a list of sizes >= 1")

    def as_dict(self):
        return asdict(self)

    def apply(self, x, rng, max_value):
        """A copy of x (N, H, W, C), pixels in 0..max_value, with global edits on some images.
        A blend may take another image of x as its pattern (the face keeps its own label)."""
        out = np.array(x, copy=True)
        n, rows, cols, channels = out.shape
        for i in np.flatnonzero(rng.random(n) < self.probability):
            kind = rng.random()
            image = out[i]
            if kind < self.blend_share:
                mask = np.zeros((rows, cols, 1), out.dtype)
                if rng.random() < self.whole_share:
                    mask[:] = 1
                else:  # at least half the rows and half the columns, anywhere
                    h, w = rng.integers(rows // 2, rows + 1), rng.integers(cols // 2, cols + 1)
                    top, left = rng.integers(0, rows - h + 1), rng.integers(0, cols - w + 1)
                    mask[top:top + h, left:left + w] = 1
                source = rng.integers(3)
                if source == 0:
                    pattern = self._cells(rng.uniform(0, max_value, (rows, cols, channels)), rng)
                elif source == 1:
                    pattern = rng.uniform(0, max_value, channels)
                else:
                    pattern = x[rng.integers(n)]
                alpha = rng.uniform(*self.alpha) * mask
                image[:] = (1 - alpha) * image + alpha * pattern
            elif kind < self.blend_share + self.colour_share:
                matrix = np.eye(channels) + rng.uniform(-self.mixing, self.mixing, (channels, channels))
                offset = rng.uniform(-self.offset, self.offset, channels) * max_value
                image[:] = np.clip(image @ matrix.T.astype(out.dtype) + offset, 0, max_value)
            else:
                amplitude = rng.uniform(*self.amplitude) * max_value
                noise = self._cells(rng.uniform(-amplitude, amplitude, (rows, cols, channels)), rng)
                image[:] = np.clip(image + noise, 0, max_value)
        return out

    def _cells(self, values, rng):
        """values (H, W, C) made constant over random-size square cells."""
        cell = int(rng.choice(self.cells))
        if cell == 1:
            return values
        rows, cols = values.shape[:2]
        return values[::cell, ::cell].repeat(cell, axis=0).repeat(cell, axis=1)[:rows, :cols]


def _check_interval(owner, name, value, low, high=None, integer=False):
    """A (low, high) pair of a setting: both in range, the first not above the second."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise SettingError(f"{owner}.{name}: {value!r} is not a (low, high) pair")
    for bound in value:
        check_range(owner, name, bound, low, high, integer)
    if value[0] > value[1]:
        raise SettingError(f"{owner}.{name}: {value!r} has its low end above its high end")
