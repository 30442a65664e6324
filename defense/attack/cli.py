"""`python3 -m defense attack [--root DIR] [--net NET]`: the adaptive-attack report.

For each net with a BadNet and a repaired net under ROOT, its triggers (a generated world's
own; on the real nets the real sunglasses trigger where the net obeys it) are redrawn weaker,
moved, scaled, in part (a half, half the pixels), disguised (grey, recoloured, inverted), and
sent through JPEG, resizing and noise, then with the worst of each redrawing at once; clean
faces go through the same image transforms. With --perturb EPS, each trigger as planted also
gets a perturbation of at most EPS levels crafted on the public nets (perturbation.py). At
every setting: the BadNet's and the GoodNet's attack success rate and the share flagged, under
every comparator rule; per trigger the worst case ("adaptive ASR"). A repair's released and
witnessed labels (fine-prune --release), the labels its sibling BadNets vouch for (the
data-free repair) and the triggers aimed at them are named, and so is a sibling committee that
judges every label.
Writes attack.md, attack.json and attack.png (ASR and flagged share against trigger
strength, one panel per net) into ROOT/reports or --out; the summary tables go to stdout.
"""

import json
import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..comparator.goodnet import GoodNet, add_comparator_arguments
from ..layout import (ROOT_ENV, default_bad_model, default_repaired_model, no_repaired_net_error,
                      resolve_root)
from ..nets.model_io import num_classes
from ..nets.registry import COMPETITION_NETS, NETS, SUNGLASSES_TRIGGER, get_net
from . import report, sources
from .perturbation import STEPS
from .sweep import CLEAN_SWEEP, TRIGGER_SWEEP

DEFAULT_IMAGES = 2000


def add_arguments(parser):
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help=f"project root, or a generated world (default: ${ROOT_ENV}, else "
                             "this repository)")
    parser.add_argument("--net", action="append", metavar="NET", default=[],
                        help=f"attack this net only (repeatable; {', '.join(COMPETITION_NETS)}); "
                             "default: every net with a BadNet and a repaired net under ROOT")
    parser.add_argument("--repaired", type=Path, metavar="PATH",
                        help="the repaired net to judge, with a single --net (default: "
                             "ROOT/fine_pruned_models/<net>_fine_pruned.h5)")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, metavar="N",
                        help="faces per set, drawn at random (--seed); 0 takes them all "
                             "(default: %(default)s)")
    parser.add_argument("--clean", type=Path, metavar="H5",
                        help="clean faces (default: ROOT/data/clean_test_data.h5, else --faces)")
    parser.add_argument("--faces", type=Path, metavar="DIR",
                        help="a folder of clean faces with labels.tsv (columns file, "
                             f"true_label), used without a clean test set (default: "
                             f"{sources.DEFAULT_FACES})")
    parser.add_argument("--trigger", type=Path, default=SUNGLASSES_TRIGGER, metavar="PNG",
                        help="the sunglasses trigger (RGBA) for nets outside a generated world "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which faces (default: %(default)s)")
    parser.add_argument("--perturb", action="append", type=int, default=[], metavar="EPS",
                        help="also try each trigger as planted with a perturbation of at most EPS "
                             f"pixel levels (of 255), crafted by {STEPS} gradient steps on the public "
                             "nets: the BadNet and, for a --siblings repair, its sibling BadNets "
                             "through their nine views (white box; not the repaired net, not "
                             "--release's secret witness). Repeatable, 1 to 64; needs TensorFlow, "
                             "about half a second a face with three siblings on 2 cores")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for attack.md, attack.json and attack.png (default: "
                             "ROOT/reports)")
    add_comparator_arguments(parser)


def run(args):
    from tqdm import tqdm

    if args.images < 0 or args.seed < 0:
        raise InputError("--images and --seed must be 0 or more")
    if any(not 1 <= eps <= 64 for eps in args.perturb):
        raise InputError("--perturb takes pixel levels from 1 to 64")
    if args.repaired and len(args.net) != 1:
        raise InputError("--repaired needs exactly one --net")
    root = resolve_root(args.root)
    world = sources.world_record(root)
    if world and (args.clean or args.faces):
        raise InputError(f"{root} is a generated world: its triggers pair with its own clean "
                         "test set, so --clean and --faces do not apply")
    nets = _nets(args, root, world)
    pick = _picker(args.images, args.seed)
    every_face = sources.clean_faces(root, args.clean, args.faces)
    chosen = pick(len(every_face.labels))
    clean = sources.CleanFaces(every_face.pixels[chosen], every_face.labels[chosen],
                               every_face.source)

    jobs, notes = [], []
    for spec in nets:
        bad_path = default_bad_model(spec, root)
        repaired_path = args.repaired or default_repaired_model(spec, root)
        classes = num_classes(bad_path)
        if every_face.labels.max() >= classes:
            raise InputError(f"{every_face.source}: labels reach {every_face.labels.max()}, "
                             f"outside {spec.name}'s classes 0..{classes - 1}")
        # Triggers choose their own faces from all of them (a world's pairs need the order).
        if world:
            plans = sources.world_triggers(root, world, spec.name, every_face, pick)
        else:
            plans = sources.sunglasses_triggers(spec, every_face, args.trigger, pick)
            notes += [f"{spec.name}: {why}" for why in sources.untried_triggers(spec)]
        jobs.append((spec, bad_path, repaired_path, plans))
        print(f"attack: {spec.name}: {len(clean.labels)} clean faces from {clean.source}; "
              f"triggers: {', '.join(p.name for p in plans) or 'none'}", file=sys.stderr)

    rows, released, witnessed, vouched = [], {}, {}, {}
    perturbations = sorted(set(args.perturb))
    total = sum(len(CLEAN_SWEEP) + len(plans) * (len(TRIGGER_SWEEP) + len(perturbations))
                for *_, plans in jobs)
    with tqdm(total=total, desc="attack settings", unit="setting", disable=None) as bar:
        for spec, bad_path, repaired_path, plans in jobs:
            good = GoodNet.from_files(bad_path, repaired_path, spec.input_scale,
                                      warn=lambda line: print(line, file=sys.stderr),
                                      flag_confidence=args.flag_confidence, rule=args.rule)
            public = None
            if perturbations and plans:
                from .perturbation import PublicNets  # imports TensorFlow on first use only

                public = PublicNets.of(good, bad_path, spec.input_scale)
                notes.append(f"{spec.name}: perturbations crafted on {public.describe()}")
            rows += report.attack_net(spec.name, good, clean, plans, bar, perturbations, public)
            released[spec.name] = [int(label) for label in good.released]
            witnessed[spec.name] = [int(label) for label in good.witnessed]
            vouched[spec.name] = [int(label) for label in good.sibling_labels]
            if released[spec.name]:
                notes.append(_given_back_note(
                    spec.name, "released", released[spec.name], plans,
                    f"given only where both nets give them and the repaired net is at least "
                    f"{good.release_confidence} sure"
                    + (f", {good.witness.describe()}" if good.witness else "")
                    + (f", {good.release_test.describe()}" if good.release_test else "")))
            if witnessed[spec.name]:
                notes.append(_given_back_note(
                    spec.name, "witnessed", witnessed[spec.name], plans,
                    "quarantined, given back only where the BadNet gives one, the witness net gives "
                    "it as its top label and the image passes the blend test"))
            if vouched[spec.name]:
                notes.append(_given_back_note(
                    spec.name, "sibling-vouched", vouched[spec.name], plans,
                    "quarantined, given back only where the BadNet gives one and every sibling "
                    f"BadNet that vouches for it gives it as its top label: {good.siblings.describe()}"))
            if good.committee:
                notes.append(f"{spec.name}: every label judged by the sibling BadNets "
                             f"{good.siblings.describe_committee(good.veto_rank is not None)}: a trigger must move them too")

    settings = {"root": str(root), "images_per_set": args.images, "seed": args.seed,
                "rule": args.rule, "flag_confidence": args.flag_confidence,
                "repaired": str(args.repaired) if args.repaired else None,
                "released_labels": released, "witnessed_labels": witnessed,
                "sibling_vouched_labels": vouched, "perturb": perturbations}
    summary = report.summarise(rows)
    markdown = report.format_markdown(rows, summary, settings, notes)
    reports = args.out or root / "reports"
    with atomic_path(reports / "attack.md") as tmp:
        tmp.write_text(markdown)
    with atomic_path(reports / "attack.json") as tmp:
        tmp.write_text(json.dumps(report.as_json(rows, summary, settings), indent=2) + "\n")
    written = ["attack.md", "attack.json"]
    if report.can_plot(rows):  # no trigger planted: no plot (and an old one is left alone)
        with atomic_path(reports / "attack.png") as tmp:
            report.plot(rows, args.rule, tmp)
        written.append("attack.png")
    print(report.format_markdown(rows, summary, settings, notes, every_setting=False).rstrip())
    print(f"attack: wrote {', '.join(written)} into {reports}", file=sys.stderr)
    return 0


def _given_back_note(net, kind, labels, plans, conditions):
    """The report's note on labels a repair gives back, and the triggers aimed at one (an
    all-to-all trigger, "y+k", sends some faces to every label)."""
    aimed = [p.name for p in plans if isinstance(p.target, str) or p.target in labels]
    return (f"{net}: {kind} labels {', '.join(map(str, labels))} ({conditions}); "
            f"triggers aimed at one: {', '.join(aimed) or 'none'}")


def _nets(args, root, world):
    """The nets to attack: as named, else every one with both nets under root."""
    if args.net:
        try:
            nets = [get_net(name) for name in args.net]
        except KeyError as e:
            raise InputError(e.args[0]) from None
    else:
        names = list(world["backdoors"]) if world else COMPETITION_NETS
        nets = [NETS[n] for n in names if n in NETS
                and default_bad_model(NETS[n], root).exists()
                and default_repaired_model(NETS[n], root).exists()]
        if not nets:
            raise no_repaired_net_error(args.root)
    for spec in nets:
        for path, what in ((default_bad_model(spec, root), "BadNet"),
                           (args.repaired or default_repaired_model(spec, root), "repaired net")):
            if not Path(path).exists():
                raise InputError(f"{path}: {what} of {spec.name} not found")
    return nets


def _picker(images, seed):
    """pick(n): which of n faces to use, the same choice for the same n and seed."""
    def pick(n):
        if images == 0 or n <= images:
            return np.arange(n)
        return np.sort(np.random.default_rng([seed, n]).choice(n, size=images, replace=False))
    return pick

