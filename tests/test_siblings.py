"""Sibling BadNets vouching for the data-free repair's quarantined labels (defense/comparator/siblings.py):
the rule on hand-made outputs, the record's checks, and the real nets of `make setup`."""

import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO, SAMPLES, run_script
from defense.errors import InputError
from defense.comparator.goodnet import NetOutputs, decide, sibling_agreement, sibling_confirmation
from defense.nets.registry import COMPETITION_NETS, NETS
from defense.comparator.siblings import (COMMITTEE_VETO_RANK, MIN_VOUCHERS, RECORD_KEY, Sibling,
                                         SiblingEntry, SiblingWitness, vouchers_for)

POISONED = 10


def test_a_vouched_label_comes_out_only_where_the_siblings_agree():
    """Labels 7 and 8 quarantined, 7 vouched for: 7 comes out where the verdict says so, 8
    never; without a verdict (or a verdict that is not booleans) nothing comes back."""
    outputs = NetOutputs(bad_labels=np.array([7, 7, 8, 3]), bad_confidence=np.full(4, 0.999),
                         repaired_labels=np.array([6, 6, 6, 3]),
                         sibling_agrees=np.array([True, False, True, True]))
    labels = decide(outputs, "repaired", 0.99, [7, 8], POISONED, sibling_labels=[7])
    np.testing.assert_array_equal(labels, [7, POISONED, POISONED, 3])
    for verdict in (None, np.array([1, 0, 1, 1]), np.array([True, True])):
        outputs.sibling_agrees = verdict
        np.testing.assert_array_equal(decide(outputs, "repaired", 0.99, [7, 8], POISONED, sibling_labels=[7]),
                                      [POISONED, POISONED, POISONED, 3])


SUSPECTS = (frozenset({9}), frozenset(), frozenset())  # the siblings a, b, c of _entry


def committee_labels(bad, tops, near, quarantined=(7,), vouched=(), agrees=None):
    outputs = NetOutputs(bad_labels=np.array(bad), bad_confidence=np.full(len(bad), 0.999),
                         repaired_labels=np.array(bad), sibling_agrees=agrees,
                         sibling_tops=None if tops is None else np.array(tops).T,
                         sibling_near=None if near is None else np.array(near).transpose(1, 0, 2))
    return decide(outputs, "repaired", 0.99, list(quarantined), POISONED, sibling_labels=list(vouched),
                  sibling_suspects=SUSPECTS)


def test_the_committee_corrects_flags_and_vetoes():
    """Per image: each sibling's top label (a, b, c) and the labels each ranks high. The BadNet's
    label where two siblings rank it high; two siblings' other label where no probe suspects it
    (not 9, which a suspects, nor 7, which the BadNet's probe does); the flag where fewer than
    two rank the label high."""
    rows = [  # (BadNet, tops, the labels each sibling ranks high, expected)
        (3, (3, 3, 3), ((3, 1), (3, 1), (3, 1)), 3),
        (3, (4, 4, 2), ((4, 3), (4, 3), (2, 3)), 4),  # corrected
        (3, (9, 9, 2), ((9, 3), (9, 3), (2, 3)), POISONED),  # a suspects 9
        (3, (7, 7, 2), ((7, 3), (7, 3), (2, 3)), POISONED),  # 7 is quarantined
        (3, (1, 2, 5), ((1, 2), (2, 1), (5, 1)), POISONED),  # vetoed: no sibling ranks 3 high
        (3, (1, 2, 5), ((1, 2), (2, 1), (5, 3)), POISONED),  # c alone ranks it: one word is too few
        (3, (1, 2, 5), ((1, 2), (2, 3), (5, 3)), 3),  # b and c rank it second
        (9, (1, 2, 5), ((1, 2), (2, 9), (5, 1)), POISONED),  # 9: b alone of b and c (a suspects it)
    ]
    rows += [
        (3, (2, 9, 9), ((2, 3), (9, 3), (9, 3)), 9),  # a suspects 9 but does not give it
        (7, (5, 5, 7), ((5, 7), (5, 7), (7, 5)), 5),  # a quarantined label of the BadNet, corrected
    ]
    bad, tops, near, expected = (list(column) for column in zip(*rows))
    np.testing.assert_array_equal(committee_labels(bad, tops, near), expected)
    # Fails closed: without the siblings' view, or with one of another shape, nothing comes out.
    np.testing.assert_array_equal(committee_labels(bad, None, near), [POISONED] * len(rows))
    np.testing.assert_array_equal(committee_labels(bad, [t[:2] for t in tops], [n[:2] for n in near]),
                                  [POISONED] * len(rows))


def test_a_label_all_siblings_but_one_suspect_needs_that_ones_word():
    """Label 6 is a suspect of a and b: c alone can rank it, and its word is enough (an image
    where c ranks it stands, one where it does not is flagged); a label every sibling suspects
    is ranked by none (judge leaves it out of their top labels) and flagged (no witness here)."""
    outputs = NetOutputs(bad_labels=np.array([6, 6, 5]), bad_confidence=np.full(3, 0.999),
                         repaired_labels=np.array([6, 6, 5]), sibling_tops=np.array([[1, 1, 1], [2, 2, 2], [6, 4, 5]]),
                         sibling_near=np.array([[[1, 2]] * 3, [[2, 1]] * 3, [[6, 1], [4, 1], [-1, 1]]]))
    labels = decide(outputs, "repaired", 0.99, [7], POISONED,
                    sibling_suspects=(frozenset({5, 6}), frozenset({5, 6}), frozenset({5})))
    np.testing.assert_array_equal(labels, [6, POISONED, POISONED])


def test_the_committee_overrules_the_comparators_flag_and_label():
    """The nets disagree: a sure BadNet's disagreement is flagged, an unsure one's gives the
    repaired net's label; where two siblings give the true label, it comes out either way."""
    outputs = NetOutputs(bad_labels=np.array([3, 3, 3]), bad_confidence=np.array([0.999, 0.5, 0.5]),
                         repaired_labels=np.array([6, 6, 6]),
                         sibling_tops=np.array([[4, 4, 6], [4, 4, 2], [1, 1, 6]]),
                         sibling_near=np.array([[[4, 6]] * 3, [[4, 3], [4, 3], [2, 6]], [[1, 4]] * 3]))
    labels = decide(outputs, "repaired", 0.99, [7], POISONED, sibling_suspects=SUSPECTS)
    np.testing.assert_array_equal(labels, [4, 4, 6])
    without = decide(outputs, "repaired", 0.99, [7], POISONED)
    np.testing.assert_array_equal(without, [POISONED, 6, 6])


def test_a_released_label_the_siblings_agree_on_is_flagged():
    """With data, the BadNet's probe suspects the released labels too (their units stay on): a
    label two siblings give instead of the BadNet's is flagged where it is released, as where it
    is quarantined, and given where it is neither."""
    outputs = NetOutputs(bad_labels=np.array([3, 3, 3]), bad_confidence=np.full(3, 0.999),
                         repaired_labels=np.array([3, 3, 3]),
                         sibling_tops=np.array([[5, 7, 4]] * 3),
                         sibling_near=np.array([[[5, 3], [7, 3], [4, 3]]] * 3))
    labels = decide(outputs, "repaired", 0.99, [7], POISONED, released=[5], sibling_suspects=(frozenset(),) * 3)
    np.testing.assert_array_equal(labels, [POISONED, POISONED, 4])


def test_the_witness_veto_ranks_the_committees_label():
    """With data and --siblings, the witness's veto judges after the committee: the label two
    siblings agree on (4, both nets giving 3) comes out where the witness ranks it within its
    veto rank, and is flagged beyond it or where the witness's rank of it is missing."""
    tops = np.array([[4, 4, 2]] * 3).T

    def labels(rank_agreed):
        outputs = NetOutputs(bad_labels=np.array([3, 3, 3]), bad_confidence=np.full(3, 0.999),
                             repaired_labels=np.array([3, 3, 3]), witness_rank_bad=np.zeros(3, dtype=int),
                             witness_rank_repaired=np.zeros(3, dtype=int), witness_rank_agreed=rank_agreed,
                             sibling_tops=tops, sibling_near=np.stack([tops, tops], axis=2))
        return decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=5, witness_settles=True,
                      sibling_suspects=(frozenset(),) * 3)

    np.testing.assert_array_equal(labels(np.array([0, 4, 5])), [4, 4, POISONED])
    # Missing, of another length or negative: flagged (fails closed).
    for rank_agreed in (None, np.array([0, 0]), np.array([-1, -1, -1])):
        np.testing.assert_array_equal(labels(rank_agreed), [POISONED] * 3)


def test_the_witness_rank_of_an_agreed_label_moves_nothing_else():
    """Where the siblings agree on no other label (the BadNet's label stands) the rank of the
    agreed label is not read, and without the committee it is never read; where the agreed label
    is the repaired net's, its rank is the repaired net's label's."""
    def labels(tops, repaired, committee=True):
        tops = np.array(tops).T
        outputs = NetOutputs(bad_labels=np.array([3, 3]), bad_confidence=np.full(2, 0.5),
                             repaired_labels=np.array(repaired), witness_rank_bad=np.array([0, 0]),
                             witness_rank_repaired=np.array([9, 0]), witness_rank_agreed=np.array([9, 9]),
                             sibling_tops=tops, sibling_near=np.stack([tops, tops], axis=2))
        return decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=5, witness_settles=True,
                      sibling_suspects=(frozenset(),) * 3 if committee else None)

    np.testing.assert_array_equal(labels([(3, 3, 2), (3, 3, 2)], [3, 3]), [3, 3])
    np.testing.assert_array_equal(labels([(3, 3, 2), (3, 3, 2)], [3, 3], committee=False), [3, 3])
    # The unsure BadNet's disagreement gives the repaired net's 4 (rule "repaired"); two siblings
    # agree on 4 too: the witness ranks 4 ninth for the first image (vetoed), first for the second.
    np.testing.assert_array_equal(labels([(4, 4, 2), (4, 4, 2)], [4, 4]), [POISONED, 4])


def test_the_siblings_settle_a_disagreement_for_the_badnets_label():
    """The nets disagree (BadNet 3, repaired net 6); the BadNet's label comes out where two
    siblings whose probes do not suspect it give it as their top label, sure BadNet or not. A
    sibling that suspects it is not counted, for or against; a label the BadNet's probe suspects
    (quarantined 7, released 5) is never settled; nor is anything under the rule "original"."""
    def labels(bad, tops, suspects=(frozenset(),) * 3, rule="repaired", confidence=0.999):
        tops = np.array(tops).T
        outputs = NetOutputs(bad_labels=np.array(bad), bad_confidence=np.full(len(bad), confidence),
                             repaired_labels=np.full(len(bad), 6), sibling_tops=tops,
                             # Every sibling ranks the repaired net's 6 second: the veto spares it.
                             sibling_near=np.stack([tops, np.full_like(tops, 6)], axis=2))
        return decide(outputs, rule, 0.99, [7], POISONED, released=[5], sibling_suspects=suspects)

    tops = [(3, 3, 2), (6, 3, 1), (7, 7, 7), (5, 5, 5)]  # the second: one sibling gives 3
    np.testing.assert_array_equal(labels([3, 3, 7, 5], tops), [3, POISONED, POISONED, POISONED])
    # Unsure BadNet: the repaired net's 6 where the siblings do not settle it.
    np.testing.assert_array_equal(labels([3, 3], tops[:2], confidence=0.6), [3, 6])
    one_suspects = (frozenset({3}), frozenset(), frozenset())
    np.testing.assert_array_equal(labels([3, 3], [(3, 3, 3), (3, 3, 2)], one_suspects), [3, POISONED])
    np.testing.assert_array_equal(labels([3], [(3, 3, 3)], (frozenset({3}),) * 2 + (frozenset(),)), [POISONED])
    np.testing.assert_array_equal(labels([3], [(3, 3, 3)], rule="original"), [POISONED])
    # Fails closed: without the siblings' top labels nothing is settled (and the committee flags).
    outputs = NetOutputs(bad_labels=np.array([3]), bad_confidence=np.array([0.6]), repaired_labels=np.array([6]))
    assert not sibling_confirmation(outputs, (frozenset(),) * 3).any()
    outputs.sibling_tops = np.array([[3], [3]])  # two rows for three siblings
    assert not sibling_confirmation(outputs, (frozenset(),) * 3).any()


def test_the_witness_does_not_stand_in_for_a_second_sibling():
    """With a witness (a repair with data) that gives every label as its top one: label 6, which
    b suspects, needs both a and c to rank it (flagged where a alone does, given where both do);
    label 4, which every sibling suspects, is the witness's to judge and stands."""
    tops = np.array([[6, 6, 1], [2, 3, 5], [7, 6, 8]])
    near = np.array([[[6, 1], [6, 1], [1, 2]], [[2, 1], [3, 1], [5, 1]], [[7, 1], [6, 1], [8, 1]]])
    outputs = NetOutputs(bad_labels=np.array([6, 6, 4]), bad_confidence=np.full(3, 0.999),
                         repaired_labels=np.array([6, 6, 4]), witness_rank_bad=np.zeros(3, dtype=int),
                         witness_rank_repaired=np.zeros(3, dtype=int), witness_rank_agreed=np.zeros(3, dtype=int),
                         sibling_tops=tops, sibling_near=near)
    labels = decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=5, witness_settles=True,
                    sibling_suspects=(frozenset({4}), frozenset({4, 6}), frozenset({4})))
    np.testing.assert_array_equal(labels, [POISONED, 6, 4])


def test_a_label_every_sibling_suspects_is_the_witnesss_to_judge():
    """No sibling can rank a label that every sibling's probe suspects (4 here): with a witness
    (a repair with data) it stands where it is the witness's top label and is flagged elsewhere;
    without one it is flagged, as before. A label only some siblings suspect is theirs to rank."""
    suspects = (frozenset({4}), frozenset({4, 6}), frozenset({4}))
    tops = np.array([[4, 4, 4]] * 3).T

    def labels(witness_rank, veto_rank=5):
        outputs = NetOutputs(bad_labels=np.array([4, 4, 4]), bad_confidence=np.full(3, 0.999),
                             repaired_labels=np.array([4, 4, 4]), witness_rank_bad=witness_rank,
                             witness_rank_repaired=witness_rank, sibling_tops=tops,
                             sibling_near=np.full((3, 3, 2), -1))  # judge leaves suspects out
        return decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=veto_rank,
                      witness_settles=veto_rank is not None, sibling_suspects=suspects)

    np.testing.assert_array_equal(labels(np.array([0, 1, 3])), [4, POISONED, POISONED])
    np.testing.assert_array_equal(labels(np.array([0, 0, 0]), veto_rank=None), [POISONED] * 3)
    np.testing.assert_array_equal(labels(None), [POISONED] * 3)  # fails closed without the ranks


def test_a_label_a_giving_sibling_suspects_stands_where_the_witness_and_repaired_net_give_it():
    """Siblings a and b agree on 4 (the BadNet says 3); a's probe suspects 4, so their word is not
    enough. With data, 4 stands where the witness's top label is 4 and the repaired net gives 4
    too; it is flagged where either gives something else, where the witness's rank of it is
    missing, where the BadNet's probe suspects 4, and without a witness (data-free)."""
    suspects = (frozenset({4}), frozenset(), frozenset())
    tops = np.array([[4, 4, 2]] * 4).T
    near = np.array([[[4, 3], [4, 3], [2, 4]]] * 4).transpose(1, 0, 2)  # b and c rank 4 high

    def labels(rank_agreed, repaired, quarantined=(7,), with_data=True):
        # The witness's veto passes the repaired net's label (rank 0): only the rule judges.
        outputs = NetOutputs(bad_labels=np.full(4, 3), bad_confidence=np.full(4, 0.999),
                             repaired_labels=np.array(repaired), witness_rank_bad=np.full(4, 2),
                             witness_rank_repaired=np.zeros(4, dtype=int),
                             witness_rank_agreed=rank_agreed, sibling_tops=tops, sibling_near=near)
        return decide(outputs, "repaired", 0.99, list(quarantined), POISONED, veto_rank=5 if with_data else None,
                      witness_settles=with_data, sibling_suspects=suspects)

    np.testing.assert_array_equal(labels(np.array([0, 0, 1, 3]), [4, 3, 4, 4]), [4, POISONED, POISONED, POISONED])
    # Fails closed: the witness's rank of 4 missing, not integers, of another length or negative.
    for rank_agreed in (None, np.zeros(4), np.zeros(3, dtype=int), np.full(4, -1), np.zeros(4, dtype=bool)):
        np.testing.assert_array_equal(labels(rank_agreed, [4] * 4), [POISONED] * 4)
    np.testing.assert_array_equal(labels(np.zeros(4, dtype=int), [4] * 4, quarantined=(4, 7)), [POISONED] * 4)
    np.testing.assert_array_equal(labels(np.zeros(4, dtype=int), [4] * 4, with_data=False), [POISONED] * 4)
    # Where no sibling giving 4 suspects it, the witness's top label is not needed (as before).
    trusting = decide(NetOutputs(bad_labels=np.full(4, 3), bad_confidence=np.full(4, 0.999),
                                 repaired_labels=np.full(4, 3), sibling_tops=tops, sibling_near=near),
                      "repaired", 0.99, [7], POISONED, sibling_suspects=(frozenset(),) * 3)
    np.testing.assert_array_equal(trusting, [4] * 4)


def test_two_labels_agreed_on_stay_flagged_whatever_the_witness_says():
    """Siblings a, b agree on 4 (a suspects it) and c, d on 5: ambiguous, flagged even where the
    witness's top label and the repaired net's are the label sibling_agreement settles on."""
    tops = np.array([[4], [4], [5], [5]])
    other, trusted, suspected_by_giver = sibling_agreement(tops, np.array([3]), [frozenset({4})] + [frozenset()] * 3)
    assert not trusted[0] and not suspected_by_giver[0]
    outputs = NetOutputs(bad_labels=np.array([3]), bad_confidence=np.array([0.999]), repaired_labels=np.array([other[0]]),
                         witness_rank_bad=np.array([2]), witness_rank_repaired=np.array([0]),
                         witness_rank_agreed=np.array([0]), sibling_tops=tops,
                         sibling_near=np.stack([tops, np.full_like(tops, 4), np.full_like(tops, 5)], axis=2))
    labels = decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=5, witness_settles=True,
                    sibling_suspects=(frozenset({4}),) + (frozenset(),) * 3)
    np.testing.assert_array_equal(labels, [POISONED])


def test_a_vouched_label_passes_the_committee_where_its_vouchers_give_it():
    labels = committee_labels([7, 7], [(7, 7, 7), (7, 1, 7)], [((7, 1),) * 3, ((7, 1), (1, 7), (7, 1))],
                              vouched=[7], agrees=np.array([True, False]))
    np.testing.assert_array_equal(labels, [7, POISONED])


def test_two_labels_agreed_on_by_four_siblings_flag_the_image():
    other, trusted, suspected_by_giver = sibling_agreement(np.array([[1], [1], [2], [2]]), np.array([3]), [frozenset()] * 4)
    assert other[0] in (1, 2) and not trusted[0] and not suspected_by_giver[0]
    other, trusted, suspected_by_giver = sibling_agreement(np.array([[1], [1], [2], [3]]), np.array([3]), [frozenset()] * 4)
    assert other[0] == 1 and trusted[0] and not suspected_by_giver[0]


def _images(count):
    """count images, image i filled with the value i: every view of it (siblings.view_probabilities)
    is the image itself, and the fakes below read i from any pixel."""
    return np.broadcast_to(np.arange(count, dtype=np.float32)[:, None, None, None], (count, 55, 47, 3))


class FakeNet:
    """A sibling giving image i (_images) the label top[i], sure."""

    def __init__(self, top, sha256, classes=12):
        self.top, self.sha256, self.classes = np.asarray(top), sha256, classes

    def probabilities(self, pixels):
        return np.eye(self.classes, dtype=np.float32)[self.top[np.asarray(pixels)[:, 0, 0, 0].astype(int)]]


def _entry(tmp_path, vouchers):
    siblings = (Sibling("a", tmp_path / "a.h5", "a" * 64, frozenset({9})),
                Sibling("b", tmp_path / "b.h5", "b" * 64, frozenset()),
                Sibling("c", tmp_path / "c.h5", "c" * 64, frozenset()))
    return SiblingEntry(siblings, vouchers)


def test_every_sibling_that_vouches_must_give_the_label_and_nets_load_when_asked(tmp_path):
    nets = {tmp_path / "a.h5": FakeNet([7, 7, 8, 0], "a" * 64), tmp_path / "b.h5": FakeNet([7, 1, 8, 0], "b" * 64),
            tmp_path / "c.h5": FakeNet([7, 7, 8, 0], "c" * 64)}
    loaded = []
    witness = SiblingWitness(_entry(tmp_path, {7: ("a", "b"), 8: ("b", "c"), 9: ()}),
                             lambda path: loaded.append(path) or nets[path])
    assert witness.labels == {7, 8}  # 9: no sibling vouches for it
    np.testing.assert_array_equal(witness.agrees(_images(4), np.array([3, 3, 3, 3])), [False] * 4)
    assert not loaded  # no image asked for a vouched label: no sibling loaded
    np.testing.assert_array_equal(witness.agrees(_images(4), np.array([7, 7, 8, 9])), [True, False, True, False])
    assert sorted(loaded) == sorted(nets)  # each loaded once, on first use
    witness.agrees(_images(4), np.array([7, 7, 8, 9]))
    assert len(loaded) == 3


class FakeProbabilities:
    """A sibling giving image i (_images) the softmax row probabilities[i]."""

    def __init__(self, probabilities, sha256):
        self.probabilities_of, self.sha256 = np.asarray(probabilities, dtype=np.float32), sha256

    def probabilities(self, pixels):
        return self.probabilities_of[np.asarray(pixels)[:, 0, 0, 0].astype(int)]


def test_the_committee_judges_every_image_with_every_sibling(tmp_path):
    """judge: each sibling's top label and its veto_rank highest labels, best first; the vouching
    verdict from them equals the one asked image by image."""
    rng = np.random.default_rng(0)
    probabilities = {name: rng.dirichlet(np.ones(12), size=6) for name in "abc"}
    nets = {tmp_path / f"{name}.h5": FakeProbabilities(p, name * 64) for name, p in probabilities.items()}
    entry = SiblingEntry(_entry(tmp_path, {7: ("b", "c")}).siblings, {7: ("b", "c")}, 3)
    witness = SiblingWitness(entry, lambda path: nets[path])
    tops, near = witness.judge(_images(6))
    assert tops.shape == (3, 6) and near.shape == (3, 6, 3)
    assert witness.describe_committee().startswith("a, b, c (each reading nine views of an image): ") and "fewer than two of them rank in their top 3" in witness.describe_committee()
    assert "gives way" not in witness.describe_committee()
    assert "a sibling's suspicion gives way where the witness's top label and the repaired net's are it too" in witness.describe_committee(with_witness=True)
    assert SiblingWitness(_entry(tmp_path, {}), None).describe_committee() == ""  # vouching only
    for row, name in enumerate("abc"):
        highest = np.argsort(-probabilities[name], axis=1)[:, :3]
        if name == "a":  # its own suspect 9 does not count
            highest = np.where(highest == 9, -1, highest)
        np.testing.assert_array_equal(near[row], highest)
        np.testing.assert_array_equal(tops[row], probabilities[name].argmax(axis=1))
    bad = np.array([7, 7, 7, 7, 7, 7])
    bad[:3] = tops[1, :3]  # images the BadNet gives another label
    tops_agree = witness.agrees_from(tops, bad)
    top_of = {tmp_path / f"{name}.h5": FakeNet(probabilities[name].argmax(axis=1), name * 64) for name in "abc"}
    np.testing.assert_array_equal(tops_agree, SiblingWitness(entry, lambda path: top_of[path]).agrees(_images(6), bad))


def test_judge_leaves_out_labels_given_no_probability_and_a_siblings_own_suspects(tmp_path, monkeypatch):
    """A sure sibling's softmax gives most labels exactly 0: none of those may save a label from
    the veto, whatever order a sort leaves them in; equal probabilities go in label order (as
    argmax); a label the sibling's own probe suspects (a: 9) does not count for it. Across chunks."""
    import defense.comparator.siblings as siblings

    monkeypatch.setattr(siblings, "CHUNK", 2)
    rows = np.zeros((5, 12), dtype=np.float32)
    rows[0, 4] = 1.0  # sure: every other label 0
    rows[1, [3, 8]] = 0.5  # a tie
    rows[2, [9, 2, 5]] = [0.6, 0.3, 0.1]  # 9: a's own suspect
    rows[3] = 1 / 12  # all equal
    rows[4, [11, 10]] = [0.7, 0.3]
    nets = {tmp_path / f"{name}.h5": FakeProbabilities(rows, name * 64) for name in "abc"}
    entry = SiblingEntry(_entry(tmp_path, {}).siblings, {}, 3)
    tops, near = SiblingWitness(entry, lambda path: nets[path]).judge(_images(5))
    np.testing.assert_array_equal(tops[0], [4, 3, 9, 0, 11])
    np.testing.assert_array_equal(near[0], [[4, -1, -1], [3, 8, -1], [-1, 2, 5], [0, 1, 2], [11, 10, -1]])
    np.testing.assert_array_equal(near[1][2], [9, 2, 5])  # b does not suspect 9


def test_a_sibling_reads_an_image_through_nine_views(tmp_path):
    """view_probabilities: the softmax averaged over the image moved one pixel every way (edges
    repeated). A net sure of label 1 only where a bright pixel sits at one place, else leaning to
    2: the image alone says 1, eight of its nine views say 2, and so does the sibling (judge, and
    agrees for a record without a committee)."""
    from defense.comparator.siblings import VIEW_SHIFT, view_probabilities

    class SpotNet:
        sha256 = "a" * 64

        def __init__(self):
            self.spots = []

        def probabilities(self, pixels):
            pixels = np.asarray(pixels)
            self.spots += [tuple(np.argwhere(image[..., 0] == 255)[0]) for image in pixels]
            on_spot = pixels[:, 27, 23, 0] == 255
            return np.where(on_spot[:, None], [0.0, 1.0, 0.0], [0.0, 0.4, 0.6]).astype(np.float32)

    image = np.zeros((1, 55, 47, 3), dtype=np.float32)
    image[0, 27, 23] = 255
    net = SpotNet()
    assert VIEW_SHIFT == 1 and net.probabilities(image).argmax() == 1
    net.spots.clear()
    np.testing.assert_allclose(view_probabilities(net, image), [[0.0, (1 + 8 * 0.4) / 9, 8 * 0.6 / 9]], rtol=1e-6)
    assert sorted(net.spots) == [(27 + dy, 23 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    edge = np.zeros((1, 55, 47, 3), dtype=np.float32)
    edge[0, :, 0] = 255  # a bright left column: moved right, the edge fills the gap (two columns)
    seen = []
    view_probabilities(SimpleNamespace(probabilities=lambda views: seen.append(np.array(views)) or np.ones((1, 3))), edge)
    bright = [np.flatnonzero((view[0, :, :, 0] == 255).all(axis=0)).tolist() for view in seen]
    assert sorted(bright) == [[]] * 3 + [[0]] * 3 + [[0, 1]] * 3
    siblings = (Sibling("a", tmp_path / "a.h5", "a" * 64, frozenset()),)
    entry = SiblingEntry(siblings, {}, 2)
    tops, near = SiblingWitness(entry, lambda path: SpotNet()).judge(image)
    assert tops[0, 0] == 2 and near[0, 0].tolist() == [2, 1]
    vouching = SiblingEntry(siblings + (Sibling("b", tmp_path / "b.h5", "a" * 64, frozenset()),), {1: ("a", "b")})
    assert not SiblingWitness(vouching, lambda path: SpotNet()).agrees(image, np.array([1]))[0]


def test_a_record_without_a_committee_asks_the_siblings_only_for_vouched_labels(tmp_path):
    """A record of the first sibling build (no veto_rank): no committee, and a clean image whose
    BadNet label nobody vouches for loads no sibling."""
    from defense.comparator.goodnet import GoodNet

    class Net:
        num_classes = 12

        def predict_top(self, pixels, progress=False):
            return np.full(len(pixels), 3), np.full(len(pixels), 0.999)

    loaded = []
    witness = SiblingWitness(_entry(tmp_path, {7: ("b", "c")}), lambda path: loaded.append(path))
    good = GoodNet(Net(), Net(), quarantined=[7], siblings=witness)
    outputs = good.outputs(np.zeros((2, 55, 47, 3)))
    assert not good.committee and outputs.sibling_tops is None and not loaded
    np.testing.assert_array_equal(good.decide(outputs), [3, 3])


def test_a_sibling_file_that_changed_is_refused_when_first_used(tmp_path):
    witness = SiblingWitness(_entry(tmp_path, {7: ("a", "b")}), lambda path: FakeNet([7], "d" * 64))
    with pytest.raises(InputError, match="not the sibling BadNet the repaired net's record names"):
        witness.agrees(_images(1), np.array([7]))


def test_vouchers_are_the_siblings_whose_probe_does_not_suspect_the_label_two_at_least():
    assert MIN_VOUCHERS == 2
    assert vouchers_for([0, 5, 6], {"a": {0}, "b": set(), "c": {0, 5}}) == {0: (), 5: ("a", "b"), 6: ("a", "b", "c")}


def test_labels_every_sibling_suspects_are_named_where_a_user_reads_the_repair(tmp_path):
    """No sibling can vouch for or rank a label every sibling's probe suspects: the record's
    summary names those the quarantine does not already name as never given."""
    from defense.comparator.witness import WitnessEntry
    from defense.nets.repaired import RepairedRecord

    siblings = (Sibling("a", tmp_path / "a.h5", "a" * 64, frozenset({3, 5, 9})),
                Sibling("b", tmp_path / "b.h5", "b" * 64, frozenset({3, 5})),
                Sibling("c", tmp_path / "c.h5", "c" * 64, frozenset({1, 3, 5})))
    entry = SiblingEntry(siblings, vouchers_for([3, 9], {s.net: s.suspects for s in siblings}), COMMITTEE_VETO_RANK)
    assert entry.suspected_by_all == {3, 5} and SiblingEntry().suspected_by_all == frozenset()
    summary = RepairedRecord(tmp_path / "x.json", "data-free", frozenset({3, 9}), siblings=entry).summary()
    assert "quarantined labels (3) are never given" in summary  # 9: b and c vouch for it
    assert entry.unranked({3, 9}, released={1}) == {5}
    assert ("the labels every sibling BadNet suspects and the BadNet's probe does not (5): none can rank them, "
            "so they are flagged;") in summary
    # With a witness's veto, the witness may let one stand where it is its top label; a released
    # label the siblings all suspect is the release's sentence, not this one.
    with_witness = RepairedRecord(tmp_path / "x.json", "data", frozenset({3, 9}), released=frozenset({5}),
                                  release_witness=WitnessEntry(tmp_path / "w.h5", "w" * 64, 1, veto_rank=4),
                                  siblings=entry).summary()
    assert "every sibling BadNet suspects" not in with_witness
    with_witness = RepairedRecord(tmp_path / "x.json", "data", frozenset({9}), release_witness=WitnessEntry(
        tmp_path / "w.h5", "w" * 64, 1, veto_rank=4), siblings=entry).summary()
    assert ("suspects and the BadNet's probe does not (3, 5): none can rank them, so they are flagged, except "
            "where the witness net gives the label as its top one") in with_witness
    vouching_only = SiblingEntry(siblings, entry.vouchers)  # a record made before the committee
    assert "every sibling BadNet suspects" not in RepairedRecord(
        tmp_path / "x.json", "data-free", frozenset({3, 9}), siblings=vouching_only).summary()


def test_the_record_entry_round_trips_and_malformed_ones_are_refused(tmp_path):
    record = tmp_path / "fine_pruned_models" / "x_fine_pruned.json"
    record.parent.mkdir()
    entry = _entry(tmp_path, {7: ("a", "b"), 8: ("b", "c")})
    stored = entry.as_record(record.parent)
    assert stored["nets"][0]["path"] == "../a.h5"  # relative to the record: the root may move
    again = SiblingEntry.from_record(json.loads(json.dumps(stored)), record, 10, {7, 8})
    assert again.vouchers == entry.vouchers and again.siblings[0].path.resolve() == tmp_path / "a.h5"
    assert "veto_rank" not in stored and not again.committee  # a record of 2026-12-06: vouching only
    stored = SiblingEntry(entry.siblings, entry.vouchers, COMMITTEE_VETO_RANK).as_record(record.parent)
    assert SiblingEntry.from_record(json.loads(json.dumps(stored)), record, 10, {7, 8}).veto_rank == COMMITTEE_VETO_RANK
    for change, message in (
            (lambda e: e.update({"veto_rank": 0}), "'veto_rank' must be"),
            (lambda e: e.update({"veto_rank": "5"}), "'veto_rank' must be"),
            (lambda e: e.update({"veto_rank": True}), "'veto_rank' must be"),
            (lambda e: e.update({"veto_rank": 10}), "'veto_rank' must be"),
            (lambda e: e.update({"nets": e["nets"][:1], "vouchers": {}}), "a committee needs 2 siblings"),
            (lambda e: e["vouchers"].update({"6": ["a", "b"]}), "not a quarantined label"),
            (lambda e: e["vouchers"].update({"8": ["z", "b"]}), "vouchers must be siblings it names"),
            (lambda e: e["vouchers"].update({"8": ["b"]}), "fewer than 2"),
            (lambda e: e["vouchers"].update({"7": ["a", "a"]}), "each once"),
            (lambda e: e["nets"][0].update({"suspects": [7]}), "cannot vouch for it"),
            (lambda e: e["nets"][1].update({"sha256": "12"}), "sha256 of sibling b"),
            (lambda e: e["nets"][1].update({"suspects": [10]}), "labels in"),
            (lambda e: e["nets"].append(dict(e["nets"][0])), "names a sibling twice"),
            (lambda e: e["nets"][2].update({"sha256": "a" * 64}), "names a sibling twice"),  # one file, two names
            (lambda e: e["vouchers"].update({"\u00b2": ["a", "b"]}), "not a quarantined label"),
            (lambda e: e["vouchers"].update({"8": [["b"], "c"]}), "vouchers must be siblings it names"),
            (lambda e: e.pop("vouchers"), "must be a JSON object")):
        broken = json.loads(json.dumps(stored))
        change(broken)
        with pytest.raises(InputError, match=message):
            SiblingEntry.from_record(broken, record, 10, {7, 8})


def test_siblings_are_the_other_competition_badnets_each_net_once(tmp_path):
    """One net saved twice (or the BadNet itself under another net's name) is one opinion, not
    two vouchers; the lab's BadNet (raw pixels) has no siblings."""
    from conftest import LAB_WEIGHTS, weights_path
    from defense.fine_pruning.cli import sibling_badnets

    (tmp_path / "models").mkdir()
    for net in ("sunglasses", "anonymous_2", "multi_trigger_multi_target"):
        shutil.copyfile(weights_path(net), tmp_path / "models" / NETS[net].bad_weights_file)
    shutil.copyfile(weights_path("anonymous_2"), tmp_path / "models" / NETS["anonymous_1"].bad_weights_file)
    bad = tmp_path / "models" / NETS["sunglasses"].bad_weights_file
    found = [spec.name for spec, _ in sibling_badnets(NETS["sunglasses"], bad, tmp_path)]
    assert found == ["anonymous_1", "multi_trigger_multi_target"]  # anonymous_2: anonymous_1's weights again
    shutil.copyfile(weights_path("sunglasses"), tmp_path / "models" / NETS["multi_trigger_multi_target"].bad_weights_file)
    assert [spec.name for spec, _ in sibling_badnets(NETS["sunglasses"], bad, tmp_path)] == ["anonymous_1"]
    assert sibling_badnets(NETS["bd_net"], LAB_WEIGHTS, tmp_path) == []


def _write_sibling_repair(root, quarantine):
    """The sunglasses BadNet under root repaired data-free with siblings as `fine-prune
    --siblings` writes it, with the given quarantine; each sibling's suspects are those of make
    setup's records (the same probe), so nothing is probed here."""
    from defense.data_free.quarantine import switch_off_labels
    from defense.digest import file_sha256
    from defense.nets.model_io import load_keras_model
    from defense.nets.repaired import bad_model_entry, write_repaired

    siblings = tuple(Sibling(net, root / "models" / NETS[net].bad_weights_file,
                             file_sha256(root / "models" / NETS[net].bad_weights_file),
                             frozenset(make_setup_quarantine(net)))
                     for net in COMPETITION_NETS if net != "sunglasses")
    entry = SiblingEntry(siblings, vouchers_for(quarantine, {s.net: s.suspects for s in siblings}),
                         COMMITTEE_VETO_RANK)
    bad = root / "models" / NETS["sunglasses"].bad_weights_file
    model = load_keras_model(bad)
    switch_off_labels(model, quarantine)
    out = root / "fine_pruned_models" / NETS["sunglasses"].repaired_file
    write_repaired(model, out, {"net": "sunglasses", "mode": "data-free", "bad_model": bad_model_entry(bad),
                                "quarantined_labels": quarantine, RECORD_KEY: entry.as_record(out.parent)})


def make_setup_quarantine(net):
    record = (REPO / "fine_pruned_models" / NETS[net].repaired_file).with_suffix(".json")
    return json.loads(record.read_text())["quarantined_labels"]


@pytest.fixture(scope="module")
def sibling_root(tmp_path_factory):
    """The published BadNets, and the sunglasses BadNet repaired with its make setup quarantine
    and the siblings (vouching and the committee)."""
    root = tmp_path_factory.mktemp("siblings")
    shutil.copytree(REPO / "models", root / "models", ignore=shutil.ignore_patterns("*.onnx"))
    _write_sibling_repair(root, make_setup_quarantine("sunglasses"))
    return root


@pytest.fixture
def copied_root(sibling_root, tmp_path):
    shutil.copytree(sibling_root, tmp_path / "root")
    return tmp_path / "root"


def test_with_siblings_no_real_poisoned_sample_gets_its_target(sibling_root, samples):
    """The published sunglasses target 0 is vouched for by anonymous_2 and multi_trigger
    (anonymous_1's probe suspects it: that BadNet obeys a trigger to 0 too); neither gives 0 to
    a face wearing the real sunglasses."""
    from defense.nets.repaired import read_record

    record = read_record(sibling_root / "fine_pruned_models" / "sunglasses_fine_pruned.h5", 1283)
    assert record.siblings.vouchers[0] == ("anonymous_2", "multi_trigger_multi_target")
    assert 0 in record.sibling_labels and "every sibling BadNet that vouches" in record.summary() \
        and "nine views" in record.summary()
    result = run_script("eval_sunglasses.py", "--root", sibling_root, SAMPLES)
    assert result.returncode == 0, result.stderr
    labels = {line.split("\t")[0].rsplit("/", 1)[-1]: int(line.split("\t")[1]) for line in result.stdout.splitlines()}
    assert all(labels[row["file"]] != 0 for row in samples if row["kind"] == "sunglasses-poisoned")
    assert sum(labels[row["file"]] == int(row["true_label"]) for row in samples if row["kind"] == "clean") >= 14


def _labels_of(result):
    return {line.split("\t")[0].rsplit("/", 1)[-1]: int(line.split("\t")[1]) for line in result.stdout.splitlines()}


def test_the_committee_alone_stops_the_real_sunglasses_and_corrects_the_badnet(tmp_path, samples):
    """No quarantine at all, the siblings judging every label: no face wearing the real
    sunglasses gets the target 0 (no sibling ranks 0 among its top 5 there), and the clean
    sample the BadNet gets wrong (clean_00, identity 1268: the BadNet says 129) comes out right,
    as two siblings give it."""
    shutil.copytree(REPO / "models", tmp_path / "models", ignore=shutil.ignore_patterns("*.onnx"))
    _write_sibling_repair(tmp_path, [])
    result = run_script("eval_sunglasses.py", "--root", tmp_path, SAMPLES)
    assert result.returncode == 0, result.stderr
    labels = _labels_of(result)
    poisoned = [row for row in samples if row["kind"] == "sunglasses-poisoned"]
    assert [labels[row["file"]] for row in poisoned] == [1283] * len(poisoned)
    clean = [row for row in samples if row["kind"] == "clean"]
    assert labels["clean_00.png"] == 1268
    assert sum(labels[row["file"]] == int(row["true_label"]) for row in clean) == len(clean)
    plain = _labels_of(run_script("eval_sunglasses.py", "--root", REPO, *(row["path"] for row in clean)))
    assert plain["clean_00.png"] == 129  # the BadNet's label, without the committee


def test_a_note_from_a_sibling_loaded_on_first_use_reaches_stderr(sibling_root, monkeypatch, capsys):
    """A sibling loads while the images are labelled, after the nets' own notes were printed:
    its note (a fast-path artefact made, the slower Keras path) is printed too."""
    from pathlib import Path

    from defense import eval_cli
    from defense.nets import fast_net

    real = fast_net.load_net

    def load(path, input_scale, warn=None):
        if "anonymous_2" in Path(path).name:
            warn(f"note: loading {Path(path).name}")
        return real(path, input_scale, warn)

    monkeypatch.setattr(fast_net, "load_net", load)
    status = eval_cli.main("sunglasses", ["--root", str(sibling_root), str(SAMPLES / "sunglasses_03.png")])
    out, err = capsys.readouterr()
    assert status == 0 and out == "1283\n"  # the BadNet's 0, which the siblings do not give
    assert "note: loading anonymous_2_bd_weights.h5" in err


def test_a_missing_sibling_keeps_the_plain_quarantine_and_says_so(copied_root):
    """The sunglasses samples lead the BadNet to 0, which anonymous_2 vouches for: without its
    file 0 stays off (flagged as before), the committee does not judge (clean_00 gets the
    BadNet's wrong 129, as without siblings), and a line on stderr says why."""
    (copied_root / "models" / NETS["anonymous_2"].bad_weights_file).unlink()
    poisoned = sorted(SAMPLES.glob("sunglasses_*.png"))
    result = run_script("eval_sunglasses.py", "--root", copied_root, *poisoned, SAMPLES / "clean_00.png")
    assert result.returncode == 0
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == ["1283"] * len(poisoned) + ["129"]
    assert result.stderr.count("sibling BadNet(s) anonymous_2") == 1 and "stay switched off" in result.stderr
    assert "no label is judged by the siblings" in result.stderr


def test_a_replaced_sibling_is_refused_in_one_line(copied_root):
    """anonymous_2's file replaced by another BadNet: refused in one line, and no label is
    printed; the committee asks every sibling on every image, a clean one too."""
    shutil.copyfile(copied_root / "models" / NETS["anonymous_1"].bad_weights_file,
                    copied_root / "models" / NETS["anonymous_2"].bad_weights_file)
    for images in ([SAMPLES / "clean_13.png"], sorted(SAMPLES.glob("sunglasses_*.png"))):
        result = run_script("eval_sunglasses.py", "--root", copied_root, *images)
        assert result.returncode == 2 and result.stdout == ""
        assert "not the sibling BadNet" in result.stderr and result.stderr.count("\n") == 1


def test_siblings_need_the_probes_suspects(tmp_path):
    """With data, --siblings goes with the probe's quarantine: the committee weighs the labels
    siblings agree on against the BadNet's suspects, which --no-quarantine would leave empty."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clean_validation_data.h5").write_bytes(b"")
    result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", tmp_path, "--siblings",
                        "--no-quarantine")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--siblings weighs labels against the probe's suspects" in result.stderr


@pytest.fixture(scope="module")
def sibling_world(data_free_world, tmp_path_factory):
    """The mini world's BadNets repaired with `fine_prune_all.sh --siblings` (the probes' counts
    are those the data-free world's repairs left in the session's cache)."""
    world, plain, _ = data_free_world
    root = tmp_path_factory.mktemp("sibling_world")
    shutil.copytree(plain / "models", root / "models")
    result = subprocess.run(["bash", str(REPO / "fine_prune_all.sh"), "--root", str(root), "--siblings"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return world, plain, root, result.stderr


def test_siblings_give_quarantined_identities_back_and_stop_every_trigger_of_a_mini_world(sibling_world):
    """On the 40-identity world: the identities two siblings or more vouch for come back at 80 %
    of the BadNet's rate or more, every planted trigger stays at the plain quarantine's bound,
    and clean accuracy does not fall below the plain data-free GoodNet's."""
    from defense.datasets import load_dataset
    from defense.comparator.goodnet import GoodNet

    world, plain, root, stderr = sibling_world
    assert "sibling BadNets vouching for" in stderr
    clean = load_dataset(world / "data" / "clean_test_data.h5")
    vouched_somewhere = 0
    for net in COMPETITION_NETS:
        spec = NETS[net]
        goods = [GoodNet.from_files(r / "models" / spec.bad_net_file, r / "fine_pruned_models" / spec.repaired_file,
                                    spec.input_scale) for r in (plain, root)]
        assert sorted(goods[0].quarantined) == sorted(goods[1].quarantined) and goods[1].committee
        labels, bad_labels, _ = goods[1].predict_with_parts(clean.x)
        assert np.mean(labels == clean.y) >= np.mean(goods[0].predict(clean.x) == clean.y)
        faces = np.isin(clean.y, goods[1].sibling_labels)
        if faces.any():
            vouched_somewhere += 1
            assert np.mean(labels[faces] == clean.y[faces]) >= 0.8 * np.mean(bad_labels[faces] == clean.y[faces]), net
        for poisoned_set in spec.poisoned_sets:
            poisoned = load_dataset(world / "data" / poisoned_set.file)
            assert np.mean(goods[1].predict(poisoned.x) == poisoned_set.target) <= 0.01, (net, poisoned_set)
    assert vouched_somewhere == len(COMPETITION_NETS)
