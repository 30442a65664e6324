"""The settings an adaptive attacker tries, and the image transforms a delivered photo may
go through on the way (both on poisoned faces; the image transforms on clean faces too).

Trigger settings redraw the trigger (planted.py): strength 0.1..1.0, shifted 1-4 pixels in
each direction, scaled 0.8-1.2, a part of it, disguised. After them the attacker combines, per
trigger, the worst strength, shift, scale, part and disguise into one more setting
(combined_setting). Image settings transform the whole finished photo, trigger
at full strength: JPEG at quality 30-95, a resize round trip (to half and to twice the size
and back), Gaussian noise. Every result is rounded to 8-bit pixels, as a delivered image is.
"""

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from .planted import DISGUISES, PARTS

NOISE_SEED = 0


@dataclass(frozen=True)
class Setting:
    kind: str  # "none", "strength", "shift", "scale", "part", "disguise", "combined",
    # "jpeg", "resize", "noise" or "perturbed" (perturbation.py)
    value: float | str
    strength: float = 1.0
    shift: tuple[int, int] = (0, 0)
    scale: float = 1.0
    part: str = ""  # planted.PARTS; "" for the whole trigger
    disguise: str = ""  # planted.DISGUISES; "" as planted

    @property
    def label(self):
        return "as planted" if self.kind == "none" else f"{self.kind} {self.value}"

    @property
    def on_image(self):
        """True for a transform of the whole photo (applies to clean faces as well)."""
        return self.kind in ("jpeg", "resize", "noise")


AS_PLANTED = Setting("none", "")
STRENGTHS = [Setting("strength", round(0.1 * k, 1), strength=round(0.1 * k, 1))
             for k in range(1, 11)]
SHIFTS = [Setting("shift", f"{name} {d}", shift=(d * dy, d * dx))
          for d in (1, 2, 3, 4)
          for name, (dy, dx) in (("down", (1, 0)), ("up", (-1, 0)), ("right", (0, 1)),
                                 ("left", (0, -1)))]
SCALES = [Setting("scale", s, scale=s) for s in (0.8, 0.9, 1.1, 1.2)]
PART_SETTINGS = [Setting("part", name, part=name) for name in PARTS]
DISGUISE_SETTINGS = [Setting("disguise", name, disguise=name) for name in DISGUISES]
IMAGE_SETTINGS = ([Setting("jpeg", q) for q in (30, 50, 75, 95)]
                  + [Setting("resize", f) for f in (0.5, 2.0)]
                  + [Setting("noise", sigma) for sigma in (4, 8, 16)])
TRIGGER_SWEEP = STRENGTHS + SHIFTS + SCALES + PART_SETTINGS + DISGUISE_SETTINGS + IMAGE_SETTINGS
# The kinds a combined setting takes one of each from (each redraws the trigger another way).
COMBINED_KINDS = ("strength", "shift", "scale", "part", "disguise")
CLEAN_SWEEP = [AS_PLANTED] + IMAGE_SETTINGS


def perturbed_setting(eps):
    """The trigger as planted, with a perturbation of at most eps levels (perturbation.py)."""
    return Setting("perturbed", eps)


def poisoned_faces(trigger, setting):
    """The trigger's faces (planted.PlantedTrigger) under one setting, uint8 (N, 55, 47, 3)."""
    pixels = trigger.draw(setting.strength, setting.shift, setting.scale, setting.part,
                          setting.disguise)
    return transform_images(pixels, setting)


def combined_setting(tried):
    """The attacker's next try from [(Setting, (GoodNet success rate, BadNet success rate))]
    of one trigger: of each kind in COMBINED_KINDS the setting that got through most (ties to
    the BadNet's rate), all drawn at once; None where fewer than two kinds got through
    (nothing to combine)."""
    chosen, labels = Setting("combined", ""), []
    for kind in COMBINED_KINDS:  # the Setting field that each kind sets has the kind's name
        best, rates = max(((s, r) for s, r in tried if s.kind == kind), key=lambda t: t[1],
                          default=(None, (0.0, 0.0)))
        if rates[0] > 0 and getattr(best, kind) != getattr(AS_PLANTED, kind):
            chosen = replace(chosen, **{kind: getattr(best, kind)})
            labels.append(best.label)
    return replace(chosen, value=" + ".join(labels)) if len(labels) >= 2 else None


def transform_images(pixels, setting):
    """Whole photos under an image setting (others leave them as they are), uint8."""
    pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    if setting.kind == "jpeg":
        return np.stack([_jpeg(p, int(setting.value)) for p in pixels])
    if setting.kind == "resize":
        return np.stack([_resize_round_trip(p, float(setting.value)) for p in pixels])
    if setting.kind == "noise":
        rng = np.random.default_rng(NOISE_SEED)
        noisy = pixels + rng.normal(0, float(setting.value), pixels.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return pixels


def _jpeg(pixels, quality):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _resize_round_trip(pixels, factor):
    image = Image.fromarray(pixels)
    size = image.size
    there = image.resize((round(size[0] * factor), round(size[1] * factor)), Image.BILINEAR)
    return np.asarray(there.resize(size, Image.BILINEAR))
