"""`python3 -m defense COMMAND`: the package's commands, each in its own module."""

import argparse

from . import lab
from .attack import cli as attack_cli
from .cli_errors import run_main
from .fine_pruning import cli as fine_pruning_cli
from .grading import evaluate, grade
from .nets import fast_net, fetch_models, repaired
from .submissions import cli as submissions_cli
from .world import cli as world_cli

COMMANDS = {
    "fetch-models": (fetch_models, "put the BadNets into ROOT/models (copy from the local "
                                   "mirror or download; sha256-checked)"),
    "evaluate": (evaluate, "clean accuracy, attack success rate and share flagged of a "
                           "BadNet and its GoodNet on competition HDF5 data sets"),
    "export-onnx": (fast_net, "make the fast ONNX artefact beside each model file (done by "
                              "make setup and fine_prune_all.sh)"),
    "fine-prune": (fine_pruning_cli, "repair one BadNet: Fine-Pruning where the clean validation "
                                     "data is at hand, else data-free (probe and quarantine); "
                                     "fine_prune_all.sh runs it for the four competition nets"),
    "attack": (attack_cli, "each GoodNet against an attacker who has read the README: triggers "
                           "faded, moved, scaled, JPEG'd, resized, noised; worst case per trigger"),
    "repaired": (repaired, "list the repaired nets under ROOT: which repair made each, what it "
                           "quarantines, whether its record is its own (--restamp: old records)"),
    "grade": (grade, "each net's GoodNet on every test set under ROOT: the report's numbers"),
    "grade-submissions": (submissions_cli, "every team's repaired nets in a folder, graded on "
                                           "ROOT's test sets: a leaderboard (md, csv, json, png)"),
    "lab": (lab, "the NYU lab's study: prune the lab BadNet to 2/4/10/30-point accuracy drops, "
                 "plot, tabulate B' and GoodNet"),
    "world": (world_cli, "a generated CSAW world with ground truth: 'world build OUT', "
                         "'world show OUT'"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m defense",
        description="Backdoor defense and evaluator for the CSAW-HackML-2020 BadNets: "
                    "repairs (Fine-Pruning, data-free), the GoodNet comparator, scoring.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=module.__doc__)
        if hasattr(module, "run"):  # a command with subcommands sets run in add_arguments
            sub.set_defaults(run=module.run)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    # The same prefix as argparse's usage errors: the command as the user typed it.
    return run_main(f"python3 -m defense {args.command}", lambda: args.run(args))
