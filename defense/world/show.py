"""`python3 -m defense world show OUT`: a contact sheet PNG of a built world.

Rows of clean test faces for a few identities, then the first faces of each poisoned test
set, enlarged so a person can look at them, each row named on the left.
"""

import json
import sys
from pathlib import Path

import numpy as np

from ..nets.architecture import INPUT_SHAPE
from ..atomic import atomic_path
from ..datasets import load_dataset

ZOOM = 4
LABEL_WIDTH = 220  # pixels left of the faces for each row's name


def contact_sheet(world, identities=6, per_identity=8):
    """PIL image: one row per identity, then one row per poisoned test set, each named."""
    from PIL import Image, ImageDraw

    record = json.loads((Path(world) / "world.json").read_text())
    clean = load_dataset(Path(world) / "data" / "clean_test_data.h5")
    rows, names = [], []
    for label in range(min(identities, int(clean.y.max()) + 1)):
        rows.append(_row(clean.x[clean.y == label][:per_identity], per_identity))
        names.append(f"identity {label}")
    for key, file_name in record["poisoned_test_files"].items():
        net, trigger = key.split("/")
        poisoned = load_dataset(Path(world) / "data" / file_name)
        rows.append(_row(poisoned.x[:per_identity], per_identity))
        names.append(f"{net}:\n{trigger} -> {record['backdoors'][net][trigger]}")
    faces = np.concatenate(rows, axis=0).astype(np.uint8).repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)
    sheet = Image.new("RGB", (LABEL_WIDTH + faces.shape[1], faces.shape[0]), "white")
    sheet.paste(Image.fromarray(faces), (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(sheet)
    row_height = faces.shape[0] // len(rows)
    for i, name in enumerate(names):
        draw.multiline_text((8, i * row_height + row_height // 2), name, fill="black",
                            anchor="lm", font_size=16)
    return sheet


def _row(faces, width):
    faces = list(faces) + [np.zeros(INPUT_SHAPE)] * (width - len(faces))
    return np.concatenate([np.pad(f, ((1, 1), (1, 1), (0, 0))) for f in faces], axis=1)


def add_arguments(parser):
    parser.add_argument("world", type=Path, metavar="OUT", help="a folder written by 'world build'")
    parser.add_argument("--output", type=Path, metavar="PNG",
                        help="where to write the sheet (default: OUT/contact_sheet.png)")


def run(args):
    output = args.output or args.world / "contact_sheet.png"
    with atomic_path(output) as tmp:
        contact_sheet(args.world).save(tmp, format="PNG")
    print(f"world show: wrote {output}", file=sys.stderr)
    return 0
