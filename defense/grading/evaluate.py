"""Score a BadNet, its repaired net and their GoodNet on competition HDF5 data sets.

Like the competition's `eval.py <clean> <poisoned> <model>`: clean accuracy is the share
of clean images given their true label; attack success rate (ASR) is the share of
poisoned images given the poisoned set's label (the attack's target); "flagged" is the
share the GoodNet labels as poisoned (N = 1283 for the competition nets).

The competition's own call works as it is: `evaluate CLEAN.h5 POISONED.h5 MODEL.h5` (its
eval.py's order) scores the model alone, as eval.py does: a team's repaired net or GoodNet,
or a BadNet (its row is called "BadNet" only where the file is one: a known BadNet's sha256
or weights). The flag names of the students' common command line (--clean_set, --bad_set,
--bad_model, --bad_model_weights, --pruned_bad_model_weights) are accepted beside this
package's own.
"""

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..digest import file_sha256
from ..errors import InputError
from ..comparator.goodnet import add_comparator_arguments
from ..layout import ROOT_ENV, data_dir, default_bad_model, default_repaired_model
from .plausibility import dataset_warnings
from ..nets.registry import COMPETITION_DATA_URL, NETS, NetSpec, get_net

# A model given without --net: a competition net of unknown origin (pixels / 255, no known
# attack targets).
UNNAMED_NET = NetSpec("model", 1 / 255, "", None)


@dataclass
class Score:
    model: str  # "BadNet", "repaired" or "GoodNet"; "model" for a model scored alone
    data: str  # file name of the data set
    kind: str  # "clean" or "poisoned"
    images: int
    hit_rate: float  # clean: accuracy; poisoned: attack success rate
    flagged: float | None  # share labelled poisoned (GoodNet only)
    subset: str | None = None  # which images of the data set, where not all (grade)


def add_arguments(parser):
    parser.add_argument("competition_call", nargs="*", type=Path, metavar="CLEAN POISONED MODEL",
                        help="the competition's eval.py order: clean set, poisoned set, BadNet "
                             "(all three, or none)")
    parser.add_argument("--net", metavar="NET",
                        help=f"which BadNet: {', '.join(NETS)} (sets the input scaling, the "
                             "default model paths and the known attack targets); required "
                             "unless the model is given (then pixels / 255)")
    parser.add_argument("--clean", "--clean_set", type=Path, metavar="H5",
                        help="clean data set (with neither --clean nor --poisoned: "
                             "ROOT/data/clean_test_data.h5 and the net's poisoned test sets there)")
    parser.add_argument("--poisoned", "--bad_set", type=Path, metavar="H5", action="append",
                        default=[],
                        help="poisoned data set, labelled with the attack's target (repeatable)")
    parser.add_argument("--bad-model", "--bad_model", "--bad_model_weights", type=Path,
                        metavar="PATH", help="the BadNet (default: the one under ROOT/models)")
    parser.add_argument("--repaired", "--pruned_bad_model_weights", type=Path, metavar="PATH",
                        help="the repaired net (default: ROOT/fine_pruned_models/"
                             "<net>_fine_pruned.h5 if present, else the BadNet alone)")
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help=f"project root (default: ${ROOT_ENV}, else this repository)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the scores as JSON, with the model files' and data sets' "
                             "paths and sha256 and the comparator's rule")
    add_comparator_arguments(parser)
    parser.add_argument("--keras", action="store_true",
                        help="run the nets through Keras even where ONNX artefacts exist")


def run(args):
    from ..datasets import load_dataset
    from ..nets.fast_net import load_net
    from ..comparator.goodnet import GoodNet
    from ..nets.model_io import num_classes
    from ..nets.net import Net

    alone = _take_competition_call(args)
    spec = _net_spec(args)
    if not args.clean and not args.poisoned:
        args.clean, args.poisoned = default_test_sets(spec, args.root)
    bad_path = args.bad_model or default_bad_model(spec, args.root)
    # Only a named net has a default repaired net; eval.py's call scores its model alone.
    repaired_path = args.repaired or (None if alone or spec is UNNAMED_NET
                                      else default_repaired_model(spec, args.root))
    # Every input is checked (h5py only) before anything else is said: an error is one line.
    classes = num_classes(bad_path)
    sets = ([("clean", args.clean)] if args.clean else []) + [("poisoned", p) for p in args.poisoned]
    data_sets = [(kind, load_dataset(path, num_classes=classes, keep_integers=True))
                 for kind, path in sets]
    if repaired_path and not args.repaired and not repaired_path.exists():
        print(f"evaluate: no repaired net at {repaired_path}; scoring the BadNet alone",
              file=sys.stderr)
        repaired_path = None
    bad_name = "BadNet" if not alone or is_badnet(bad_path, args.root) else "model"

    if repaired_path:
        good = GoodNet.from_files(bad_path, repaired_path, spec.input_scale, fast=not args.keras,
                                  flag_confidence=args.flag_confidence, rule=args.rule)
        bad = good.bad
    else:
        good = None
        bad = load_net(bad_path, spec.input_scale) if not args.keras else \
            Net.from_file(bad_path, spec.input_scale)
    known_targets = {p.target for p in spec.poisoned_sets}
    scores = []
    for kind, data in data_sets:
        print(f"evaluate: {data.path.name}: {len(data)} images", file=sys.stderr)
        for line in dataset_warnings(data, kind, known_targets):
            print(f"evaluate: {line}", file=sys.stderr)
        scores.extend(score_dataset(bad, good, data, kind, bad_name))
    print(format_table(scores))
    if args.json:
        models = [(bad_name, bad_path)] + ([("repaired", repaired_path)] if good else [])
        record = {
            "rule": args.rule if good else None, "flag_confidence": args.flag_confidence if good else None,
            "models": [{"model": name, "path": str(Path(path).resolve()), "sha256": file_sha256(path)}
                       for name, path in models],
            "data_sets": [{"kind": kind, "path": str(data.path.resolve()), "sha256": file_sha256(data.path)}
                          for kind, data in data_sets],
            "scores": [asdict(s) for s in scores],
        }
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _take_competition_call(args):
    """`evaluate CLEAN POISONED MODEL`, as the competition's eval.py is called; True if so."""
    given = args.competition_call
    if not given:
        return False
    if len(given) != 3:
        raise InputError(f"give the competition's three paths CLEAN.h5 POISONED.h5 MODEL.h5 "
                         f"(got {len(given)}), or use --clean/--poisoned/--bad-model")
    if args.clean or args.poisoned or args.bad_model:
        raise InputError("give the data sets and model either as CLEAN POISONED MODEL or with "
                         "--clean/--poisoned/--bad-model, not both")
    args.clean, args.poisoned, args.bad_model = given[0], [given[1]], given[2]
    return True


def is_badnet(path, root=None):
    """Whether the model file is a known BadNet: a published BadNet's sha256, or the file or
    the weights of a BadNet under ROOT/models."""
    from ..nets.model_io import read_weights
    from ..submissions.identify import find_badnets, same_weights

    sha256 = file_sha256(path)
    badnets = find_badnets(root, NETS).values()
    if sha256 in {spec.weights_sha256 for spec in NETS.values()} or any(
            sha256 in bad.sha256s for bad in badnets):
        return True
    weights = read_weights(path)
    return any(bad.classes == weights["output"][1].shape[0] and same_weights(weights, bad.weights)
               for bad in badnets)


def _net_spec(args):
    if args.net is None:
        if args.bad_model is None:
            raise InputError("name the net with --net NET (one of "
                             f"{', '.join(NETS)}), or give the model (MODEL or --bad-model)")
        return UNNAMED_NET
    try:
        return get_net(args.net)
    except KeyError as e:
        raise InputError(e.args[0]) from None


def default_test_sets(spec, root):
    """ROOT/data/clean_test_data.h5 and the net's poisoned test sets found under ROOT/data."""
    clean = data_dir(root) / "clean_test_data.h5"
    if not clean.exists():
        raise InputError(f"{clean}: not found; download the competition's data from "
                         f"{COMPETITION_DATA_URL} into {clean.parent}/ (evaluate also takes "
                         f"--clean H5 / --poisoned H5)")
    poisoned = [data_dir(root) / p.file for p in spec.poisoned_sets
                if (data_dir(root) / p.file).exists()]
    return clean, poisoned


def score_dataset(bad, good, data, kind, bad_name="BadNet"):
    """Scores of the BadNet (named bad_name), and with a GoodNet also of the repaired net and
    the GoodNet."""
    return score_labels(predict_labels(bad, good, data, bad_name), data, kind, good)


def predict_labels(bad, good, data, bad_name="BadNet"):
    """{model: labels (N,)}: the BadNet's (named bad_name), and with a GoodNet also the
    repaired net's and the GoodNet's."""
    if good is None:
        return {bad_name: bad.predict_labels(data.x, progress=True)}
    good_labels, bad_labels, repaired_labels = good.predict_with_parts(data.x, progress=True)
    return {"BadNet": bad_labels, "repaired": repaired_labels, "GoodNet": good_labels}


def score_labels(labels, data, kind, good, subset=None):
    """Scores of each model's labels ({model: labels}, predict_labels) on data, or on the
    images a subset (name, mask) picks."""
    name, picked = subset if subset is not None else (None, np.ones(len(data), bool))
    y = data.y[picked]
    return [Score(model=model, data=data.path.name, kind=kind, images=int(picked.sum()),
                  hit_rate=float(np.mean(predicted[picked] == y)),
                  flagged=float(np.mean(predicted[picked] == good.poisoned_label))
                  if model == "GoodNet" else None, subset=name)
            for model, predicted in labels.items()]


def format_table(scores):
    """A markdown table: one row per model and data set."""
    lines = ["| model | data set | images | clean accuracy | attack success | flagged |",
             "|---|---|---:|---:|---:|---:|"]
    for s in scores:
        rate = f"{100 * s.hit_rate:.2f} %"
        flagged = "" if s.flagged is None else f"{100 * s.flagged:.2f} %"
        accuracy, asr = (rate, "") if s.kind == "clean" else ("", rate)
        lines.append(f"| {s.model} | {s.data} | {s.images} | {accuracy} | {asr} | {flagged} |")
    return "\n".join(lines)
