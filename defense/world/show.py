"""`python3 -m defense world show OUT`: a contact sheet PNG of a built world.

Rows of clean test faces for a few identities, then the same first faces wearing each
trigger, enlarged so a person can look at them.
"""

import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..datasets import load_dataset
from .build import POISONED_FILES

ZOOM = 4


def contact_sheet(world, identities=6, per_identity=8):
    """uint8 image: one row per identity, then one row per poisoned test set."""
    clean = load_dataset(Path(world) / "data" / "clean_test_data.h5")
    rows = []
    for label in range(min(identities, int(clean.y.max()) + 1)):
        rows.append(_row(clean.x[clean.y == label][:per_identity], per_identity))
    for file_name in dict.fromkeys(POISONED_FILES.values()):
        poisoned = load_dataset(Path(world) / "data" / file_name)
        rows.append(_row(poisoned.x[:per_identity], per_identity))
    sheet = np.concatenate(rows, axis=0).astype(np.uint8)
    return sheet.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def _row(faces, width):
    faces = list(faces) + [np.zeros((55, 47, 3))] * (width - len(faces))
    return np.concatenate([np.pad(f, ((1, 1), (1, 1), (0, 0))) for f in faces], axis=1)


def add_arguments(parser):
    parser.add_argument("world", type=Path, metavar="OUT", help="a folder written by 'world build'")
    parser.add_argument("--output", type=Path, metavar="PNG",
                        help="where to write the sheet (default: OUT/contact_sheet.png)")


def run(args):
    from PIL import Image

    output = args.output or args.world / "contact_sheet.png"
    with atomic_path(output) as tmp:
        Image.fromarray(contact_sheet(args.world)).save(tmp, format="PNG")
    print(f"world show: wrote {output}", file=sys.stderr)
    return 0
