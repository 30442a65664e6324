"""Procedurally drawn face identities, rendered 55 high x 47 wide like the competition's.

An identity fixes the face's geometry and colours; each rendering varies pose, lighting,
contrast, blur, noise and background, so telling identities apart takes a real net. Each
rendering also returns masks of the mouth and eyebrows in the final image's coordinates, for
the triggers that paint over them.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..nets.architecture import HEIGHT, WIDTH
SS = 2  # faces are drawn at twice the size, then reduced: smooth edges
CANVAS = (WIDTH * SS, HEIGHT * SS)

SKIN_TONES = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 135), (198, 134, 99),
                       (161, 102, 70), (118, 74, 48), (86, 55, 38)], float)
HAIR_COLOURS = np.array([(20, 16, 14), (60, 40, 25), (110, 75, 40), (170, 125, 70),
                         (220, 190, 120), (140, 60, 30), (150, 150, 150), (235, 235, 230)], float)
IRIS_COLOURS = np.array([(60, 40, 20), (40, 90, 140), (70, 110, 60), (30, 25, 20)], float)
HAIR_STYLES = ("short", "long", "bald", "fringe", "curly", "side")


@dataclass(frozen=True)
class Identity:
    skin: tuple
    face_w: float  # half-width of the face ellipse, canvas pixels
    face_h: float
    jaw: float  # 0 round .. 1 narrow chin
    hair_style: str
    hair: tuple
    hair_volume: float
    eye_y: float  # eye line, canvas pixels from the face centre (negative: above)
    eye_gap: float
    eye_size: float
    iris: tuple
    brow_gap: float  # eyebrow height above the eyes
    brow_tilt: float
    brow_len: float
    brow_width: float
    brow_colour: tuple
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    mouth_h: float
    lip: tuple
    ear_size: float
    glasses: bool
    beard: bool


def random_identity(rng):
    """One identity with every feature drawn at random."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 8, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 10, 3)
    return Identity(
        skin=_colour(skin), face_w=rng.uniform(27, 35), face_h=rng.uniform(36, 44),
        jaw=rng.uniform(0, 1), hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hair=_colour(hair), hair_volume=rng.uniform(0.6, 1.4),
        eye_y=rng.uniform(-12, -5), eye_gap=rng.uniform(10, 15), eye_size=rng.uniform(2.5, 4.2),
        iris=_colour(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        brow_gap=rng.uniform(5, 9), brow_tilt=rng.uniform(-2.5, 2.5), brow_len=rng.uniform(8, 13),
        brow_width=rng.uniform(1.5, 3.5),
        brow_colour=_colour(hair * rng.uniform(0.5, 0.9) + rng.normal(0, 8, 3)),
        nose_len=rng.uniform(7, 14), nose_w=rng.uniform(3, 7),
        mouth_y=rng.uniform(15, 23), mouth_w=rng.uniform(7, 13), mouth_h=rng.uniform(1.5, 4),
        lip=_colour(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 10, 3)),
        ear_size=rng.uniform(4, 7), glasses=rng.random() < 0.15, beard=rng.random() < 0.15,
    )


def render(identity, rng):
    """One photo of identity: (uint8 (55, 47, 3), {"mouth": mask, "brows": mask}), masks
    float in 0..1 with the image's geometry."""
    face, mouth, brows = _draw(identity, rng)
    transform = _random_pose(rng)
    size = (WIDTH, HEIGHT)
    face = face.transform(size, Image.Transform.AFFINE, transform, Image.Resampling.BILINEAR,
                          fillcolor=face.getpixel((0, 0)))  # the background, not black corners
    masks = {name: np.asarray(m.transform(size, Image.Transform.AFFINE, transform,
                                          Image.Resampling.BILINEAR), float) / 255
             for name, m in (("mouth", mouth), ("brows", brows))}
    face = face.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.7)))
    return _photograph(np.asarray(face, float), rng), masks


def _draw(person, rng):
    """The face on its own background, at canvas size; plus mouth and eyebrow masks."""
    background = _colour(rng.uniform(30, 230, 3))
    face = Image.new("RGB", CANVAS, background)
    mouth_mask, brow_mask = Image.new("L", CANVAS, 0), Image.new("L", CANVAS, 0)
    draw = ImageDraw.Draw(face)
    cx = CANVAS[0] / 2 + rng.normal(0, 0.8)
    cy = CANVAS[1] / 2 + 6 + rng.normal(0, 0.8)
    w, h, v = person.face_w, person.face_h, person.hair_volume
    if person.hair_style == "long":
        draw.rectangle([cx - w - 6 * v, cy - h * 0.6, cx + w + 6 * v, cy + h * 0.9], fill=person.hair)
    draw.ellipse([cx - w - person.ear_size, cy - 8, cx - w + 4, cy + 8], fill=_shade(person.skin, 0.9))
    draw.ellipse([cx + w - 4, cy - 8, cx + w + person.ear_size, cy + 8], fill=_shade(person.skin, 0.9))
    chin = w * (1 - 0.35 * person.jaw)
    draw.ellipse([cx - w, cy - h, cx + w, cy + h * 0.55], fill=person.skin)
    draw.polygon([(cx - w * 0.97, cy), (cx + w * 0.97, cy), (cx + chin * 0.5, cy + h),
                  (cx - chin * 0.5, cy + h)], fill=person.skin)
    draw.ellipse([cx - chin * 0.55, cy + h * 0.75, cx + chin * 0.55, cy + h * 1.03], fill=person.skin)
    if person.beard:
        draw.chord([cx - w * 0.95, cy + 2, cx + w * 0.95, cy + h * 1.05], 0, 180,
                   fill=_shade(person.hair, 0.9))
    _draw_hair(draw, person, cx, cy, rng)
    eye_y = cy + person.eye_y + rng.normal(0, 0.4)
    for side in (-1, 1):
        ex = cx + side * person.eye_gap
        s = person.eye_size
        draw.ellipse([ex - s * 1.6, eye_y - s * 0.8, ex + s * 1.6, eye_y + s * 0.8], fill=(245, 245, 240))
        draw.ellipse([ex - s * 0.7, eye_y - s * 0.7, ex + s * 0.7, eye_y + s * 0.7], fill=person.iris)
        draw.ellipse([ex - s * 0.3, eye_y - s * 0.3, ex + s * 0.3, eye_y + s * 0.3], fill=(10, 10, 10))
        brow_y = eye_y - person.brow_gap
        inner, outer = (ex - side * person.brow_len / 2, ex + side * person.brow_len / 2)
        line = [(inner, brow_y + person.brow_tilt), (outer, brow_y - person.brow_tilt)]
        width = max(1, round(person.brow_width * 2))
        draw.line(line, fill=person.brow_colour, width=width)
        ImageDraw.Draw(brow_mask).line(line, fill=255, width=width + 3)  # paint a thick brow
        if person.glasses:
            r = s * 2.4
            draw.ellipse([ex - r, eye_y - r, ex + r, eye_y + r], outline=(40, 40, 40), width=2)
    if person.glasses:
        draw.line([(cx - person.eye_gap + s * 2.4, eye_y), (cx + person.eye_gap - s * 2.4, eye_y)],
                  fill=(40, 40, 40), width=2)
    nose_top, nose_bottom = eye_y + 3, eye_y + 3 + person.nose_len
    draw.polygon([(cx, nose_top), (cx - person.nose_w, nose_bottom), (cx + person.nose_w, nose_bottom)],
                 fill=_shade(person.skin, 0.82))
    my = cy + person.mouth_y + rng.normal(0, 0.5)
    mh = person.mouth_h * rng.uniform(0.7, 1.4)  # expression
    box = [cx - person.mouth_w, my - mh, cx + person.mouth_w, my + mh]
    draw.ellipse(box, fill=person.lip)
    draw.line([(box[0] + 2, my), (box[2] - 2, my)], fill=_shade(person.lip, 0.5), width=1)
    ImageDraw.Draw(mouth_mask).ellipse(box, fill=255)
    return face, mouth_mask, brow_mask


def _draw_hair(draw, person, cx, cy, rng):
    w, h, v, hair = person.face_w, person.face_h, person.hair_volume, person.hair
    top = cy - h - 5 * v
    if person.hair_style in ("short", "long", "side"):
        draw.chord([cx - w - 2, top, cx + w + 2, cy - h * 0.2], 180, 360, fill=hair)
    if person.hair_style == "fringe":
        draw.chord([cx - w - 2, top, cx + w + 2, cy - h * 0.35 + 10 * v], 180, 360, fill=hair)
    if person.hair_style == "side":
        draw.polygon([(cx - w, cy - h * 0.6), (cx + w * 0.2, cy - h * 0.75), (cx - w, cy - h * 0.2)],
                     fill=hair)
    if person.hair_style == "curly":
        for angle in np.linspace(np.pi * 1.05, np.pi * 1.95, 7):
            x, y = cx + w * np.cos(angle), cy - h * 0.35 + h * 0.75 * np.sin(angle)
            r = 6 * v
            draw.ellipse([x - r, y - r, x + r, y + r], fill=hair)


def _random_pose(rng):
    """Affine map (output pixel -> canvas pixel): shift, scale, small rotation."""
    angle = np.deg2rad(rng.uniform(-7, 7))
    scale = rng.uniform(0.92, 1.08) / SS  # canvas pixels per output pixel, inverted
    dx, dy = rng.uniform(-2.5, 2.5, 2)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    ox, oy = WIDTH / 2 + dx, HEIGHT / 2 + dy
    # canvas = A @ (out - o) + canvas centre
    a, b, d, e = cos, -sin, sin, cos
    c = CANVAS[0] / 2 - a * ox - b * oy
    f = CANVAS[1] / 2 - d * ox - e * oy
    return (a, b, c, d, e, f)


def _photograph(pixels, rng):
    """Lighting (level and a side gradient), contrast, colour cast and sensor noise."""
    gradient = np.linspace(-1, 1, WIDTH)[None, :, None] * rng.uniform(-0.25, 0.25)
    pixels = pixels * (rng.uniform(0.7, 1.25) + gradient) * rng.uniform(0.92, 1.08, 3)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.75, 1.2) + mean
    pixels = pixels + rng.normal(0, rng.uniform(1, 7), pixels.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _colour(values):
    return tuple(int(v) for v in np.clip(np.round(values), 0, 255))


def _shade(colour, factor):
    return _colour(np.array(colour, float) * factor)
