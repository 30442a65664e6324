"""A trigger planted on N faces, re-drawable at another strength, place or size.

Each face keeps its own copy of the trigger: where it covers the face (mask, 0..1) and what
it shows there (content). At strength a the face becomes face * (1 - a * mask) + a * mask *
content: the trigger's opacity for a pasted accessory, the paint's for a painted face part.
Two ways to know a trigger: from pairs of a clean face and the same face poisoned (a
generated world's test sets), or from an RGBA picture pasted at a fixed place (the real
sunglasses file).

A trigger spread over most of the face (a blend, a colour filter, a noise pattern, a warp) is
a change added to the face rather than a thing laid on it: moving or scaling it moves or
scales that change (content - face), not the poisoned face itself.

An attacker aiming at a repair that gives a label back where both nets agree (fine-prune
--release) also tries a part of the trigger (PARTS: half of it, or half its pixels) and the
trigger disguised (DISGUISES: in grey, its colours rotated, inverted), which fine-tuning may
have unlearnt less than the trigger as planted.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image


# Share of the face a trigger must cover to be moved and scaled as an added change.
SPREAD = 0.5
PARTS = ("top half", "bottom half", "left half", "right half", "half the pixels")
DISGUISES = ("grey", "colours rotated", "inverted")
PIXEL_PATTERN_SEED = 0  # the attacker's fixed choice of half the pixels


@dataclass
class PlantedTrigger:
    name: str
    target: int | str  # as reports show it: a label, "y+k" (all-to-all) or "m(y)" (mapped)
    faces: np.ndarray  # (N, 55, 47, 3) float32 clean faces the trigger moves
    labels: np.ndarray  # (N,) their true identities
    mask: np.ndarray  # (N, 55, 47) float32 in 0..1
    content: np.ndarray  # (N, 55, 47, 3) float32 pixels 0..255
    targets: np.ndarray = None  # (N,) the label the trigger sends each face to

    def __post_init__(self):
        if self.targets is None:  # one target for every face
            self.targets = np.full(len(self.labels), self.target, np.int64)

    @property
    def spread(self):
        """True for a trigger over most of the face (moved and scaled as an added change)."""
        return float(self.mask.mean()) > SPREAD

    def __len__(self):
        return len(self.labels)

    @classmethod
    def from_pairs(cls, name, target, clean, poisoned, labels, targets=None):
        """From clean faces and the same faces wearing the trigger: the mask is where they
        differ, the content the poisoned pixels there (exact at every strength)."""
        clean, poisoned = np.asarray(clean, np.float32), np.asarray(poisoned, np.float32)
        mask = (np.abs(poisoned - clean).max(axis=-1) > 0).astype(np.float32)
        return cls(name, target, clean, np.asarray(labels), mask, poisoned, targets)

    @classmethod
    def from_picture(cls, name, target, picture, at, faces, labels):
        """An RGBA picture pasted with its alpha at (x, y) on every face."""
        rgba = np.asarray(picture.convert("RGBA"), np.float32)
        height, width = faces.shape[1:3]
        mask = np.zeros((height, width), np.float32)
        content = np.zeros((height, width, 3), np.float32)
        x, y = at
        h, w = min(rgba.shape[0], height - y), min(rgba.shape[1], width - x)
        mask[y:y + h, x:x + w] = rgba[:h, :w, 3] / 255.0
        content[y:y + h, x:x + w] = rgba[:h, :w, :3]
        n = len(faces)
        return cls(name, target, np.asarray(faces, np.float32), np.asarray(labels),
                   np.broadcast_to(mask, (n, height, width)).copy(),
                   np.broadcast_to(content, (n, height, width, 3)).copy())

    def subset(self, index):
        return PlantedTrigger(self.name, self.target, self.faces[index], self.labels[index],
                              self.mask[index], self.content[index], self.targets[index])

    def draw(self, strength=1.0, shift=(0, 0), scale=1.0, part="", disguise=""):
        """The poisoned faces (N, 55, 47, 3) float32: the trigger disguised (DISGUISES; "" as
        planted), scaled about its own centre, only a part of it kept (PARTS, of the scaled
        trigger; "" for all of it), moved by shift = (down, right) pixels, at this strength."""
        if self.spread:
            change = _disguised(self.mask[..., None] * (self.content - self.faces), disguise, signed=True)
            if scale != 1.0:
                change = _scaled_change(change, scale)
            change = change * _part(np.abs(change).max(axis=-1) > 0, part)[..., None]
            if shift != (0, 0):
                change = _shifted(change, shift)
            return np.clip(self.faces + strength * change, 0, 255)
        mask, content = self.mask, _disguised(self.content, disguise, signed=False)
        if scale != 1.0:
            mask, content = _scaled(mask, content, scale)
        mask = mask * _part(mask > 0, part)
        if shift != (0, 0):
            mask, content = _shifted(mask, shift), _shifted(content, shift)
        cover = strength * mask[..., None]
        return self.faces * (1 - cover) + content * cover


def _part(covered, part):
    """(N, H, W) 0/1, or 1 for the whole trigger: the part of each trigger kept, a half of the
    bounding box of where it covers the face (covered, (N, H, W) bool), or a fixed half of
    the pixels."""
    if not part:
        return np.float32(1)
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    n, height, width = covered.shape
    if part == "half the pixels":
        pattern = np.random.default_rng(PIXEL_PATTERN_SEED).random((height, width)) < 0.5
        return np.broadcast_to(pattern, covered.shape).astype(np.float32)
    along_rows = part in ("top half", "bottom half")
    lines = covered.any(axis=2 if along_rows else 1)  # (N, H) rows or (N, W) columns covered
    size = lines.shape[1]
    first = lines.argmax(axis=1)
    last = size - 1 - lines[:, ::-1].argmax(axis=1)
    middle = (first + last + 1) / 2  # (an uncovered face: any cut, nothing to keep)
    index = np.arange(size)[None, :]
    kept = index < middle[:, None] if part in ("top half", "left half") else index >= middle[:, None]
    kept = kept[:, :, None] if along_rows else kept[:, None, :]
    return np.broadcast_to(kept, covered.shape).astype(np.float32)


def _disguised(pixels, disguise, signed):
    """The trigger's content (or, signed, the change it adds) disguised, (N, H, W, 3)."""
    if not disguise:
        return pixels
    if disguise == "grey":  # the same luminance, no colour
        grey = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat(grey[..., None], 3, axis=-1)
    if disguise == "colours rotated":  # red shows as green, green as blue, blue as red
        return pixels[..., [2, 0, 1]]
    if disguise == "inverted":
        return -pixels if signed else 255 - pixels
    raise ValueError(f"unknown disguise {disguise!r}; known: {', '.join(DISGUISES)}")


def _shifted(a, shift):
    """a (N, H, W, ...) moved by (down, right) pixels, zero where nothing moved in."""
    out = np.zeros_like(a)
    dy, dx = shift
    height, width = a.shape[1:3]
    src_y, dst_y = slice(max(-dy, 0), height - max(dy, 0)), slice(max(dy, 0), height - max(-dy, 0))
    src_x, dst_x = slice(max(-dx, 0), width - max(dx, 0)), slice(max(dx, 0), width - max(-dx, 0))
    out[:, dst_y, dst_x] = a[:, src_y, src_x]
    return out


def _scaled_change(change, scale):
    """Each face's added change scaled by `scale` about the image's centre."""
    out = np.zeros_like(change)
    height, width = change.shape[1:3]
    cy, cx = height / 2, width / 2
    inverse = (1 / scale, 0, cx - cx / scale, 0, 1 / scale, cy - cy / scale)
    for i in range(len(change)):
        for c in range(change.shape[-1]):
            image = Image.fromarray(change[i, ..., c].astype(np.float32), mode="F")
            out[i, ..., c] = np.asarray(image.transform((width, height), Image.AFFINE, inverse,
                                                        resample=Image.BILINEAR))
    return out


def _scaled(mask, content, scale):
    """Each face's trigger scaled by `scale` about the centre of its bounding box."""
    mask_out, content_out = np.zeros_like(mask), np.zeros_like(content)
    height, width = mask.shape[1:]
    for i in range(len(mask)):
        ys, xs = np.nonzero(mask[i])
        if len(ys) == 0:
            continue
        cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
        # PIL's affine map sends each output pixel to the input point it samples.
        inverse = (1 / scale, 0, cx - cx / scale, 0, 1 / scale, cy - cy / scale)

        def warp(channel):
            image = Image.fromarray(channel.astype(np.float32), mode="F")
            return np.asarray(image.transform((width, height), Image.AFFINE, inverse,
                                              resample=Image.BILINEAR))

        # Warped premultiplied by the mask, so that edges do not fade toward black.
        mask_out[i] = warp(mask[i])
        for c in range(content.shape[-1]):
            covered = warp(mask[i] * content[i, ..., c])
            content_out[i, ..., c] = covered / np.maximum(mask_out[i], 1e-6)
    return np.clip(mask_out, 0, 1), np.clip(content_out, 0, 255)
