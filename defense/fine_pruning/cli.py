"""`python3 -m defense fine-prune --net NET [--net NET ...]`: repair BadNets, one after another.

Two modes. With the clean validation set (ROOT/data/clean_validation_data.h5), Fine-Pruning
(repair.py): ranks conv_3 channels by mean pool_3 activation, prunes the least active ones
until validation accuracy would fall more than --max-drop, fine-tunes with the pruned channels
held at zero, then (unless --no-quarantine) probes the BadNet for its targets with the data-free
repair's random probes and switches them off in the repaired net; writes
ROOT/fine_pruned_models/<net>_fine_pruned.h5 with a JSON record beside it. Without it (or
with --data-free), the data-free repair (data_free/): probes the BadNet with random occluders
on a few trusted clean faces (--seed-faces) and on noise, and with small patches its own
gradients choose on those faces, and quarantines the labels they reach far more often than
any other, its suspected targets. Both files are replaced
atomically: an interrupted run leaves the old ones. Several nets are repaired in one process
(fine_prune_all.sh), which starts TensorFlow once instead of once a net.
"""

import sys
from pathlib import Path

from . import augment, fine_tuning
from .repair import DEFAULT_MAX_DROP, DEFAULT_RELEASE_CONFIDENCE, fine_prune_net
from ..errors import InputError, SettingError
from ..layout import REPO_ROOT, ROOT_ENV, data_dir, default_bad_model, default_repaired_model
from ..nets.registry import NETS, get_net
from ..comparator.siblings import COMMITTEE_VETO_RANK, MIN_VOUCHERS
from ..comparator.witness import WITNESS_EPOCHS

VALIDATION_FILE = "clean_validation_data.h5"
# A few clean faces the user trusts, for the data-free repair; `make setup` puts the 16 clean
# samples of ../shared/csaw here. The same folder serves every root (a world too).
DEFAULT_SEED_FACES = REPO_ROOT / "data" / "seed_faces"


def add_arguments(parser):
    parser.add_argument("--net", required=True, action="append", metavar="NET",
                        help=f"the net to repair, one of {', '.join(NETS)} (repeatable: the nets "
                             f"are repaired in that order, in one process; the first that fails "
                             f"stops the run)")
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help=f"project root (default: ${ROOT_ENV}, else this repository)")
    parser.add_argument("--data", type=Path, metavar="H5",
                        help=f"clean validation data (default: ROOT/data/{VALIDATION_FILE})")
    parser.add_argument("--bad-model", type=Path, metavar="PATH", help="the BadNet (default: ROOT/models/...)")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="repaired net to write (default: ROOT/fine_pruned_models/<net>_fine_pruned.h5)")
    parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="FRACTION",
                        help="prune until validation accuracy would fall more than this "
                             "(default: %(default)s = 4 points)")
    parser.add_argument("--samples-per-epoch", type=int, default=fine_tuning.Recipe.min_samples_per_epoch,
                        metavar="N",
                        help="fine-tune on at least N shifted, edited faces per epoch (default: "
                             "%(default)s, four copies of the competition's validation set less "
                             "its held-out slice); smaller sets are copied more often")
    parser.add_argument("--global-edits", type=float, default=fine_tuning.Recipe().global_edits.probability,
                        metavar="P",
                        help="share of training faces also given one global edit (a blend, colour "
                             "transform or faint noise over the face; augment.py) (default: "
                             "%(default)s: measured on the trigger zoo, they weaken blended and "
                             "noise triggers but strengthened a corner patch; docs/method.md)")
    parser.add_argument("--no-quarantine", action="store_true",
                        help="Fine-Pruning only: skip probing the BadNet for its targets "
                             "(by default they are found as by the data-free repair and switched "
                             "off in the repaired net, which the GoodNet never lets out)")
    parser.add_argument("--release", action="store_true",
                        help="Fine-Pruning only: also probe the Fine-Pruned net, switch off only "
                             "the suspects it still singles out, and give the others back where "
                             "both nets give them, the repaired net gives them at least "
                             "--release-confidence of its probability, a witness net trained here from scratch "
                             "on the validation faces (20 epochs: about 25 minutes at full size "
                             "on 2 cores, once a run for the nets of the same input scale; "
                             "written beside each repaired net as "
                             "<name>_witness_<sha256 prefix>.h5) ranks the label among its top few, "
                             "and the image passes the blend test "
                             "(superimposed on trusted validation faces, the BadNet keeps the "
                             "label on no more blends than the label's own validation faces do, "
                             "plus the margin a new face of an identity needs (measured on "
                             "identities never suspected, at most 2 of 16 blends; a label with "
                             "no own face both nets label right passes on no blend), "
                             "nor the repaired net on many more; "
                             "calibrated here, kept in the record); the suspects it still "
                             "singles out stay switched off and come back only where the BadNet "
                             "gives one, the witness gives it as its top label and the image "
                             "passes the blend test, unless the witness's own probe singles it "
                             "out too; and any label the witness ranks below where it puts 99.9 %% "
                             "of the held-out faces' own labels (under 1,000 held-out faces, "
                             "each at its worst of nine one-pixel views) is flagged (its veto), and "
                             "where the nets disagree and the BadNet is sure, its label comes "
                             "out instead of the flag if it is the witness's top label and no "
                             "suspect (not under --rule original). "
                             "Off by default: what fine-tuning left of a trigger can pass "
                             "where both nets obey it (docs/method.md)")
    parser.add_argument("--release-confidence", type=float, metavar="P",
                        help=f"with --release: the repaired net's confidence from which a "
                             f"released label is given (default: {DEFAULT_RELEASE_CONFIDENCE}; "
                             f"lower gives more of those identities' faces back and lets more "
                             f"of a weakened trigger through)")
    parser.add_argument("--witness-epochs", type=int, metavar="N",
                        help=f"with --release: epochs the witness net trains from scratch (default: "
                             f"{WITNESS_EPOCHS}; fewer are faster and give a weaker witness, whose "
                             f"larger top k lets more lookalike faces through)")
    parser.add_argument("--witness-seed", type=int, metavar="N",
                        help="with --release: the witness net's training seed, written in the "
                             "record (default: drawn at random and kept nowhere, one for the nets "
                             "of the run; whoever has the validation data and the seed can train "
                             "the same witness and craft faces it misranks: give one only for "
                             "runs that must repeat exactly; docs/results/2026-12-05-adversarial-witness.md)")
    parser.add_argument("--unlearn", action="store_true",
                        help="with --release: the quarantined labels nothing else gives back (not "
                             "witnessed, no sibling vouching) get their output units back and the "
                             "Fine-Pruned net is fine-tuned 5 more epochs on the clean faces plus "
                             "probe images that reach those labels, each taught its face's own "
                             "identity; a label the unlearnt net's probe no longer singles out is "
                             "released (given where both nets give it, under --release's rules), "
                             "and the unlearnt net is the repaired net (unlearning.py; a few minutes "
                             "a net on a 40-identity world). Gives faces of those identities back "
                             "at a cost: what it lets through that the default stops is in "
                             "docs/method.md. Off by default")
    parser.add_argument("--data-free", action="store_true",
                        help="repair without the clean validation data even where it exists "
                             "(the default where it does not): probe for the attack targets "
                             "(random occluders, blends, tints and gradient-chosen patches), "
                             "quarantine them")
    parser.add_argument("--siblings", action="store_true",
                        help="the other competition BadNets under ROOT/models (same class "
                             "count and input scale), each probed as the data-free repair probes, "
                             "give quarantined labels back and judge every label, in either repair "
                             "(with data, before --release's witness veto, which ranks their "
                             "label as it ranks the nets'); each sibling reads an image as its "
                             "softmax averaged over the image moved by up to one pixel every way "
                             "(nine views). A quarantined label that nothing else "
                             "gives back comes out where the BadNet gives it and every sibling whose "
                             "own probe does not single it out (two at least) gives it as its top "
                             "label; where two siblings give another top label than the BadNet, "
                             "theirs comes out (flagged where the BadNet's probe, released labels "
                             "included, or that of a sibling giving it suspects it); a label fewer "
                             f"than two of them rank in their top {COMMITTEE_VETO_RANK} (their own "
                             "suspects aside; where only one does not suspect it, that one) is "
                             "flagged (this stops backdoors with no single target); "
                             "where the two nets disagree, two siblings whose probes do not suspect "
                             "the BadNet's label giving it as their top label settle it for that "
                             "label (no suspect of the BadNet's: in effect with data only); with "
                             "data, a label every sibling suspects stands only where it is the "
                             "witness's top label, and (with --release) a label two siblings "
                             "agree on that one of those giving it suspects stands where the "
                             "witness's top label and the repaired net's label are it too. Assumes the siblings were "
                             "not backdoored by the same attacker: one who hides the same trigger "
                             "and target in them, too weakly for their probes, gets it through "
                             "(docs/method.md). Off by default")
    parser.add_argument("--seed-faces", type=Path, metavar="DIR",
                        help=f"a folder of a few clean face images you trust, for probing the "
                             f"BadNet for its targets "
                             f"(default: {DEFAULT_SEED_FACES.relative_to(REPO_ROOT)}/ of this "
                             f"repository, filled by make setup; without images, noise only, "
                             f"which may miss targets: a warning says so)")
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    try:
        specs = [get_net(name) for name in dict.fromkeys(args.net)]
    except KeyError as e:
        raise InputError(e.args[0]) from None
    if len(specs) > 1 and (args.out or args.bad_model):
        raise InputError("--out and --bad-model name one net's files: give them with one --net")
    valid_path = args.data or data_dir(args.root) / VALIDATION_FILE
    log = lambda line: print(f"fine-prune: {line}", file=sys.stderr, flush=True)  # noqa: E731
    if args.data and not valid_path.exists():
        raise InputError(f"{valid_path}: not found")
    recipe = _recipe(args)  # checked in either mode: a bad option is never silently ignored
    if not 0 <= args.max_drop <= 1:
        raise InputError(f"--max-drop: {args.max_drop} is not a fraction in [0, 1]")
    if args.release_confidence is not None and not args.release:
        raise InputError("--release-confidence applies to --release only")
    release_confidence = DEFAULT_RELEASE_CONFIDENCE if args.release_confidence is None else args.release_confidence
    if not 0 <= release_confidence <= 1:  # NaN too
        raise InputError(f"--release-confidence: {release_confidence} is not a probability in [0, 1]")
    if args.witness_epochs is not None and not args.release:
        raise InputError("--witness-epochs applies to --release only")
    witness_epochs = WITNESS_EPOCHS if args.witness_epochs is None else args.witness_epochs
    if witness_epochs < 1:
        raise InputError(f"--witness-epochs: {witness_epochs} is not a number of epochs (1 or more)")
    if args.witness_seed is not None and not args.release:
        raise InputError("--witness-seed applies to --release only")
    if args.witness_seed is not None and not 0 <= args.witness_seed < 2 ** 32:
        raise InputError(f"--witness-seed: {args.witness_seed} is not a seed in [0, 2**32)")
    if args.unlearn and not args.release:
        raise InputError("--unlearn releases labels under --release's rules: give it with --release")
    if args.release and args.no_quarantine:
        raise InputError("--release gives back part of the quarantine; it cannot go with --no-quarantine")
    data_free = args.data_free or not valid_path.exists()
    if args.siblings and args.no_quarantine and not data_free:
        raise InputError("--siblings weighs labels against the probe's suspects; it cannot go with "
                         "--no-quarantine")
    if data_free and args.release:
        raise InputError("--release needs the clean validation data: its second opinion is "
                         "the Fine-Pruned net, which the data-free repair does not make")
    # The probes' seed faces, checked once for every net (Fine-Pruning without a quarantine needs none).
    seed_faces = None if args.no_quarantine and not data_free else _checked_seed_faces(args, log)
    witnesses = {}  # --release: one witness for the nets of this run (it never sees a BadNet)
    probed = {}  # --siblings: suspects by file sha256, so that a run probes each sibling once
    for spec in specs:
        bad_path = args.bad_model or default_bad_model(spec, args.root)
        out = args.out or default_repaired_model(spec, args.root)
        if data_free:
            _run_data_free(spec, bad_path, out, seed_faces, args, valid_path, log, probed)
            continue
        fine_prune_net(spec, bad_path, valid_path, out, args.max_drop, recipe=recipe, seed=args.seed,
                       log=log, quarantine_seed_faces=seed_faces, release=args.release,
                       release_confidence=release_confidence, witness_epochs=witness_epochs,
                       witnesses=witnesses, witness_seed=args.witness_seed,
                       siblings=_siblings(spec, bad_path, args, log), probed=probed, unlearn=args.unlearn)
    return 0


def _recipe(args):
    """The fine-tuning recipe of the options; the settings check themselves (SettingError
    names the field), and the message says which option set it."""
    try:
        edits = augment.GlobalEdits(probability=args.global_edits)
    except SettingError as e:
        raise InputError(f"--global-edits {args.global_edits}: {e}") from None
    try:
        return fine_tuning.Recipe(min_samples_per_epoch=args.samples_per_epoch, global_edits=edits)
    except SettingError as e:
        raise InputError(f"--samples-per-epoch {args.samples_per_epoch}: {e}") from None


def _checked_seed_faces(args, log):
    """The seed-face folder for probing; one named with --seed-faces must hold images."""
    from ..data_free.repair import check_seed_faces

    seed_faces = args.seed_faces or DEFAULT_SEED_FACES
    if not check_seed_faces(seed_faces, explicit=args.seed_faces is not None):
        # Noise alone singles out fewer labels (a full blind-spot world: 11 instead of 22,
        # docs/results/2026-12-06-zoo2-blindspots.md); a run from another checkout, or before
        # make setup, would otherwise be weaker without a word.
        log(f"warning: {seed_faces} holds no seed face images: the probe runs on noise alone and "
            f"may miss targets (make setup copies the 16 clean samples of ../shared/csaw there; "
            f"--seed-faces DIR names another folder)")
    return seed_faces


def _run_data_free(spec, bad_path, out, seed_faces, args, valid_path, log, probed):
    from ..data_free.repair import repair_data_free
    from ..nets.model_io import read_weights
    from ..nets.net import quiet_tensorflow

    read_weights(bad_path)  # a missing or broken BadNet fails here, in one line
    # The random probes run on ONNX Runtime; the optimised patches' gradient steps take 13 s
    # a net with oneDNN's kernels, 20 s without (the same patches on every run).
    quiet_tensorflow(onednn=True)
    if not args.data_free:
        log(f"{spec.name}: no clean validation data at {valid_path}; repairing data-free "
            f"(probe and quarantine; docs/method.md)")
    repair_data_free(spec, bad_path, seed_faces, out, seed=args.seed, log=log,
                     siblings=_siblings(spec, bad_path, args, log), probed=probed)


def _siblings(spec, bad_path, args, log):
    """--siblings: the sibling BadNets of this one (sibling_badnets), none where fewer than a
    label needs (said in the log); without --siblings, none."""
    if not args.siblings:
        return []
    siblings = sibling_badnets(spec, bad_path, args.root)
    if len(siblings) < MIN_VOUCHERS:
        log(f"{spec.name}: --siblings: {len(siblings)} other competition BadNet(s) of its kind under "
            f"the root's models/, fewer than the {MIN_VOUCHERS} a label needs; the plain quarantine")
        return []
    return siblings


def sibling_badnets(spec, bad_path, root):
    """[(NetSpec, path)]: the other competition BadNets under root that can vouch for this
    one's labels (siblings.py): of the same class count and input scale, each of other weights
    than the BadNet and than one another (one net saved twice is one opinion)."""
    from ..nets.model_io import num_classes
    from ..nets.registry import COMPETITION_NETS
    from ..nets.repaired import weights_digest

    if spec.name not in COMPETITION_NETS:
        return []
    classes, seen = num_classes(bad_path), {weights_digest(bad_path)}
    found = []
    for name in COMPETITION_NETS:
        other = NETS[name]
        path = default_bad_model(other, root)
        if name == spec.name or other.input_scale != spec.input_scale or not path.is_file() \
                or num_classes(path) != classes:
            continue
        digest = weights_digest(path)
        if digest not in seen:
            seen.add(digest)
            found.append((other, path))
    return found
