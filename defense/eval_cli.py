"""The eval scripts' command line: images in, one label per image out.

    eval_<net>.py IMAGE                one line: the label
    eval_<net>.py IMAGE|DIR ...        one line per image: path<TAB>label

The label is the identity in [0, N-1], or N (1283 for the competition nets) when the
BadNet and its repaired net disagree and the BadNet is confident in its label, i.e. the
image is judged poisoned (goodnet.py).
"""

import argparse
import sys
from pathlib import Path

from .nets.architecture import HEIGHT, WIDTH
from .cli_errors import EXIT_BAD_INPUT, run_main
from .errors import InputError
from .comparator.goodnet import add_comparator_arguments
from .comparator.siblings import WITNESS_OVERRULES
from .images import IMAGE_SUFFIXES, list_images, load_image
from .layout import REPO_ROOT, ROOT_ENV, default_bad_model, default_repaired_model, resolve_root
from .nets.registry import get_net


def main(net_name, argv=None):
    """Entry point of eval_<net_name>.py; returns the exit status."""
    spec = get_net(net_name)
    prog = Path(sys.argv[0]).name if argv is None else f"eval_{net_name}.py"
    return run_main(prog, lambda: _run(spec, prog, _parser(spec, prog).parse_args(argv)))


class _HelpNamingTheRepair(argparse.Action):
    """-h/--help: the description ends with the default repaired net's kind, read from its
    record only when help is asked for (reading it costs the labelling call an h5py import)."""

    def __init__(self, option_strings, dest, spec, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.spec = spec

    def __call__(self, parser, namespace, values, option_string=None):
        from .nets.repaired import describe

        default_repaired = default_repaired_model(self.spec)
        parser.description += (f" The default repaired net, {_shown(default_repaired)}: "
                               f"{describe(default_repaired)} (python3 -m defense repaired "
                               f"says more).")
        parser.print_help()
        parser.exit()


def _parser(spec, prog):
    parser = argparse.ArgumentParser(
        prog=prog,
        add_help=False,
        description=f"Label face images with the GoodNet of the {spec.name} BadNet: the "
                    f"BadNet's identity where the BadNet and its repaired net agree; where they "
                    f"do not, the poisoned label N (1283 for the competition nets) if the BadNet "
                    f"is sure (--flag-confidence), else the repaired net's label. A label the "
                    f"repair quarantined (its suspected attack targets) is never given; one it "
                    f"released (fine-prune --release) only where both nets give it, the "
                    f"repaired net at least as sure as the record's release confidence, and "
                    f"the record's witness and blend test agree; one it witnessed only where "
                    f"the BadNet gives it, the witness gives it as its top label and the blend "
                    f"test agrees; one the sibling BadNets vouch for (fine-prune --siblings) only "
                    f"where the BadNet gives it and every sibling that vouches for it gives it as "
                    f"its top label; where the siblings judge every label (the committee), a "
                    f"label two of them replace by another top label is theirs (flagged where the "
                    f"BadNet's probe or that of a sibling giving it suspects it; with the "
                    f"witness, {WITNESS_OVERRULES}) and one fewer "
                    f"than two of them rank among their top few is flagged (where only one does "
                    f"not suspect it, that one); each sibling reads an image through nine views "
                    f"(moved by up to one pixel every way). Where the record gives the witness "
                    f"a veto rank (fine-prune --release since the veto), any label the witness "
                    f"ranks that far down is flagged.",
        epilog=f"One IMAGE prints one line, the label. Several paths or a directory print "
               f"'path<TAB>label' per image, in order; unreadable images are reported on "
               f"stderr and the others still labelled. Exit status: 0 all labelled, 2 bad "
               f"input or usage, 1 internal error. Images: {', '.join(IMAGE_SUFFIXES)}; "
               f"RGB {WIDTH} wide x {HEIGHT} high (others are converted or resized with a warning).")
    parser.add_argument("-h", "--help", action=_HelpNamingTheRepair, spec=spec,
                        help="show this help message, with the repair in use, and exit")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image file, or a directory whose image files are all labelled")
    parser.add_argument("--bad-model", metavar="PATH", type=Path,
                        help=f"the BadNet (default: ROOT/models/{spec.bad_net_file}, "
                             f"else ROOT/models/{spec.bad_weights_file})")
    parser.add_argument("--repaired", metavar="PATH", type=Path,
                        help=f"the repaired net (default: ROOT/fine_pruned_models/"
                             f"{spec.repaired_file}, written by make setup or fine_prune_all.sh, "
                             f"used only with its own record beside it); a net from elsewhere "
                             f"without a record beside it runs with no quarantine")
    parser.add_argument("--keras", action="store_true",
                        help="run the nets through Keras even where their ONNX artefacts "
                             "(the fast path) exist; the labels are the same")
    parser.add_argument("--root", metavar="DIR", type=Path,
                        help=f"project root holding models/ and fine_pruned_models/ "
                             f"(default: ${ROOT_ENV}, else this repository)")
    add_comparator_arguments(parser)
    return parser


def _shown(path):
    """path relative to the repository where it lies inside it."""
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def _run(spec, prog, args):
    bad_path = args.bad_model or default_bad_model(spec, args.root)
    repaired_path = args.repaired or default_repaired_model(spec, args.root)
    _check_model_paths(bad_path, repaired_path, args)

    single = len(args.images) == 1 and not Path(args.images[0]).is_dir()
    paths, failures = _expand(args.images, prog)
    pixels, loaded = [], []
    for path in paths:
        try:
            pixels.append(load_image(path))
            loaded.append(path)
        except InputError as e:
            if single:
                raise
            print(f"{prog}: error: {e}", file=sys.stderr)
            failures += 1
    if loaded:
        import numpy as np

        from .comparator.goodnet import GoodNet

        notes = []  # printed only once both nets are accepted: an error stays one line
        good = GoodNet.from_files(bad_path, repaired_path, spec.input_scale,
                                  fast=not args.keras, warn=notes.append,
                                  flag_confidence=args.flag_confidence, rule=args.rule)
        for note in notes:
            print(note, file=sys.stderr)
        printed = len(notes)
        labels = good.predict(np.stack(pixels), progress=len(loaded) > 10_000)
        for note in notes[printed:]:  # from nets loaded on first use (siblings.py)
            print(note, file=sys.stderr)
        for path, label in zip(loaded, labels):
            print(label if single else f"{path}\t{label}")
    if failures:
        print(f"{prog}: {failures} input(s) could not be labelled", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _check_model_paths(bad_path, repaired_path, args):
    """Say before any work how to get a missing model, in terms of what was typed."""
    root = resolve_root(args.root)
    root_option = f" --root {root}" if root != REPO_ROOT else ""
    if not bad_path.exists():
        if args.bad_model:
            raise InputError(f"{bad_path}: BadNet not found")
        hint = f"python3 -m defense fetch-models{root_option}" if root_option else "make setup"
        raise InputError(f"{bad_path}: BadNet not found; run '{hint}'")
    if not repaired_path.exists():
        if args.repaired:
            raise InputError(f"{repaired_path}: repaired net not found")
        raise InputError(f"{repaired_path}: repaired net not found; produce it with "
                         f"'./fine_prune_all.sh{root_option}' (data-free without "
                         f"data/clean_validation_data.h5), or pass --repaired PATH")


def _expand(arguments, prog):
    """Image paths from files and directories, and how many arguments gave none."""
    paths, failures = [], 0
    for argument in map(Path, arguments):
        if argument.is_dir():
            found = list_images(argument)
            if not found:
                print(f"{prog}: error: {argument}: directory holds no image files "
                      f"({', '.join(IMAGE_SUFFIXES)})", file=sys.stderr)
                failures += 1
            paths.extend(found)
        else:
            paths.append(argument)  # missing or unreadable files are reported when loaded
    return paths, failures
