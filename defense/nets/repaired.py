"""A repaired net on disk: the model file X.h5, its ONNX artefact X.onnx and its record X.json,
written and read as one thing.

The record says how the net was made (`mode`: "data" for Fine-Pruning, "data-free" for the
probe and quarantine) and which labels it quarantined; the comparator never gives a
quarantined label. A record paired with the wrong net would apply another net's quarantine
and let this net's targets through, so every record carries two stamps:

- `net_sha256`: the sha256 of the model file it describes;
- `record_sha256`: the sha256 of the record's own content (canonical JSON, without this key),
  so that a hand edit is caught too.

A record also names the BadNet the net was repaired from (`bad_model`: its file's sha256 and
the digest of its weights, the same whether the file is a full model or weights only); a
GoodNet refuses a repaired net beside another BadNet, whose targets its quarantine does not
name.

Writing puts the net in place last: an interrupted write leaves either the old pair, or a new
record beside the old net, which its stamp refuses. A release's witness (witness.py) is written
before both under a name of its own, and the previous one removed after them. Reading refuses, in one line, a record
whose stamps do not match, and a default repaired net (one in a `fine_pruned_models/` folder)
that has no record; a net brought from elsewhere without a record runs with no quarantine.

Records written before the stamps existed are re-stamped by `restamp` (run by `make setup`)
only where the net's switched-off output units are exactly the record's quarantine, or refused
with a hint to repair again.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..digest import file_sha256
from ..errors import InputError, is_probability
from .model_io import num_classes, read_weights, save_model_to
# The witness net a released label must also satisfy (witness.py), a file beside the record
# checked by its sha256; a record that releases labels without one (made before it) is refused.
from ..comparator.witness import (RECORD_KEY as RELEASE_WITNESS_KEY, WitnessEntry,
                                  remove_stale as remove_stale_witnesses)
# The data-free repair's second opinion: other BadNets that vouch for quarantined labels and
# judge every label (siblings.py), named by path and sha256.
from ..comparator.siblings import RECORD_KEY as SIBLINGS_KEY, WITNESS_OVERRULES, SiblingEntry

REPAIRED_DIR_NAME = "fine_pruned_models"
NET_STAMP = "net_sha256"
RECORD_STAMP = "record_sha256"
QUARANTINE_KEY = "quarantined_labels"
# Labels the probe singled out on the BadNet but not on the Fine-Pruned net: given back where
# both nets give them and the repaired net is at least this sure (goodnet.decide).
RELEASE_KEY = "released_labels"
# Quarantined labels (switched off in the repaired net) given back where the BadNet gives them,
# the witness gives them as its top label and the image passes the blend test (goodnet.decide).
WITNESSED_KEY = "witnessed_labels"
RELEASE_CONFIDENCE_KEY = "release_confidence"
# What fine-prune --unlearn did (fine_pruning/unlearning.py): its labels are in the lists above.
UNLEARNING_KEY = "unlearning"
# The blend test a released label must also pass (blend_test.py); a record that releases
# labels without one (made before it) is refused: the confidence level alone lets faded
# triggers through.
RELEASE_TEST_KEY = "release_test"
# A quarantined label's output unit: zero weights and this bias, far below any DeepID logit
# (they stay within a few dozen of zero), so the net never gives the label.
SWITCHED_OFF_BIAS = -1e4
MODES = {"data": "Fine-Pruning with the clean validation data",
         "data-free": "data-free repair (probe and quarantine)"}


@dataclass(frozen=True)
class RepairedRecord:
    """What the comparator needs from a repaired net's record (all empty where it has none)."""

    path: Path | None = None
    mode: str | None = None
    quarantined: frozenset = frozenset()
    fields: dict = field(default_factory=dict)
    released: frozenset = frozenset()
    release_confidence: float = 1.0
    release_test: object = None  # blend_test.BlendTest, or None
    release_witness: object = None  # witness.WitnessEntry, or None
    witnessed: frozenset = frozenset()  # among the quarantined
    siblings: object = None  # siblings.SiblingEntry, or None

    @property
    def sibling_labels(self):
        """Quarantined labels given back on the sibling BadNets' word (siblings.py)."""
        return frozenset() if self.siblings is None else self.siblings.labels

    @property
    def kind(self):
        """The kind of repair in words."""
        if self.path is None:
            return "a repaired net without a record (no quarantine)"
        return MODES.get(self.mode, f"repair of mode {self.mode!r}")

    def summary(self):
        """One phrase for help texts and logs: the kind and what its quarantine costs."""
        text = self.kind
        never_given = sorted(self.quarantined - self.witnessed - self.sibling_labels)
        if never_given:
            text += (f"; {len(never_given)} quarantined labels ({', '.join(map(str, never_given))}) are "
                     f"never given: their faces are flagged or relabelled")
        if self.sibling_labels:
            text += (f"; {len(self.sibling_labels)} quarantined labels "
                     f"({', '.join(map(str, sorted(self.sibling_labels)))}) are given only where the "
                     f"BadNet gives them and every sibling BadNet that vouches for the label gives it "
                     f"as its top one (" + "; ".join(
                         f"{label}: {', '.join(names)}" for label, names in sorted(self.siblings.vouchers.items())
                         if names) + ")")
        if self.siblings is not None and self.siblings.committee:
            witness_judges = self.release_witness is not None and self.release_witness.veto_rank is not None
            overruled = f"; {WITNESS_OVERRULES}" if witness_judges else ""
            text += (f"; every label judged by the sibling BadNets "
                     f"{', '.join(s.net for s in self.siblings.siblings)}: where two of them give another "
                     f"top label, theirs (flagged where the BadNet's probe, released labels included, "
                     f"or that of a sibling giving it suspects it{overruled}); a label fewer than two of them rank "
                     f"in their top {self.siblings.veto_rank} is flagged (where only one does not "
                     f"suspect it, that one)")
            unranked = sorted(self.siblings.unranked(self.quarantined, self.released))
            if unranked:
                text += (f"; the labels every sibling BadNet suspects and the BadNet's probe does not "
                         f"({', '.join(map(str, unranked))}): none can rank them, so they are flagged"
                         + (", except where the witness net gives the label as its top one"
                            if witness_judges else ""))
        if self.sibling_labels or (self.siblings is not None and self.siblings.committee):
            text += "; each sibling BadNet reads an image through nine views (moved by up to one pixel every way)"
        if self.witnessed:
            text += (f"; {len(self.witnessed)} quarantined labels ({', '.join(map(str, sorted(self.witnessed)))}) "
                     f"are given only where the BadNet gives them, the witness net gives the label "
                     f"as its top one and the image passes the blend test")
        if self.released:
            text += (f"; {len(self.released)} suspected labels ({', '.join(map(str, sorted(self.released)))}) "
                     f"are given only where both nets give them, the repaired net "
                     f">= {self.release_confidence:g} sure"
                     + (f", the witness net ranks the label in its top {self.release_witness.top_k}"
                        if self.release_witness is not None else "")
                     + (" and the image passes the blend test"
                        if self.release_test is not None else ""))
            unlearnt = self.fields.get(UNLEARNING_KEY)
            released_after = unlearnt.get("released_labels") if isinstance(unlearnt, dict) else None
            if isinstance(released_after, list) and released_after:
                text += (f"; of those, {', '.join(map(str, released_after))} released after unlearning "
                         f"(fine-prune --unlearn: the repaired net is the unlearnt one)")
        if self.release_witness is not None and self.release_witness.veto_rank is not None:
            text += (f"; any label the witness net ranks beyond its top {self.release_witness.veto_rank} "
                     f"is flagged (its veto), and where the nets disagree and the BadNet is sure, its "
                     f"label comes out instead of the flag if it is the witness's top label and not a "
                     f"suspect (rules 'repaired' and 'confidence')")
        elif self.release_witness is not None:
            text += ("; no witness veto (a record made before it: repair again with "
                     "'python3 -m defense fine-prune --release' to add it)")
        return text


def record_path(net_path):
    return Path(net_path).with_suffix(".json")


def is_default_location(net_path):
    """A repaired net where the repairs write theirs: it must have its record."""
    return Path(net_path).parent.name == REPAIRED_DIR_NAME


def bad_model_entry(bad_path):
    """The record's `bad_model`: the BadNet's path, file sha256 and weights digest."""
    return {"path": str(bad_path), "sha256": file_sha256(bad_path),
            "weights_sha256": weights_digest(bad_path)}


def weights_digest(model_path):
    """sha256 of a DeepID file's weights, layer by layer: the same for a full-model file and
    a weights-only file of one net."""
    digest = hashlib.sha256()
    for name, arrays in sorted(read_weights(model_path).items()):
        digest.update(name.encode())
        for array in arrays:
            digest.update(str(array.shape).encode())
            digest.update(array.astype("<f4").tobytes())
    return digest.hexdigest()


def check_badnet(record, bad_path, bad_sha256=None):
    """Refuse (InputError) a repaired net's record made from another BadNet than bad_path:
    its quarantine names that BadNet's targets, not this one's. bad_sha256: the BadNet file's
    digest where the caller has it already."""
    made_from = record.fields.get("bad_model")
    if record.path is None or not isinstance(made_from, dict):
        return
    if made_from.get("sha256") == (bad_sha256 or file_sha256(bad_path)):
        return
    expected = made_from.get("weights_sha256")
    if expected is None and made_from.get("path") and Path(made_from["path"]).is_file():
        expected = weights_digest(made_from["path"])  # a record older than the weights digest
    if expected is not None and expected == weights_digest(bad_path):
        return
    raise InputError(f"{record.path}: this repaired net was made from another BadNet "
                     f"({made_from.get('path')}), not {bad_path}; repair this BadNet, or pass "
                     f"the BadNet it was made from with --bad-model")


def write_repaired(model, net_path, record, export=True):
    """Save the Keras model at net_path with its ONNX artefact (made from the model in memory)
    and its stamped record; returns the record as written."""
    from .fast_net import export_onnx, onnx_path

    net_path = Path(net_path)
    with atomic_path(net_path) as net_tmp:
        net_sha256 = save_model_to(model, net_tmp)
        stamped = _stamped({k: v for k, v in record.items() if k not in (NET_STAMP, RECORD_STAMP)},
                           net_sha256)
        with atomic_path(record_path(net_path)) as record_tmp:
            record_tmp.write_text(json.dumps(stamped, indent=2) + "\n")
            if export:  # stamped with net_tmp's sha256, which is the final net's
                export_onnx(net_tmp, onnx_path(net_path), model=model)
        # The record is in place; the net follows on leaving the outer block. Between the
        # two renames the old net sits beside the new record, and the stamp refuses the pair.
    # The previous repair's witness, unless this record names it (a release: witness.py).
    remove_stale_witnesses(net_path, keep=(record.get(RELEASE_WITNESS_KEY) or {}).get("file"))
    return stamped


def read_record(net_path, num_classes, net_sha256=None, required=None):
    """The record of the repaired net at net_path, checked against it.

    required: refuse a missing record (default: where the net is in a fine_pruned_models/
    folder). net_sha256: the net file's digest where the caller has it already.
    """
    net_path = Path(net_path)
    path = record_path(net_path)
    required = is_default_location(net_path) if required is None else required
    if not path.is_file():
        if required:
            raise InputError(f"{net_path}: repaired net without its record {path.name}; "
                             f"repair again ('python3 -m defense fine-prune --net NET', "
                             f"or 'make setup') or pass the net with --repaired from elsewhere")
        return RepairedRecord()
    record = _load_json(path)
    if NET_STAMP not in record or RECORD_STAMP not in record:
        raise InputError(f"{path}: record written before records were stamped; run 'python3 -m "
                         f"defense repaired --restamp' (with --root for another tree; make setup "
                         f"runs it here), which stamps records that match their nets, or repair again")
    if record[RECORD_STAMP] != _content_digest(record):
        raise InputError(f"{path}: record edited since it was written (its content stamp does "
                         f"not match); repair again with 'python3 -m defense fine-prune'")
    actual = net_sha256 or file_sha256(net_path)
    if record[NET_STAMP] != actual:
        raise InputError(f"{path}: record of another net (stamped for sha256 "
                         f"{str(record[NET_STAMP])[:12]}..., {net_path.name} is {actual[:12]}...): "
                         f"copied from elsewhere or left by an interrupted repair; repair again")
    quarantined = _labels(record, path, num_classes)
    released, release_confidence, release_test, witness, witnessed = _release(record, path, num_classes, quarantined)
    siblings = None
    if SIBLINGS_KEY in record:
        siblings = SiblingEntry.from_record(record[SIBLINGS_KEY], path, num_classes, quarantined - witnessed)
    return RepairedRecord(path, record.get("mode"), quarantined, record, released, release_confidence,
                          release_test, witness, witnessed, siblings)


def describe(net_path):
    """The repaired net's kind in words for help texts, checked as reading checks it; never
    raises."""
    net_path = Path(net_path)
    if not net_path.is_file():
        return "not made yet"
    try:
        record = read_record(net_path, num_classes(net_path), required=True)
    except InputError:
        return "refused: its record is missing or not its own (python3 -m defense repaired)"
    labels, released, witnessed = record.quarantined, record.released, record.witnessed
    return (record.kind + (f", {len(labels)} labels quarantined" if labels else "")
            + (f", {len(record.sibling_labels)} of them given back where every sibling BadNet that "
               f"vouches for one gives it as its top label" if record.sibling_labels else "")
            + (", every label judged by the sibling BadNets" if record.siblings is not None
               and record.siblings.committee else "")
            + (f", {len(released)} suspected labels given back where both nets give them" if released else "")
            + (f", {len(witnessed)} quarantined labels given back where the witness net's top label "
               f"is the BadNet's" if witnessed else ""))


def restamp(net_path):
    """Stamp a record written before the stamps, where it provably belongs to its net: the
    net's switched-off output units are exactly the record's quarantined labels. Returns a
    line saying what was done; raises InputError where the pair does not match."""
    net_path = Path(net_path)
    path = record_path(net_path)
    if not path.is_file():
        read_record(net_path, num_classes(net_path), required=True)  # the missing-record line
    record = _load_json(path)
    if NET_STAMP in record and RECORD_STAMP in record:
        return f"{path}: already stamped (reading checks the stamps)"
    kernel, bias = read_weights(net_path)["output"]
    switched_off = set(np.flatnonzero((bias <= SWITCHED_OFF_BIAS / 2) & ~kernel.any(axis=0)).tolist())
    listed = _labels(record, path, bias.shape[0])
    if switched_off != listed:
        raise InputError(f"{path}: unstamped record whose quarantine ({len(listed)} labels) is "
                         f"not the net's switched-off outputs ({len(switched_off)}); it does "
                         f"not belong to {net_path.name}: repair again")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_stamped(record, file_sha256(net_path)), indent=2) + "\n")
    return f"{path}: re-stamped (its quarantine matches the net's switched-off outputs)"


def _stamped(record, net_sha256):
    record = {**record, NET_STAMP: net_sha256}
    return {**record, RECORD_STAMP: _content_digest(record)}


def _content_digest(record):
    content = {k: v for k, v in record.items() if k != RECORD_STAMP}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _load_json(path):
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: repaired net's record is not readable JSON ({e})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: repaired net's record is not a JSON object")
    return record


def _labels(record, path, num_classes, key=QUARANTINE_KEY):
    labels = record.get(key, [])
    if not isinstance(labels, list) or not all(
            isinstance(label, int) and not isinstance(label, bool) and 0 <= label < num_classes
            for label in labels):
        raise InputError(f"{path}: '{key}' must be a list of labels in [0, {num_classes})")
    return frozenset(labels)


def _release(record, path, num_classes, quarantined):
    """(released labels, release confidence, blend test or None, witness entry or None,
    witnessed labels): labels in range, the released none of them quarantined, the witnessed
    all of them; either needs the blend test and the witness."""
    labels = _labels(record, path, num_classes, RELEASE_KEY)
    witnessed = _labels(record, path, num_classes, WITNESSED_KEY)
    if not witnessed <= quarantined:
        raise InputError(f"{path}: '{WITNESSED_KEY}' that are not quarantined "
                         f"({', '.join(map(str, sorted(witnessed - quarantined)))})")
    for key in (RELEASE_TEST_KEY, RELEASE_WITNESS_KEY):
        if witnessed and key not in record:
            raise InputError(f"{path}: '{WITNESSED_KEY}' without '{key}'")
    if labels and RELEASE_CONFIDENCE_KEY not in record:
        raise InputError(f"{path}: '{RELEASE_KEY}' without '{RELEASE_CONFIDENCE_KEY}'")
    confidence = record.get(RELEASE_CONFIDENCE_KEY, 1.0)
    if labels & quarantined:
        raise InputError(f"{path}: labels both quarantined and released "
                         f"({', '.join(map(str, sorted(labels & quarantined)))})")
    if not is_probability(confidence):
        raise InputError(f"{path}: '{RELEASE_CONFIDENCE_KEY}' must be a probability in [0, 1]")
    test = None
    if labels and RELEASE_TEST_KEY not in record:
        raise InputError(f"{path}: '{RELEASE_KEY}' without '{RELEASE_TEST_KEY}' (a release made "
                         f"before the blend test); repair again with 'python3 -m defense "
                         f"fine-prune --release'")
    if RELEASE_TEST_KEY in record:
        from .architecture import INPUT_SHAPE
        from ..comparator.blend_test import BlendTest

        test = BlendTest.from_record(record[RELEASE_TEST_KEY], path, INPUT_SHAPE, labels | witnessed)
    witness = None
    if labels and RELEASE_WITNESS_KEY not in record:
        raise InputError(f"{path}: '{RELEASE_KEY}' without '{RELEASE_WITNESS_KEY}' (a release made "
                         f"before the witness net); repair again with 'python3 -m defense fine-prune --release'")
    if RELEASE_WITNESS_KEY in record:
        witness = WitnessEntry.from_record(record[RELEASE_WITNESS_KEY], path, num_classes)
    return labels, float(confidence), test, witness, witnessed


def add_arguments(parser):
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="project root (default: $DEFENSE_ROOT, else this repository)")
    parser.add_argument("--restamp", action="store_true",
                        help="stamp records written before the stamps existed, where the net's "
                             "switched-off outputs prove the record is its own (make setup does)")


def run(args):
    """Each competition net's repaired net under ROOT: its kind, and whether its record is its own."""
    import sys

    from ..layout import default_repaired_model
    from .registry import NETS

    refused = 0
    for spec in NETS.values():
        net_path = default_repaired_model(spec, args.root)
        if not net_path.is_file():
            continue
        try:
            if args.restamp:
                print(f"repaired: {restamp(net_path)}", file=sys.stderr)
            record = read_record(net_path, num_classes(net_path), required=True)
            print(f"{spec.name}: {net_path}: {record.summary()}")
        except InputError as e:
            print(f"repaired: error: {e}", file=sys.stderr)
            refused += 1
    return 2 if refused else 0
