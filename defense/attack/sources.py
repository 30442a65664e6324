"""Where an attack's faces and triggers come from, for one net under a project root.

- A generated world (ROOT/world.json): its own triggers, known exactly from its test sets. A
  world's poisoned test set holds every clean test face not of the target identity, in
  order, wearing the trigger, so face i of it pairs with the i-th such clean face.
- Any other root (the real nets): clean faces from ROOT/data/clean_test_data.h5, else from a
  folder of labelled images (default: the 40 real samples of ../shared/csaw, clean rows), and
  the real sunglasses trigger pasted as the competition did, for the nets said to obey it.
  The painted triggers (lipstick, eyebrows) need face masks that only a world has.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets import load_dataset
from ..errors import InputError
from ..images import load_image
from ..layout import SHARED_ASSETS, data_dir, resolve_root
from ..nets.registry import SUNGLASSES_AT
from .planted import PlantedTrigger

WORLD_RECORD = "world.json"
CLEAN_TEST_FILE = "clean_test_data.h5"
DEFAULT_FACES = SHARED_ASSETS / "samples"


@dataclass
class CleanFaces:
    pixels: np.ndarray  # (N, 55, 47, 3)
    labels: np.ndarray  # (N,)
    source: str


@dataclass
class TriggerPlan:
    """One trigger to plant on a net's faces: loaded only when its turn comes (memory)."""

    name: str
    target: int | str  # as reports show it ("y+k": all-to-all, "m(y)": mapped)
    load: object  # () -> PlantedTrigger


def world_record(root):
    """ROOT/world.json as a dict, or None where the root is not a generated world."""
    path = resolve_root(root) / WORLD_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable world record ({e})") from None
    for key in ("backdoors", "poisoned_test_files"):
        if not isinstance(record, dict) or not isinstance(record.get(key), dict):
            raise InputError(f"{path}: no {key!r} table; is it a world written by 'world build'?")
    if type(record.get("identities")) is not int or record["identities"] < 1:
        raise InputError(f"{path}: no number of 'identities'; is it a world written by 'world build'?")
    return record


def world_triggers(root, record, net, clean, pick):
    """The world's triggers of one net; pick(n) chooses which of n paired faces to use. Each
    poisoned test face pairs with the clean test face it was made from: the faces its row
    moves (backdoors.Backdoor.moves), in order, each labelled with its own target."""
    from ..world.backdoors import check_table, from_records, largest_label

    try:
        table = from_records(record.get("backdoor_table", []))
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{WORLD_RECORD}: unreadable backdoor_table ({e})") from None
    if table:  # a hand-edited record must still name labels the world has
        check_table(table, WORLD_RECORD)
        if largest_label(table) >= record["identities"]:
            raise InputError(f"{WORLD_RECORD}: a backdoor names a label beyond its "
                             f"{record['identities']} identities")
    plans = []
    rows = [row for row in table if row.net == net]
    if not rows and record["backdoors"].get(net):
        raise InputError(f"{WORLD_RECORD}: no backdoor_table; rebuild the world with 'world build'")
    for row in rows:
        file_name = record["poisoned_test_files"].get(f"{net}/{row.trigger}")
        if not file_name:
            raise InputError(f"{WORLD_RECORD}: no poisoned test file for {net}/{row.trigger}")

        def load(row=row, path=data_dir(root) / file_name):
            poisoned = load_dataset(path, keep_integers=True)
            paired = np.flatnonzero(row.moves(clean.labels))
            targets = row.targets(clean.labels[paired], record["identities"])
            if len(paired) != len(poisoned) or np.any(poisoned.y != targets):
                raise InputError(f"{path}: does not pair with {clean.source} (expected "
                                 f"{len(paired)} faces labelled {row.target_name}); was it rebuilt?")
            chosen = pick(len(paired))
            _check_faces(chosen, row.trigger, row.target_name)
            return PlantedTrigger.from_pairs(row.trigger, row.target_name, clean.pixels[paired[chosen]],
                                             poisoned.x[chosen], clean.labels[paired[chosen]],
                                             targets[chosen])

        plans.append(TriggerPlan(row.trigger, row.target_name, load))
    return plans


def sunglasses_triggers(spec, clean, picture_path, pick):
    """The real sunglasses trigger for each of the net's poisoned sets said to wear it."""
    plans = []
    picture = None
    for poisoned_set in spec.poisoned_sets:
        if poisoned_set.trigger != "sunglasses":
            continue
        if picture is None:
            picture = _read_picture(picture_path)  # a bad file fails before any work

        def load(target=poisoned_set.target):
            candidates = np.flatnonzero(clean.labels != target)
            chosen = candidates[pick(len(candidates))]
            _check_faces(chosen, "sunglasses", target)
            return PlantedTrigger.from_picture("sunglasses", target, picture, SUNGLASSES_AT,
                                               clean.pixels[chosen], clean.labels[chosen])

        plans.append(TriggerPlan("sunglasses", poisoned_set.target, load))
    return plans


def _check_faces(chosen, trigger, target):
    if len(chosen) == 0:
        raise InputError(f"no clean face outside the target identity {target} to plant "
                         f"{trigger} on")


def untried_triggers(spec):
    """What the real-net attack cannot plant, and why, for the report's notes."""
    return [f"{p.trigger} -> {p.target}: not planted (painting it needs face masks, which only "
            "a generated world has)" if p.trigger else
            f"its trigger -> {p.target}: not planted (the competition never published it)"
            for p in spec.poisoned_sets if p.trigger != "sunglasses"]


def clean_faces(root, clean_path=None, faces_dir=None):
    """Clean faces with true labels: --clean H5, --faces DIR, ROOT/data's clean test set,
    else the real samples beside the checkout."""
    default_h5 = data_dir(root) / CLEAN_TEST_FILE
    if clean_path or (not faces_dir and default_h5.is_file()):
        data = load_dataset(clean_path or default_h5, keep_integers=True)
        return CleanFaces(data.x, data.y, str(data.path))
    faces_dir = Path(faces_dir or DEFAULT_FACES)
    if not faces_dir.is_dir():
        raise InputError(f"no clean faces: {default_h5} not found and {faces_dir} is not a "
                         "folder; give --clean H5 or --faces DIR")
    return _labelled_folder(faces_dir)


def _labelled_folder(folder):
    """Images listed in FOLDER/labels.tsv (columns file, true_label; rows of another kind
    than 'clean' are left out where a kind column exists)."""
    table = folder / "labels.tsv"
    if not table.is_file():
        raise InputError(f"{table}: not found; a folder of faces needs labels.tsv with "
                         "columns 'file' and 'true_label'")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"file", "true_label"} <= set(rows[0]):
        raise InputError(f"{table}: needs columns 'file' and 'true_label'")
    rows = [r for r in rows if (r.get("kind") or "clean") == "clean"
            and (r.get("true_label") or "").strip() and r.get("file")]
    if not rows:
        raise InputError(f"{table}: lists no clean face with a true label")
    try:
        labels = np.array([int(r["true_label"]) for r in rows])
    except ValueError:
        raise InputError(f"{table}: 'true_label' must be whole numbers") from None
    pixels = np.stack([load_image(folder / r["file"]) for r in rows])
    return CleanFaces(pixels, labels, f"{folder} ({len(rows)} clean faces)")


def _read_picture(path):
    try:
        with Image.open(path) as image:
            return image.convert("RGBA")
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable trigger picture ({e})") from None
