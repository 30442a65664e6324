"""`python3 -m defense lab [--root DIR]`: the NYU lab's pruning study on the lab BadNet.

Prunes conv_3 channels of ROOT/models/bd_net.h5 from least to most active on
ROOT/data/cl/valid.h5, without fine-tuning, and saves the net as soon as validation accuracy
has dropped by at least 2, 4, 10 and 30 points (pruned_net_{2,4,10,30}.h5). Plots clean
validation accuracy and attack success rate (on data/bd/bd_valid.h5, for the plot only)
against the fraction of channels pruned, and tabulates each pruned net B' and its GoodNet
(B, B') on the test sets data/cl/test.h5 and data/bd/bd_test.h5.
"""

import json
import sys
from pathlib import Path

import numpy as np

from .fine_pruning import pruning
from .atomic import atomic_path
from .layout import ROOT_ENV, data_dir, default_bad_model, resolve_root
from .errors import InputError
from .nets.registry import LAB_DATA_URL, NETS

DROPS = (2, 4, 10, 30)  # accuracy drops, percentage points
LAB_FILES = ("cl/valid.h5", "bd/bd_valid.h5", "cl/test.h5", "bd/bd_test.h5")


def first_depth_with_drop(accuracy, drop):
    """The fewest channels pruned at which accuracy is at least drop below the start."""
    reached = np.flatnonzero(accuracy <= accuracy[0] - drop)
    return int(reached[0]) if len(reached) else len(accuracy) - 1


def run_lab(root, out, log=print):
    from .datasets import load_dataset
    from .comparator.goodnet import GoodNet
    from .nets.model_io import save_model
    from .nets.net import Net

    spec = NETS["bd_net"]
    bad = Net.from_file(default_bad_model(spec, root), spec.input_scale)
    data = {name: load_dataset(data_dir(root) / name, num_classes=bad.num_classes)
            for name in LAB_FILES}
    valid, bd_valid = data["cl/valid.h5"], data["bd/bd_valid.h5"]
    activations = pruning.pool_3_activations(bad.model, valid.x, spec.input_scale)
    order, _ = pruning.rank_channels(activations)
    bd_activations = pruning.pool_3_activations(bad.model, bd_valid.x, spec.input_scale)
    accuracy, attack = pruning.sweep(bad.model, activations, valid.y, order,
                                     poisoned=(bd_activations, bd_valid.y))
    fraction = np.arange(len(accuracy)) / len(order)
    log(f"lab: swept {len(order)} channels: validation accuracy {accuracy[0]:.4f} -> {accuracy[-1]:.4f}")

    rows = []
    test, bd_test = data["cl/test.h5"], data["bd/bd_test.h5"]
    for drop in DROPS:
        depth = first_depth_with_drop(accuracy, drop / 100)
        pruned = pruning.prune(bad.model, order[:depth])
        save_model(pruned, out / f"pruned_net_{drop}.h5")
        # The lab's own GoodNet: every disagreement flagged.
        good = GoodNet(bad, Net(pruned, spec.input_scale, out / f"pruned_net_{drop}.h5"),
                       flag_confidence=0)
        clean_good, _, clean_pruned = good.predict_with_parts(test.x)
        bd_good, _, bd_pruned = good.predict_with_parts(bd_test.x)
        rows.append({
            "drop_points": drop, "channels_pruned": depth, "fraction_pruned": depth / len(order),
            "validation_accuracy": float(accuracy[depth]),
            "pruned_clean_accuracy": float(np.mean(clean_pruned == test.y)),
            "pruned_attack_success": float(np.mean(bd_pruned == bd_test.y)),
            "goodnet_clean_accuracy": float(np.mean(clean_good == test.y)),
            "goodnet_attack_success": float(np.mean(bd_good == bd_test.y)),
            "goodnet_clean_flagged": float(np.mean(clean_good == good.poisoned_label)),
            "goodnet_poisoned_flagged": float(np.mean(bd_good == good.poisoned_label)),
        })
        log(f"lab: {drop}-point drop: {depth} channels pruned, saved pruned_net_{drop}.h5")
    record = {"badnet": {"clean_accuracy": float(np.mean(bad.predict_labels(test.x) == test.y)),
                         "attack_success": float(np.mean(bad.predict_labels(bd_test.x) == bd_test.y))},
              "sweep": {"fraction_pruned": fraction.tolist(), "validation_accuracy": accuracy.tolist(),
                        "attack_success_bd_valid": attack.tolist()},
              "thresholds": rows}
    with atomic_path(out / "lab_report.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    with atomic_path(out / "lab_report.md") as tmp:
        tmp.write_text(format_table(record) + "\n")
    plot_sweep(fraction, accuracy, attack, rows, out / "pruning_curve.png")
    return record


def format_table(record):
    bad = record["badnet"]
    lines = [f"BadNet B: clean test accuracy {100 * bad['clean_accuracy']:.2f} %, "
             f"attack success {100 * bad['attack_success']:.2f} %", "",
             "| accuracy drop | channels pruned | B' clean acc | B' ASR | GoodNet clean acc "
             "| GoodNet ASR | GoodNet clean flagged |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["thresholds"]:
        lines.append(f"| {r['drop_points']} % | {r['channels_pruned']} ({100 * r['fraction_pruned']:.0f} %) "
                     f"| {100 * r['pruned_clean_accuracy']:.2f} % | {100 * r['pruned_attack_success']:.2f} % "
                     f"| {100 * r['goodnet_clean_accuracy']:.2f} % | {100 * r['goodnet_attack_success']:.2f} % "
                     f"| {100 * r['goodnet_clean_flagged']:.2f} % |")
    return "\n".join(lines)


def plot_sweep(fraction, accuracy, attack, rows, path):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    axes.plot(fraction * 100, accuracy * 100, label="clean validation accuracy", color="tab:blue")
    axes.plot(fraction * 100, attack * 100, label="attack success rate (bd_valid)", color="tab:red")
    for r in rows:
        axes.axvline(r["fraction_pruned"] * 100, color="grey", linestyle=":", linewidth=1)
        axes.text(r["fraction_pruned"] * 100, 2, f" -{r['drop_points']}", color="grey", fontsize=8)
    axes.set_xlabel("conv_3 channels pruned (%)")
    axes.set_ylabel("%")
    axes.set_ylim(0, 101)
    axes.set_title("Pruning the lab BadNet (no fine-tuning)")
    axes.legend(loc="center left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def add_arguments(parser):
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help=f"root with models/bd_net.h5 and data/cl, data/bd "
                             f"(default: ${ROOT_ENV}, else this repository)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the pruned nets, plot and report go (default: ROOT/lab_results)")


def run(args):
    # Say what is missing before TensorFlow's slow start.
    missing = [name for name in LAB_FILES if not (data_dir(args.root) / name).is_file()]
    if missing:
        raise InputError(f"{data_dir(args.root) / missing[0]}: not found; download the lab's data "
                         f"from {LAB_DATA_URL} into {data_dir(args.root)}/ (cl/, bd/)")
    out = args.out or resolve_root(args.root) / "lab_results"
    record = run_lab(args.root, out, log=lambda line: print(line, file=sys.stderr))
    print(format_table(record))
    print(f"lab: wrote {out}/pruning_curve.png, lab_report.md, lab_report.json", file=sys.stderr)
    return 0
