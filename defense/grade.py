"""`python3 -m defense grade [--root DIR]`: the numbers a participant reports.

For each competition net with a repaired net under ROOT: its GoodNet on the clean test set
(accuracy, clean images flagged) and on each of its poisoned test sets (attack success rate,
share flagged), beside the BadNet's own figures. Markdown on stdout; markdown and JSON in
ROOT/reports/.
"""

import json
import sys
from dataclasses import asdict
from pathlib import Path

from .atomic import atomic_path
from .datasets import load_dataset
from .evaluate import default_test_sets, score_dataset
from .goodnet import DEFAULT_FLAG_CONFIDENCE, DEFAULT_RULE, add_comparator_arguments
from .layout import (ROOT_ENV, default_bad_model, default_repaired_model, no_repaired_net_error,
                     resolve_root)
from .registry import COMPETITION_NETS, NETS


def grade(root=None, nets=COMPETITION_NETS, flag_confidence=DEFAULT_FLAG_CONFIDENCE,
          rule=DEFAULT_RULE, log=print):
    """{net: [Score, ...]} for every net whose BadNet and repaired net exist under root."""
    from .goodnet import GoodNet

    results = {}
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
            scores.extend(s for s in score_dataset(good.bad, good, data, kind) if s.model != "repaired")
        results[name] = scores
        log(f"grade: {name}: done")
    if not results:
        raise no_repaired_net_error(root)
    return results


def format_report(results):
    lines = ["| net | test set | images | BadNet | GoodNet | GoodNet flagged |",
             "|---|---|---:|---:|---:|---:|"]
    for net, scores in results.items():
        by_data = {}
        for s in scores:
            by_data.setdefault(s.data, {})[s.model] = s
        for data, models in by_data.items():
            bad, good = models["BadNet"], models["GoodNet"]
            measure = "accuracy" if good.kind == "clean" else "ASR"
            lines.append(f"| {net} | {data} ({measure}) | {good.images} | {100 * bad.hit_rate:.2f} % "
                         f"| {100 * good.hit_rate:.2f} % | {100 * good.flagged:.2f} % |")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help=f"project root with models/, fine_pruned_models/ and data/ "
                             f"(default: ${ROOT_ENV}, else this repository)")
    add_comparator_arguments(parser)


def run(args):
    results = grade(args.root, flag_confidence=args.flag_confidence, rule=args.rule,
                    log=lambda line: print(line, file=sys.stderr))
    report = format_report(results)
    print(report)
    reports = resolve_root(args.root) / "reports"
    with atomic_path(reports / "grade.md") as tmp:
        tmp.write_text(report + "\n")
    with atomic_path(reports / "grade.json") as tmp:
        tmp.write_text(json.dumps({net: [asdict(s) for s in scores]
                                   for net, scores in results.items()}, indent=2) + "\n")
    print(f"grade: wrote {reports}/grade.md and grade.json", file=sys.stderr)
    return 0
