"""`python3 -m defense grade-submissions DIR`: grade every team's repaired nets.

Every subfolder of DIR is a team; every .h5 or .hdf5 model file in it (any depth) is a
submission (.keras archives are refused). For each file: which BadNet it repairs (its weights,
else its name; a team's manifest.json overrides both), which input scale it takes (its conv_1
kernel beside its BadNet's, else agreement with its BadNet on the clean validation data or the
seed faces; never the test sets), whether it is repaired at all; then its GoodNet on every
test set of its net under ROOT/data. No code stored in a file is ever run; a file that
cannot be used gets a row saying why, and the run goes on. Writes OUT/leaderboard.md, .csv,
.json and .png.
"""

import sys
from pathlib import Path

from ..comparator.goodnet import add_comparator_arguments
from ..layout import ROOT_ENV, resolve_root
from ..nets.registry import COMPETITION_NETS, NETS


def add_arguments(parser):
    parser.add_argument("folder", type=Path, metavar="DIR", help="one subfolder per team")
    parser.add_argument("--root", type=Path, metavar="ROOT",
                        help=f"project root with models/ (the BadNets) and data/ (the test sets) "
                             f"(default: ${ROOT_ENV}, else this repository)")
    parser.add_argument("--out", type=Path, metavar="OUT",
                        help="folder for the leaderboard files (default: ROOT/reports/leaderboard)")
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(COMPETITION_NETS),
                        metavar="NET", help="the BadNets submissions may repair (default: the "
                                            "four competition nets; the lab's: bd_net)")
    add_comparator_arguments(parser)
    parser.set_defaults(rule="original")  # the competition's comparator, as organisers grade


def run(args):
    from tqdm import tqdm

    from .grader import REFERENCE_TEAM, as_records, grade_submissions
    from .leaderboard import markdown, write

    def warn(line):
        tqdm.write(f"grade-submissions: {line}", file=sys.stderr)

    header, rows = grade_submissions(args.folder, args.root, args.nets, args.rule,
                                     args.flag_confidence, warn, progress=True)
    out = args.out or resolve_root(args.root) / "reports" / "leaderboard"
    paths = write(out, header, rows)
    print(markdown(header, as_records(rows)))
    teams = [r for r in rows if r.team != REFERENCE_TEAM]
    counts = {status: sum(r.status == status for r in teams)
              for status in ("graded", "unrepaired", "refused", "no-net")}
    print(f"grade-submissions: {len(teams)} files in {header['seconds']} s: "
          + ", ".join(f"{n} {status}" for status, n in counts.items())
          + f"; wrote {', '.join(p.name for p in paths)} in {out}", file=sys.stderr)
    return 0
