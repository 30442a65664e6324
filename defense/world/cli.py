"""`python3 -m defense world build|show`."""

from . import build, show

SUBCOMMANDS = {
    "build": (build, "draw faces, poison them, train the BadNets, write the competition's layout"),
    "show": (show, "write a contact-sheet PNG of a built world"),
}


def add_arguments(parser):
    subcommands = parser.add_subparsers(dest="world_command", required=True, metavar="SUBCOMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = subcommands.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)

