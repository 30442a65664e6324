"""Random region edits for fine-tuning: the trigger-agnostic half of the repair.

A backdoor lives in units that clean faces never drive; fine-tuning on clean faces sends
them no gradient, so it leaves them as they are. Editing random regions of the clean
training faces (a rectangle painted a random colour, its colours scaled by random
per-channel gains as make-up or light would, or filled with random pixels) drives such units
while the training target stays the face's identity, so fine-tuning unlearns "this local
colour or pattern means that class".
Nothing here knows a trigger: positions, sizes and colours are drawn uniformly.
"""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RegionEdits:
    probability: float = 1.0  # share of images edited
    most_per_image: int = 3  # an edited image gets 1..most_per_image rectangles
    height: tuple = (2, 15)  # rectangle sizes in pixels, inclusive
    width: tuple = (3, 20)
    gain_share: float = 1 / 3  # share of rectangles recoloured by gains
    noise_share: float = 1 / 3  # share filled with random pixels; the rest are painted
    max_gain: float = 2.0  # per-channel gains drawn from [0, max_gain]

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
