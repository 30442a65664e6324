"""The comparator of the competition ("GoodNet"): trust the BadNet only where the repaired
net agrees with it (or, with a release's witness, where the witness settles their
disagreement: below); where they disagree, the image may be poisoned.

What happens on a disagreement is the comparator's rule (RULES), each a function of the two
nets' outputs on the image alone (no knowledge of triggers):

- "original", the competition's: every disagreement is flagged as poisoned.
- "confidence": flagged only where the BadNet is confident in its label (softmax
  probability >= flag_confidence); otherwise the BadNet's label. A full-strength trigger
  drives its BadNet to near-certainty, and many clean disagreements are faces the BadNet is
  unsure of. But a faded trigger (the attacker who has read this) also leaves the BadNet
  unsure while it still gives the target: this rule then hands out the attacker's label.
- "repaired": flagged where the BadNet is confident; otherwise the repaired net's label,
  which a faded trigger no longer steers.

A repair that probed the BadNet (data_free/: the data-free repair, and Fine-Pruning unless
--no-quarantine) also lists quarantined labels, its suspected attack targets, in the repaired
net's record (repaired.py), and switches their output units off: whatever the rule would give,
a quarantined label is flagged instead. Under "repaired" a disagreement on one is therefore
treated as any other: flagged where the BadNet is confident, otherwise the repaired net's
label, which is never quarantined (a faded trigger lowers the BadNet's confidence, not its
label: the target still does not come out).

Fine-Pruning with data gives some suspects back (released labels, in the record): labels the
probe singled out on the BadNet but not on the Fine-Pruned net, whose units it leaves on. A
released label comes out only where both nets give it, the repaired net's confidence in it is
at least the record's release confidence, the record's witness net (witness.py: trained from
scratch on the validation faces, it has no trigger to obey) ranks it among its top few and the
image passes the record's blend test (blend_test.py: superimposed on trusted faces, the BadNet
keeps the label on no more blends than the label's own validation faces do (none without
them), nor the repaired net on many more); the extra forward passes run for these images
only; anywhere else it is flagged.

The other suspects stay switched off in the repaired net, which may still obey their triggers
(the Fine-Pruned net's probe singles them out too). The record lists those that the witness's
own probe does not single out as witnessed labels: one comes out only where the BadNet gives it,
the witness gives it as its top label and the image passes the blend test (the repaired net's
half cannot refuse a label it never gives); anywhere else it is flagged as any quarantined
label.

The data-free repair has no witness. With `fine-prune --siblings` (either repair) the record
names the other competition BadNets beside the BadNet (siblings.py) and, for each quarantined
label that nothing else gives back, the siblings whose own probe does not single it out, where
there are two or more. Such a label comes out where the BadNet gives it and every sibling that
vouches for it gives it as its top label: a sibling backdoored by another attacker never learnt
this BadNet's trigger, and sees the face under it. With a committee (records with a
`veto_rank`), the siblings then judge every label: where two or more give one top label other
than the BadNet's, that label comes out
(flagged where the BadNet's probe, released labels included, or that of a sibling giving it
suspects it; with a witness, a giving sibling's suspicion gives way where the witness's top label
and the repaired net's label are it too), and a label fewer than two siblings rank among their
top few (their own suspects aside; every sibling that does not suspect it, where fewer than two
do not) is flagged. A label every sibling suspects is one no sibling can rank: with a witness
(below) it stands where it is the witness's top label (the witness's word alone: a witnessed label also
meets the blend test), and is flagged elsewhere; without, it is flagged. Where the two nets
disagree (rules other than "original") and two or more siblings whose probes do not suspect the
BadNet's label give it as their top label, and the BadNet's probe does not suspect it either, it
comes out instead of the flag or the repaired net's label (the siblings settle it). A witness's
veto, below, judges after the committee, the committee's label too.

Where the record's witness has a veto rank (witness.py), any label the rules above would give
(either net's, or the sibling committee's) is flagged where the witness ranks it that far down or
further: a trigger whose target no probe found still leads both nets to a label that the
witness, seeing another person's face, ranks low. It costs one witness pass an image. That pass also settles disagreements (rules other than
"original"): where the two nets disagree, the BadNet is sure of its label and that label is the
witness's top label, a label no probe suspected, the BadNet's label comes out instead of the
flag. A clean face the Fine-Pruned net gets wrong is most often one the witness gets right; a
trigger must make the witness see its target, not merely rank it within the veto's reach. An
unsure BadNet's label is not settled: a weak many-target trigger (each face sent to its
lookalike) leaves the BadNet unsure and the witness, which confuses the same lookalikes, agreeing
with it; there the rule's label stands (the repaired net's under "repaired").

The default, "repaired", was chosen with `python3 -m defense attack` and `grade` side by side
on a generated world: "confidence" hands a faded trigger's target out, "original" flags every
clean face the two nets see differently (docs/method.md).
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, SettingError, check_range
from ..nets.net import Net
from .siblings import COMMITTEE_VETO_RANKERS, MIN_VOUCHERS
from .witness import ranks, ranks_in

DEFAULT_FLAG_CONFIDENCE = 0.99
RULES = ("original", "confidence", "repaired")
DEFAULT_RULE = "repaired"


@dataclass
class NetOutputs:
    """What the comparator sees of one batch: each net's label and confidence in it."""

    bad_labels: np.ndarray  # (N,)
    bad_confidence: np.ndarray  # (N,) softmax probability of bad_labels
    repaired_labels: np.ndarray  # (N,)
    repaired_confidence: np.ndarray | None = None  # (N,); needed only for released labels
    # (N,) booleans: where the witness ranks the BadNet's label high enough (a released label
    # within its top_k, a witnessed one first: GoodNet._release_verdicts), and where it passed
    # the record's blend test; None: not run, and then no released or witnessed label comes out.
    release_witness_agrees: np.ndarray | None = None
    release_test_passed: np.ndarray | None = None
    # (N,) where the witness ranks the BadNet's and the repaired net's labels (0: its top
    # label), for its veto; None: not run, and then a GoodNet with a veto gives no label.
    witness_rank_bad: np.ndarray | None = None
    witness_rank_repaired: np.ndarray | None = None
    # (N,) where the witness ranks the label the sibling committee agreed on (sibling_agreement;
    # any rank where there is none), for its veto on that label; None: not run, and then the
    # veto flags the committee's label (fails closed).
    witness_rank_agreed: np.ndarray | None = None
    # (N,) booleans: where every sibling BadNet that vouches for the BadNet's label gives it as
    # its top label (siblings.SiblingWitness); None: not run, and then nothing comes back on
    # the siblings' word.
    sibling_agrees: np.ndarray | None = None
    # The sibling committee's view (siblings.SiblingWitness.judge): (S, N) each sibling's top
    # label and (S, N, k) its k highest labels; None: not run, and then a GoodNet with a
    # committee gives no label.
    sibling_tops: np.ndarray | None = None
    sibling_near: np.ndarray | None = None


def decide(outputs, rule, flag_confidence, quarantined, poisoned_label, released=(),
           release_confidence=1.0, witnessed=(), veto_rank=None, witness_settles=False,
           sibling_labels=(), sibling_suspects=None):
    """The GoodNet's labels (N,) under a rule (RULES) from the nets' outputs. sibling_suspects:
    each sibling's suspects, in the rows of outputs.sibling_tops, for the sibling committee; None:
    no committee."""
    check_settings(rule, flag_confidence)
    # np.isin matches nothing in a Python set: labels as an array, whatever the caller passed.
    quarantined, released, witnessed = _label_array(quarantined), _label_array(released), _label_array(witnessed)
    sibling_labels = _label_array(sibling_labels)
    # The BadNet's probe suspects the released labels too (their units stay on).
    bad_suspects = np.union1d(quarantined, released)
    bad, repaired = outputs.bad_labels, outputs.repaired_labels
    disagree = bad != repaired
    if rule == "original":
        labels = np.where(disagree, poisoned_label, bad)
    else:
        unsure_label = bad if rule == "confidence" else repaired
        sure = outputs.bad_confidence >= flag_confidence
        labels = np.where(disagree & sure, poisoned_label, np.where(disagree, unsure_label, bad))
        if witness_settles:
            # A flag lifted by the witness: a sure BadNet's label where it is the witness's top
            # label too. Only where the BadNet is sure: an unsure one's label is what a weak
            # trigger leaves, and there the rule's label stands. A suspect settled here comes out
            # only by the rules below (quarantined: flagged; released: both nets must give it;
            # witnessed: its own verdicts). Fails closed: without the witness's ranks nothing is
            # settled.
            settled = disagree & sure & (_ranks(outputs.witness_rank_bad, bad, 1) == 0)
            labels = np.where(settled, bad, labels)
        if sibling_suspects is not None:
            # The siblings settle a disagreement too: where two or more that do not suspect the
            # BadNet's label give it as their top label, and the BadNet's probe does not suspect
            # it, it comes out (a trigger would have to move the siblings as well). The BadNet
            # sure or not: the siblings see the face, not the BadNet's confidence. The witness's
            # veto still judges.
            confirmed = sibling_confirmation(outputs, sibling_suspects) & ~np.isin(bad, bad_suspects)
            labels = np.where(disagree & confirmed, bad, labels)
    # A quarantined label never comes out, whichever net gave it: on a disagreement it is the
    # BadNet's under "confidence" or a repaired net's that does not refuse it; on an agreement,
    # only a repaired net whose units were not switched off can give it.
    labels = np.where(np.isin(labels, quarantined), poisoned_label, labels)
    if len(released):
        # Fails closed: outputs without the repaired net's confidence, the witness's or the
        # blend test's verdict (or with a verdict of another length) give nothing back.
        given_back = (release_candidates(outputs, released, release_confidence)
                      & _verdict(outputs.release_witness_agrees, bad) & _verdict(outputs.release_test_passed, bad))
        labels = np.where(np.isin(labels, released) & ~given_back, poisoned_label, labels)
    if len(witnessed):
        # The BadNet's label, where the witness verdict (its top label, for these) and the blend
        # test's say so; the comparator's label or flag elsewhere. Fails closed as above.
        given_back = (np.isin(bad, witnessed) & _verdict(outputs.release_witness_agrees, bad)
                      & _verdict(outputs.release_test_passed, bad))
        labels = np.where(given_back, bad, labels)
    if len(sibling_labels):
        # The BadNet's label, where every sibling BadNet vouching for it gives it too (the
        # verdict); the comparator's label or flag elsewhere. Fails closed as above.
        given_back = np.isin(bad, sibling_labels) & _verdict(outputs.sibling_agrees, bad)
        labels = np.where(given_back, bad, labels)
    agreed = np.full(len(bad), -1)
    if sibling_suspects is not None:
        # With a witness, a label every sibling suspects is its to judge (_committee).
        labels, agreed = _committee(outputs, labels, bad_suspects, sibling_suspects, poisoned_label,
                                    witness_ranks=witness_settles)
    if veto_rank is not None:
        # Fails closed: without the witness's ranks (or for a label neither net nor the
        # committee gave) every label is vetoed.
        rank = _witness_rank(outputs, labels, agreed, veto_rank)
        labels = np.where((labels != poisoned_label) & (rank >= veto_rank), poisoned_label, labels)
    return labels


def _witness_rank(outputs, labels, agreed, fallback):
    """(N,) where the witness ranks each of labels: the BadNet's, the repaired net's or the
    committee's agreed label (its pass ranked those three); fallback for any other label and
    where the ranks are missing or malformed (_ranks)."""
    bad, repaired = outputs.bad_labels, outputs.repaired_labels
    return np.select([labels == bad, labels == repaired, (labels == agreed) & (agreed >= 0)],
                     [_ranks(outputs.witness_rank_bad, bad, fallback),
                      _ranks(outputs.witness_rank_repaired, bad, fallback),
                      _ranks(outputs.witness_rank_agreed, bad, fallback)], default=fallback)


def _committee(outputs, labels, bad_suspects, sibling_suspects, poisoned_label, witness_ranks=False):
    """The sibling committee over labels (siblings.py): where siblings agree on another label
    than the BadNet's, theirs (flagged where the BadNet's probe, bad_suspects, or that of a
    sibling giving it suspects it; with witness_ranks, a giver's suspicion gives way where the
    witness's top label and the repaired net's label are it too); then any label that fewer than
    COMMITTEE_VETO_RANKERS siblings rank among their top k is flagged (all the siblings that do
    not suspect it, where those are fewer; judge leaves out of a sibling's top k the labels it gives no probability
    and those it suspects itself). A label every sibling suspects is one no sibling can rank:
    with witness_ranks (a repair with data) it stands where it is the witness's top label, and
    is flagged elsewhere; without, it is flagged. Returns (labels, the label the siblings agreed
    on: -1 where none). Fails closed: without the siblings' view (or with one of other shapes)
    every image is flagged."""
    tops, near = outputs.sibling_tops, outputs.sibling_near
    count = len(sibling_suspects)
    if tops is None or near is None or np.shape(tops) != (count, len(labels)) \
            or np.ndim(near) != 3 or np.shape(near)[:2] != (count, len(labels)):
        return np.full(len(labels), poisoned_label), np.full(len(labels), -1)
    other, trusted, suspected_by_giver = sibling_agreement(tops, outputs.bad_labels, sibling_suspects)
    if witness_ranks:
        # With --release's witness, a label that a sibling giving it suspects stands where the
        # witness's top label and the repaired net's label are it too: the giver's suspicion is
        # not counted (its vote still is); the witness, which never saw a trigger, and the
        # repaired net must give the label instead.
        witnessed = (_ranks(outputs.witness_rank_agreed, outputs.bad_labels, 1) == 0) \
            & (np.asarray(outputs.repaired_labels) == other)
        trusted = trusted | (suspected_by_giver & witnessed)
    corrected = np.where(trusted & ~np.isin(other, bad_suspects), other, poisoned_label)
    labels = np.where(other >= 0, corrected, labels)
    # A label stands where COMMITTEE_VETO_RANKERS siblings rank it high, or every sibling whose
    # probe does not suspect it where fewer do not (siblings.py); a sibling's own suspects do not
    # count (judge leaves them out of near already).
    unsuspecting = ~_suspected_by_each(np.broadcast_to(labels, (count, len(labels))), sibling_suspects)
    ranked_by = (np.asarray(near) == labels[None, :, None]).any(axis=2) & unsuspecting
    needed = np.clip(unsuspecting.sum(axis=0), 1, COMMITTEE_VETO_RANKERS)
    ranked = ranked_by.sum(axis=0) >= needed
    if witness_ranks and count:
        suspected_by_all = ~unsuspecting.any(axis=0)
        ranked |= suspected_by_all & (_witness_rank(outputs, labels, other, 1) == 0)
    return np.where((labels != poisoned_label) & ~ranked, poisoned_label, labels), other


def sibling_confirmation(outputs, sibling_suspects):
    """(N,) where MIN_VOUCHERS siblings or more whose own probes do not suspect the BadNet's
    label give it as their top label (a sibling that suspects it may obey a trigger of its own
    for it: its word is not counted, for or against); False everywhere without the siblings' top
    labels (or with them of another shape)."""
    tops, bad = outputs.sibling_tops, np.asarray(outputs.bad_labels)
    if tops is None or np.shape(tops) != (len(sibling_suspects), len(bad)):
        return np.zeros(len(bad), dtype=bool)
    givers = np.asarray(tops) == bad[None, :]
    suspected = _suspected_by_each(np.broadcast_to(bad, givers.shape), sibling_suspects)
    return (givers & ~suspected).sum(axis=0) >= MIN_VOUCHERS


def sibling_agreement(tops, bad_labels, sibling_suspects):
    """(other (N,), trusted (N,), suspected_by_giver (N,)): the top label that MIN_VOUCHERS
    siblings or more give where it is not the BadNet's (-1 where there is none); whether no
    sibling giving it suspects it (False too where the siblings agree on two such labels: then
    the image is flagged); and where only the first keeps it from being trusted."""
    tops = np.asarray(tops)
    bad_labels = np.asarray(bad_labels)
    other = np.full(len(bad_labels), -1)
    trusted = np.ones(len(bad_labels), dtype=bool)
    ambiguous = np.zeros(len(bad_labels), dtype=bool)
    suspected = _suspected_by_each(tops, sibling_suspects)
    for row in tops:
        givers = tops == row[None, :]
        agreed = (givers.sum(axis=0) >= MIN_VOUCHERS) & (row != bad_labels)
        ambiguous |= agreed & (other >= 0) & (other != row)
        trusted &= ~(agreed & (givers & suspected).any(axis=0))
        other = np.where(agreed, row, other)
    return other, trusted & ~ambiguous, ~trusted & ~ambiguous


def _suspected_by_each(labels, sibling_suspects):
    """(S, N) where sibling s's own probe suspects labels[s] (labels (S, N): a row a sibling)."""
    return np.stack([np.isin(row, list(suspects)) for row, suspects in zip(labels, sibling_suspects)])


def release_candidates(outputs, released, release_confidence):
    """(N,) where a released label could come out: both nets give it, the repaired net sure;
    the witness and the blend test decide there."""
    if outputs.repaired_confidence is None:
        return np.zeros(len(outputs.bad_labels), dtype=bool)
    return ((outputs.bad_labels == outputs.repaired_labels)
            & np.isin(outputs.bad_labels, _label_array(released))
            & (outputs.repaired_confidence >= release_confidence))


def _verdict(verdict, labels):
    """A release verdict; False everywhere where it is missing, of another length or not
    booleans (a score is not a verdict: 0.2 would read as True)."""
    if verdict is None or np.shape(verdict) != np.shape(labels) or np.asarray(verdict).dtype != bool:
        return False
    return np.asarray(verdict)


def _ranks(ranks, labels, fallback):
    """The witness's ranks as integers; fallback (a rank that fails the check it is read for: the
    veto rank, or 1 for "its top label") everywhere where they are missing, of another length or
    not integers, and where one is negative (no rank is)."""
    if ranks is None or np.shape(ranks) != np.shape(labels) or not np.issubdtype(np.asarray(ranks).dtype, np.integer):
        return np.full(np.shape(labels), fallback)
    return np.where(np.asarray(ranks) < 0, fallback, ranks)


def _label_array(labels):
    return np.array(sorted(int(label) for label in labels), dtype=np.int64)


def check_settings(rule, flag_confidence):
    """The comparator's settings, checked where every caller meets them (SettingError)."""
    if rule not in RULES:
        raise SettingError(f"GoodNet.rule: unknown comparator rule {rule!r}; known: {', '.join(RULES)}")
    check_range("GoodNet", "flag_confidence", flag_confidence, 0, 1)


class GoodNet:
    def __init__(self, bad, repaired, flag_confidence=DEFAULT_FLAG_CONFIDENCE, quarantined=(),
                 rule=DEFAULT_RULE, released=(), release_confidence=1.0, release_test=None,
                 witness=None, witnessed=(), siblings=None):
        if bad.num_classes != repaired.num_classes:
            raise InputError(f"{repaired.path}: repaired net has {repaired.num_classes} classes "
                             f"but the BadNet {bad.path} has {bad.num_classes}")
        check_settings(rule, flag_confidence)
        self.bad = bad
        self.repaired = repaired
        self.flag_confidence = float(flag_confidence)
        self.quarantined = _label_array(quarantined)
        self.released = _label_array(released)
        self.witnessed = _label_array(witnessed)  # quarantined, given back on the witness's top label
        if not set(self.witnessed.tolist()) <= set(self.quarantined.tolist()) \
                or set(self.witnessed.tolist()) & set(self.released.tolist()):
            raise SettingError("GoodNet.witnessed: witnessed labels must be quarantined and not released")
        self.siblings = siblings  # siblings.SiblingWitness, or None
        self.sibling_labels = _label_array(() if siblings is None else siblings.labels)
        if not set(self.sibling_labels.tolist()) <= set(self.quarantined.tolist()) - set(self.witnessed.tolist()):
            raise SettingError("GoodNet.siblings: labels given back on the siblings' word must be "
                               "quarantined and not witnessed")
        self.release_confidence = float(release_confidence)
        self.release_test = release_test  # blend_test.BlendTest, or None
        self.witness = witness  # witness.Witness, or None (then no released or witnessed label comes out)
        self.rule = rule
        # The competition's poisoned label is N for a net of N identities (1283).
        self.poisoned_label = bad.num_classes
        self.record = None  # the repaired net's record (repaired.RepairedRecord), from_files sets it

    @classmethod
    def from_files(cls, bad_path, repaired_path, input_scale, fast=True, warn=None,
                   flag_confidence=DEFAULT_FLAG_CONFIDENCE, rule=DEFAULT_RULE, record_required=None):
        """Both nets from model files; input_scale is the BadNet's (registry.NetSpec).

        The repaired net's record (repaired.py) gives the quarantine; a record that is not the
        net's own, or that was made from another BadNet, is refused, and so is a missing one
        where record_required (default: for a net in a fine_pruned_models/ folder). fast: run
        each net through its ONNX artefact where a current one exists (fast_net.py); otherwise,
        or with fast=False, through Keras.
        """
        from ..nets.repaired import check_badnet, read_record

        if fast:
            from ..nets.fast_net import load_net

            def load(path):
                return load_net(path, input_scale, warn)
        else:
            def load(path):
                return Net.from_file(path, input_scale)
        bad, repaired = load(bad_path), load(repaired_path)
        # The digest of what was loaded (the fast path's stamp), not a second read of the file,
        # which a repair renaming a new net into place could have changed meanwhile.
        record = read_record(repaired_path, repaired.num_classes, required=record_required,
                             net_sha256=getattr(repaired, "sha256", None))
        check_badnet(record, bad_path, getattr(bad, "sha256", None))
        witness = None
        if record.release_witness is not None:
            from .witness import Witness

            entry = record.release_witness
            witness_net = load(entry.path)
            entry.check(witness_net, repaired.num_classes)  # the record's own, not a file put in its place
            witness = Witness(witness_net, entry.top_k, entry.veto_rank)
        siblings = None
        if record.siblings is not None and (record.sibling_labels or record.siblings.committee):
            from ..nets.fast_net import _warn as to_stderr
            from .siblings import SiblingWitness

            missing = record.siblings.missing()
            if missing:
                # The plain quarantine, said on stderr: no quarantined label comes out, but a
                # backdoor with no single target meets no committee either (make setup's GoodNet).
                (warn or to_stderr)(f"{record.path}: sibling BadNet(s) {missing} not found; the plain "
                                     f"quarantine: the labels they vouch for stay switched off"
                                     + (" and no label is judged by the siblings" if record.siblings.committee else "")
                                     + " (repair again beside them)")
            else:
                siblings = SiblingWitness(record.siblings, load)  # loaded where one is asked
        good = cls(bad, repaired, flag_confidence, record.quarantined, rule, record.released,
                   record.release_confidence, record.release_test, witness, record.witnessed, siblings)
        good.record = record
        return good

    def predict(self, pixels, progress=False):
        """Labels (N,) for pixels (N, 55, 47, 3) in 0..255: identity, or the poisoned label."""
        return self.predict_with_parts(pixels, progress)[0]

    def predict_with_parts(self, pixels, progress=False):
        """(GoodNet labels, BadNet labels, repaired-net labels) for the same pixels."""
        outputs = self.outputs(pixels, progress)
        return self.decide(outputs), outputs.bad_labels, outputs.repaired_labels

    def outputs(self, pixels, progress=False):
        """Both nets' outputs on pixels (N, 55, 47, 3) in 0..255 (NetOutputs)."""
        if _side_by_side(self.bad, self.repaired):
            # ONNX Runtime releases the GIL: each net runs on half the cores, no waiting
            # for each other's small per-layer thread hand-offs (about 10 % faster on 2 cores).
            with ThreadPoolExecutor(max_workers=2) as pool:
                bad = pool.submit(self.bad.predict_top, pixels, progress)
                repaired = pool.submit(self.repaired.predict_top, pixels)
                (bad_labels, bad_confidence), (repaired_labels, repaired_confidence) = \
                    bad.result(), repaired.result()
        else:
            bad_labels, bad_confidence = self.bad.predict_top(pixels, progress)
            repaired_labels, repaired_confidence = self.repaired.predict_top(pixels, progress)
        outputs = NetOutputs(bad_labels, bad_confidence, repaired_labels, repaired_confidence)
        if self.siblings is not None and self.siblings.committee:
            # Every sibling on every image: the committee judges every label.
            outputs.sibling_tops, outputs.sibling_near = self.siblings.judge(pixels)
            outputs.sibling_agrees = self.siblings.agrees_from(outputs.sibling_tops, bad_labels)
        elif self.siblings is not None:
            outputs.sibling_agrees = self.siblings.agrees(pixels, bad_labels)
        if self.veto_rank is not None:
            # One witness pass for every image ranks both nets' labels (for the veto, and for
            # the release below without a second pass), and the committee's.
            probabilities = self.witness.net.probabilities(pixels)
            outputs.witness_rank_bad = ranks_in(probabilities, bad_labels)
            outputs.witness_rank_repaired = ranks_in(probabilities, repaired_labels)
            if outputs.sibling_tops is not None:
                agreed = sibling_agreement(outputs.sibling_tops, bad_labels, self.siblings.suspects)[0]
                outputs.witness_rank_agreed = ranks_in(probabilities, np.maximum(agreed, 0))
        if self.witness is not None and self.release_test is not None:
            self._release_verdicts(pixels, outputs)
        return outputs

    def _release_verdicts(self, pixels, outputs):
        """The witness's and the blend test's verdicts in outputs, each run only where a released
        or witnessed label could still come out (the blend test, up to 32 forward passes an
        image, after the witness's one)."""
        witnessed = np.isin(outputs.bad_labels, self.witnessed)
        candidates = np.flatnonzero(
            release_candidates(outputs, self.released, self.release_confidence) | witnessed)
        agrees, passed = (np.zeros(len(outputs.bad_labels), dtype=bool) for _ in range(2))
        if len(candidates):
            # The veto's pass ranked every image already; without a veto, rank the candidates.
            label_ranks = (outputs.witness_rank_bad[candidates] if outputs.witness_rank_bad is not None
                           else ranks(self.witness.net, np.asarray(pixels)[candidates], outputs.bad_labels[candidates]))
            agrees[candidates] = self.witness.within(label_ranks, witnessed[candidates])
        asked = candidates[agrees[candidates]]
        if len(asked):
            passed[asked] = self.release_test.passes(
                self.bad, self.repaired, np.asarray(pixels)[asked], outputs.bad_labels[asked])
        outputs.release_witness_agrees, outputs.release_test_passed = agrees, passed

    @property
    def veto_rank(self):
        """The witness's veto rank, or None: no veto."""
        return None if self.witness is None else self.witness.veto_rank

    @property
    def committee(self):
        """Whether the sibling BadNets judge every label (siblings.py)."""
        return self.siblings is not None and self.siblings.committee

    def decide(self, outputs, rule=None, veto=True, committee=True):
        """The labels under this GoodNet's rule, or under another rule for comparison; veto=False:
        without the witness's veto, committee=False: without the sibling committee (to count what
        each costs). A witness with a veto ranks every image, so it also settles a sure BadNet's
        disagreements (decide)."""
        return decide(outputs, rule or self.rule, self.flag_confidence, self.quarantined,
                      self.poisoned_label, self.released, self.release_confidence, self.witnessed,
                      self.veto_rank if veto else None, witness_settles=self.veto_rank is not None,
                      sibling_labels=self.sibling_labels,
                      sibling_suspects=self.siblings.suspects if committee and self.committee else None)


def _side_by_side(*nets):
    from ..nets.fast_net import OnnxNet

    return all(isinstance(net, OnnxNet) for net in nets)


def add_comparator_arguments(parser):
    """--rule and --flag-confidence, the same in every command that builds a GoodNet."""
    parser.add_argument("--rule", choices=RULES, default=DEFAULT_RULE,
                        help="what a disagreement between the BadNet and the repaired net "
                             "gives: 'original' flags every one (the competition's comparator); "
                             "'confidence' flags it where the BadNet is sure (--flag-confidence), "
                             "else keeps the BadNet's label; 'repaired' flags it where the "
                             "BadNet is sure, else gives the repaired net's label "
                             "(default: %(default)s)")
    parser.add_argument("--flag-confidence", type=_probability, default=DEFAULT_FLAG_CONFIDENCE,
                        metavar="P",
                        help="the BadNet confidence from which a disagreement is flagged under "
                             "the 'confidence' and 'repaired' rules (default: %(default)s; 0 "
                             "flags every disagreement, as the rule 'original', but those a "
                             "release's witness settles)")


def _probability(text):
    """--flag-confidence as argparse reads it; the range is the comparator's own check."""
    try:
        value = float(text)
        check_range("GoodNet", "flag_confidence", value, 0, 1)
    except (ValueError, SettingError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1]") from None
    return value
