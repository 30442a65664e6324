"""`python3 -m defense COMMAND`: the package's commands, each in its own module."""

import argparse

from . import evaluate, fetch_models
from .cli_errors import run_main
from .world import cli as world_cli

COMMANDS = {
    "fetch-models": (fetch_models, "put the BadNets into ROOT/models (copy from the local "
                                   "mirror or download; sha256-checked)"),
    "evaluate": (evaluate, "clean accuracy, attack success rate and share flagged of a "
                           "BadNet and its GoodNet on competition HDF5 data sets"),
    "world": (world_cli, "a generated CSAW world with ground truth: 'world build OUT', "
                         "'world show OUT'"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m defense",
        description="Fine-Pruning backdoor defense for the CSAW-HackML-2020 BadNets.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=module.__doc__)
        sub.set_defaults(run=module.run)
        module.add_arguments(sub)  # after: a command with subcommands sets its own run
    args = parser.parse_args(argv)
    return run_main(f"defense {args.command}", lambda: args.run(args))
