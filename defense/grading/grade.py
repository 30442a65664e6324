"""`python3 -m defense grade [--root DIR]`: the numbers a participant reports.

For each competition net with a repaired net under ROOT: its GoodNet on the clean test set
(accuracy, clean images flagged) and on each of its poisoned test sets (attack success rate,
share flagged), beside the BadNet's own figures. Then the same on the clean faces of the
identities the repair quarantined, of those it witnessed, of those the sibling BadNets vouch for,
of those it released and of the others every sibling suspects: what the quarantine costs the
people it suspects (a quarantined label is never given, a witnessed, vouched or released one
only where its gates agree, one every sibling suspects only on the witness's word); and where
the clean faces the GoodNet
loses went (clean_losses.py: to the quarantine, a release gate or the comparator). Markdown on
stdout; markdown and JSON in ROOT/reports/.
"""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .clean_losses import OUTCOMES, clean_face_outcomes
from ..datasets import load_dataset
from .evaluate import default_test_sets, score_labels
from ..comparator.goodnet import DEFAULT_FLAG_CONFIDENCE, DEFAULT_RULE, add_comparator_arguments
from ..layout import (ROOT_ENV, default_bad_model, default_repaired_model, no_repaired_net_error,
                     resolve_root)
from ..nets.registry import COMPETITION_NETS, NETS


def grade(root=None, nets=COMPETITION_NETS, flag_confidence=DEFAULT_FLAG_CONFIDENCE,
          rule=DEFAULT_RULE, log=print):
    """({net: [Score, ...]}, {net: clean_losses outcomes on its clean test set}) for every net
    whose BadNet and repaired net exist under root."""
    from ..comparator.goodnet import GoodNet

    results, losses = {}, {}
    for name in nets:
        spec = NETS[name]
        bad_path, repaired_path = default_bad_model(spec, root), default_repaired_model(spec, root)
        if not (bad_path.exists() and repaired_path.exists()):
            log(f"grade: {name}: skipped (no {'BadNet' if not bad_path.exists() else 'repaired net'})")
            continue
        clean, poisoned = default_test_sets(spec, root)
        good = GoodNet.from_files(bad_path, repaired_path, spec.input_scale,
                                  flag_confidence=flag_confidence, rule=rule)
        scores = []
        for kind, path in [("clean", clean)] + [("poisoned", p) for p in poisoned]:
            data = load_dataset(path, num_classes=good.bad.num_classes, keep_integers=True)
            outputs = good.outputs(data.x, progress=True)
            # A participant reports the GoodNet, beside the BadNet.
            labels = {"BadNet": outputs.bad_labels, "GoodNet": good.decide(outputs)}
            scores.extend(score_labels(labels, data, kind, good))
            if kind == "clean":
                scores.extend(suspected_identity_scores(labels, data, good))
                losses[name] = clean_face_outcomes(outputs, labels["GoodNet"], data.y, good)
        results[name] = scores
        log(f"grade: {name}: done")
    if not results:
        raise no_repaired_net_error(root)
    return results, losses


def suspected_identity_scores(labels, data, good):
    """Scores on the clean faces of the identities good's repair quarantined (never given), of
    those it witnessed (quarantined, given back on the witness's top label), of those the
    sibling BadNets vouch for (quarantined, given back on their top labels), of those it
    released (given only where both nets give them) and, with a sibling committee, of the
    others that every sibling suspects (none can rank them: flagged, or given on the witness's
    top label), where the data set has any."""
    scores = []
    never_given = np.setdiff1d(np.setdiff1d(good.quarantined, good.witnessed), good.sibling_labels)
    unranked = (good.siblings.entry.unranked(good.quarantined, good.released) if good.committee else ())
    unranked = np.array(sorted(unranked), dtype=np.int64)
    for what, identities in (("the quarantined identities", never_given), ("the witnessed identities", good.witnessed),
                             ("the sibling-vouched identities", good.sibling_labels),
                             ("the released identities", good.released),
                             ("the identities every sibling suspects", unranked)):
        faces = np.isin(data.y, identities)
        if faces.any():
            name = f"faces of {what} ({', '.join(map(str, identities.tolist()))})"
            scores.extend(score_labels(labels, data, "clean", good, subset=(name, faces)))
    return scores


def format_report(results):
    lines = ["| net | test set | images | BadNet | GoodNet | GoodNet flagged |",
             "|---|---|---:|---:|---:|---:|"]
    for net, scores in results.items():
        by_data = {}
        for s in scores:
            by_data.setdefault((s.data, s.subset), {})[s.model] = s
        for (data, subset), models in by_data.items():
            bad, good = models["BadNet"], models["GoodNet"]
            measure = "accuracy" if good.kind == "clean" else "ASR"
            where = f"{data}, {subset}" if subset else data
            lines.append(f"| {net} | {where} ({measure}) | {good.images} | {100 * bad.hit_rate:.2f} % "
                         f"| {100 * good.hit_rate:.2f} % | {100 * good.flagged:.2f} % |")
    return "\n".join(lines)


def format_losses(losses):
    """Where each net's clean test faces went (clean_losses.OUTCOMES), in % of them."""
    lines = ["| net | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    for net, counts in losses.items():
        total = sum(counts.values())
        lines.append(f"| {net} | " + " | ".join(f"{100 * counts[o] / total:.2f} %" for o in OUTCOMES) + " |")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help=f"project root with models/, fine_pruned_models/ and data/ "
                             f"(default: ${ROOT_ENV}, else this repository)")
    add_comparator_arguments(parser)


def run(args):
    results, losses = grade(args.root, flag_confidence=args.flag_confidence, rule=args.rule,
                            log=lambda line: print(line, file=sys.stderr))
    report = format_report(results) + "\n\nWhere the clean test faces went:\n\n" + format_losses(losses)
    print(report)
    reports = resolve_root(args.root) / "reports"
    with atomic_path(reports / "grade.md") as tmp:
        tmp.write_text(report + "\n")
    with atomic_path(reports / "grade.json") as tmp:
        tmp.write_text(json.dumps({net: [asdict(s) for s in scores]
                                   for net, scores in results.items()}, indent=2) + "\n")
    with atomic_path(reports / "clean_losses.json") as tmp:
        tmp.write_text(json.dumps(losses, indent=2) + "\n")
    print(f"grade: wrote {reports}/grade.md, grade.json and clean_losses.json", file=sys.stderr)
    return 0
