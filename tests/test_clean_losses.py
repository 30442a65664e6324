"""Where a GoodNet loses clean faces (`grade`'s last table), on hand-made outputs."""

from types import SimpleNamespace

import numpy as np
import pytest

from defense.grading.clean_losses import OUTCOMES, clean_face_outcomes
from defense.comparator.goodnet import RULES, NetOutputs, decide

POISONED = 10
QUARANTINED, RELEASED, WITNESSED = np.array([7, 8, 9]), np.array([5]), np.array([8])
VOUCHED = np.array([9])  # quarantined, given back on the sibling BadNets' word
VETO_RANK = 5


def good_labels(outputs, rule="repaired", veto=True, settle=True):
    """As a GoodNet whose witness has a veto rank decides (it settles disagreements too)."""
    return decide(outputs, rule, 0.99, QUARANTINED, POISONED, RELEASED, release_confidence=0.9,
                  witnessed=WITNESSED, veto_rank=VETO_RANK if veto else None, witness_settles=settle,
                  sibling_labels=VOUCHED)


def good_net(rule="repaired", veto_rank=VETO_RANK):
    """What clean_face_outcomes reads of a GoodNet (its labels decided under rule)."""
    return SimpleNamespace(quarantined=QUARANTINED, released=RELEASED, witnessed=WITNESSED, sibling_labels=VOUCHED,
                           release_confidence=0.9, poisoned_label=POISONED, veto_rank=veto_rank,
                           decide=lambda outputs, veto=True: good_labels(
                               outputs, rule, veto and veto_rank is not None, veto_rank is not None))


GOOD = good_net()

# One clean face per outcome, in OUTCOMES' order: right; the BadNet wrong; a face of the
# quarantined identity (not witnessed: verdicts do not give it back) both nets see right; a
# witnessed identity's face (the repaired net never gives it) refused by the witness; the same,
# refused by the blend test; a released identity's face, the repaired net unsure; the same,
# sure, refused by the witness; the same, refused by the blend test; the nets disagree, the
# BadNet sure (flagged); the nets disagree, the BadNet unsure (the repaired net's wrong label)
# (the witness's top label another in both: not settled); both nets right, the witness ranking
# the label beyond its veto rank; last, a face of the identity the siblings vouch for, where
# one of them gives another label.
TRUTH = np.array([3, 3, 7, 8, 8, 5, 5, 5, 4, 2, 3, 9])
OUTPUTS = NetOutputs(bad_labels=np.array([3, 1, 7, 8, 8, 5, 5, 5, 4, 2, 3, 9]),
                     bad_confidence=np.array([0.999, 0.999, 0.999, 0.999, 0.999, 0.999, 0.999, 0.999, 0.999, 0.6, 0.999, 0.999]),
                     repaired_labels=np.array([3, 1, 7, 6, 6, 5, 5, 5, 6, 6, 3, 6]),
                     repaired_confidence=np.array([0.99, 0.99, 0.99, 0.99, 0.99, 0.5, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99]),
                     release_witness_agrees=np.array([True, True, True, False, True, True, False, True, True, True, True, True]),
                     release_test_passed=np.array([True, True, True, False, False, True, False, False, True, True, True, True]),
                     witness_rank_bad=np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, VETO_RANK, 0]),
                     witness_rank_repaired=np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, VETO_RANK, 0]),
                     sibling_agrees=np.array([True] * 11 + [False]))


COMMITTEE_OUTCOMES = ("sibling BadNets agreed on another label", "sibling BadNets vetoed",
                      "sibling BadNets confirmed the BadNet's wrong label")


def test_each_lost_face_is_put_down_to_the_rule_that_cost_it():
    counts = clean_face_outcomes(OUTPUTS, good_labels(OUTPUTS), TRUTH, GOOD)
    assert list(counts) == list(OUTCOMES)
    # This GoodNet has no sibling committee (below).
    assert counts == {outcome: 0 if outcome in COMMITTEE_OUTCOMES else 1 for outcome in OUTCOMES}


def committee_good_net(labels_of, suspects, veto_rank=None):
    """What clean_face_outcomes reads of a GoodNet with a sibling committee (label 7 quarantined),
    its labels decided by labels_of(outputs, veto, committee)."""
    return SimpleNamespace(quarantined=np.array([7]), released=np.array([], dtype=int), witnessed=np.array([], dtype=int),
                           sibling_labels=np.array([], dtype=int), release_confidence=1.0, poisoned_label=POISONED,
                           veto_rank=veto_rank, committee=True, siblings=SimpleNamespace(suspects=suspects),
                           decide=labels_of)


def test_a_face_lost_to_the_sibling_committee_is_the_committees():
    """A data-free GoodNet whose siblings judge every label (siblings.py): a face all agree on;
    a face the BadNet gets wrong, corrected by two siblings; a right face two siblings replace by
    another label; a right face no sibling ranks high (vetoed)."""
    suspects = (frozenset({9}), frozenset(), frozenset())

    def labels_of(outputs, veto=True, committee=True):
        return decide(outputs, "repaired", 0.99, [7], POISONED, sibling_suspects=suspects if committee else None)

    good = committee_good_net(labels_of, suspects)
    tops = np.array([[3, 3, 4, 1], [3, 3, 4, 2], [3, 2, 3, 5]])
    outputs = NetOutputs(np.array([3, 1, 3, 3]), np.full(4, 0.999), np.array([3, 1, 3, 3]), np.full(4, 0.99),
                         sibling_tops=tops, sibling_near=np.stack([tops, tops], axis=2))
    truth = np.array([3, 3, 3, 3])
    labels = labels_of(outputs)
    np.testing.assert_array_equal(labels, [3, 3, 4, POISONED])
    counts = clean_face_outcomes(outputs, labels, truth, good)
    assert counts["right"] == 2 and counts["sibling BadNets agreed on another label"] == 1
    assert counts["sibling BadNets vetoed"] == 1 and sum(counts.values()) == 4


def test_a_face_lost_to_the_committee_and_the_witness_veto_is_the_committees():
    """A repair with data and --siblings: the committee judges first, the witness's veto last.
    Both nets right (3); two siblings give 4, which the veto then flags (a label neither net gave,
    unranked); the witness ranks 3 beyond its veto too, so either rule alone loses the face:
    put down to the committee, which decided first. A second face, the siblings agreeing on 3, the
    witness ranking it beyond its veto: the veto's."""
    suspects = (frozenset(),) * 3

    def labels_of(outputs, veto=True, committee=True):
        return decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=VETO_RANK if veto else None,
                      witness_settles=True, sibling_suspects=suspects if committee else None)

    good = committee_good_net(labels_of, suspects, VETO_RANK)
    tops = np.array([[4, 3], [4, 3], [2, 3]])
    outputs = NetOutputs(np.array([3, 3]), np.full(2, 0.999), np.array([3, 3]), np.full(2, 0.99),
                         witness_rank_bad=np.full(2, VETO_RANK), witness_rank_repaired=np.full(2, VETO_RANK),
                         sibling_tops=tops, sibling_near=np.stack([tops, tops], axis=2))
    labels = labels_of(outputs)
    np.testing.assert_array_equal(labels, [POISONED, POISONED])
    np.testing.assert_array_equal(labels_of(outputs, veto=False), [4, 3])
    np.testing.assert_array_equal(labels_of(outputs, committee=False), [POISONED, POISONED])
    counts = clean_face_outcomes(outputs, labels, np.array([3, 3]), good)
    assert counts["sibling BadNets agreed on another label"] == 1 and counts["witness vetoed"] == 1
    assert sum(counts.values()) == 2


def test_a_face_the_siblings_settle_for_the_badnets_wrong_label_is_the_committees():
    """The nets disagree on a face of 3: the BadNet gives 6 (unsure), the repaired net 3; two
    siblings give 6 as their top label, so the siblings settle it for the BadNet's wrong 6. Lost
    to the committee (the repaired net's right label without it), not put down to the BadNet."""
    suspects = (frozenset(),) * 3

    def labels_of(outputs, veto=True, committee=True):
        return decide(outputs, "repaired", 0.99, [7], POISONED, sibling_suspects=suspects if committee else None)

    good = committee_good_net(labels_of, suspects)
    tops = np.array([[6], [6], [3]])
    outputs = NetOutputs(np.array([6]), np.array([0.6]), np.array([3]), np.array([0.9]),
                         sibling_tops=tops, sibling_near=np.stack([tops, tops], axis=2))
    labels = labels_of(outputs)
    np.testing.assert_array_equal(labels, [6])
    counts = clean_face_outcomes(outputs, labels, np.array([3]), good)
    assert counts["sibling BadNets confirmed the BadNet's wrong label"] == 1 and sum(counts.values()) == 1


def test_a_face_the_siblings_settle_wrong_and_the_veto_flags_is_still_the_committees():
    """As above with a witness whose veto then flags the settled 6 (ranked at the veto rank): the
    face is lost to the siblings' settling, which decided first, not to their veto."""
    suspects = (frozenset(),) * 3

    def labels_of(outputs, veto=True, committee=True):
        return decide(outputs, "repaired", 0.99, [7], POISONED, veto_rank=VETO_RANK if veto else None,
                      witness_settles=True, sibling_suspects=suspects if committee else None)

    good = committee_good_net(labels_of, suspects, VETO_RANK)
    tops = np.array([[6], [6], [3]])
    outputs = NetOutputs(np.array([6]), np.array([0.6]), np.array([3]), np.array([0.9]),
                         witness_rank_bad=np.array([VETO_RANK]), witness_rank_repaired=np.array([0]),
                         sibling_tops=tops, sibling_near=np.stack([tops, tops], axis=2))
    labels = labels_of(outputs)
    np.testing.assert_array_equal(labels, [POISONED])
    counts = clean_face_outcomes(outputs, labels, np.array([3]), good)
    assert counts["sibling BadNets confirmed the BadNet's wrong label"] == 1 and sum(counts.values()) == 1


def test_a_released_face_that_passes_every_gate_is_right():
    outputs = NetOutputs(OUTPUTS.bad_labels, OUTPUTS.bad_confidence, OUTPUTS.repaired_labels,
                         OUTPUTS.repaired_confidence, np.ones(len(TRUTH), dtype=bool),
                         np.ones(len(TRUTH), dtype=bool), np.zeros(len(TRUTH), dtype=int), np.zeros(len(TRUTH), dtype=int))
    counts = clean_face_outcomes(outputs, good_labels(outputs), TRUTH, GOOD)
    # The witness's top label everywhere the BadNet's: the sure BadNet's disagreement is settled
    # right; the unsure one's keeps the repaired net's wrong label.
    assert counts["right"] == 7 and counts["nets disagree, repaired net's label"] == 1
    assert counts["nets disagree, flagged"] == 0
    assert counts["released identity, blend test refused"] == 0
    assert counts["released identity, witness refused"] == 0
    assert counts["witnessed identity, witness refused"] == counts["witnessed identity, blend test refused"] == 0
    assert counts["quarantined identity"] == 1  # not witnessed: never given back
    # Without the siblings' verdict (none given here) the vouched identity is not given back.
    assert counts["quarantined identity, siblings refused"] == 1


def test_a_vouched_face_the_siblings_agree_on_is_right():
    outputs = NetOutputs(**{**OUTPUTS.__dict__, "sibling_agrees": np.ones(len(TRUTH), dtype=bool)})
    counts = clean_face_outcomes(outputs, good_labels(outputs), TRUTH, GOOD)
    assert counts["right"] == 2 and counts["quarantined identity, siblings refused"] == 0


@pytest.mark.parametrize("rule", RULES)
def test_every_face_is_counted_once_under_every_rule(rule):
    rng = np.random.default_rng(0)
    n = 2000
    truth = rng.integers(0, 10, n)
    # The nets mostly right, now and then wrong, each on its own; the repaired net never gives
    # a quarantined label (its unit is off).
    bad = np.where(rng.uniform(size=n) < 0.8, truth, rng.integers(0, 10, n))
    repaired = np.where(rng.uniform(size=n) < 0.8, bad, rng.integers(0, 10, n))
    repaired = np.where(np.isin(repaired, QUARANTINED), 0, repaired)
    witness_agrees = rng.uniform(size=n) < 0.7
    # A third of the BadNet's labels sure, so that some disagreements are settled.
    bad_confidence = np.where(rng.uniform(size=n) < 0.3, 0.999, rng.uniform(0.5, 0.99, n))
    outputs = NetOutputs(bad, bad_confidence, repaired, rng.uniform(0.5, 1, n),
                         witness_agrees, witness_agrees & (rng.uniform(size=n) < 0.5),
                         rng.integers(0, 2 * VETO_RANK, n), rng.integers(0, 2 * VETO_RANK, n),
                         rng.uniform(size=n) < 0.5)
    labels = good_labels(outputs, rule)
    counts = clean_face_outcomes(outputs, labels, truth, good_net(rule))
    assert sum(counts.values()) == n
    assert counts["right"] == np.sum(labels == truth)
    without_veto = good_labels(outputs, rule, veto=False)
    vetoed = (labels == POISONED) & (without_veto == truth)
    assert counts["BadNet wrong too"] == np.sum((bad != truth) & (labels != truth) & ~vetoed)
    assert counts["witness vetoed"] == np.sum(vetoed) > 0
    # The settling never takes a right label away: it lifts flags only (a sure BadNet's).
    unsettled = good_labels(outputs, rule, settle=False)
    assert np.all((labels == unsettled) | (unsettled == POISONED))
    assert np.any(labels != unsettled) == (rule != "original")
    gates = ("repaired net unsure", "witness refused", "blend test refused")
    assert all(counts[f"released identity, {gate}"] > 0 for gate in gates)
    assert counts["quarantined identity"] > 0 and counts["quarantined identity, siblings refused"] > 0
    assert all(counts[f"witnessed identity, {gate}"] > 0 for gate in gates[1:])

    # Where the BadNet is unsure, only "repaired" gives the repaired net's (wrong) label:
    # "original" flags, "confidence" gives the BadNet's.
    assert (counts["nets disagree, repaired net's label"] > 0) == (rule == "repaired")


def test_a_released_face_the_nets_disagree_on_is_the_comparators_loss():
    """Under "confidence" the comparator hands out the unsure BadNet's label, the released
    identity; the release flags it (both nets must give it): counted as a disagreement, not
    as a gate, under every rule."""
    outputs = NetOutputs(bad_labels=np.array([5]), bad_confidence=np.array([0.6]),
                         repaired_labels=np.array([6]), repaired_confidence=np.array([0.99]),
                         release_witness_agrees=np.array([True]), release_test_passed=np.array([True]),
                         witness_rank_bad=np.array([0]), witness_rank_repaired=np.array([0]))
    for rule in RULES:
        labels = good_labels(outputs, rule)
        counts = clean_face_outcomes(outputs, labels, np.array([5]), good_net(rule))
        expected = "nets disagree, repaired net's label" if rule == "repaired" else "nets disagree, flagged"
        assert counts[expected] == 1, rule


def test_the_grade_table_gives_each_outcome_in_percent_of_the_nets_faces():
    from defense.grading.grade import format_losses

    counts = clean_face_outcomes(OUTPUTS, good_labels(OUTPUTS), TRUTH, GOOD)
    lines = format_losses({"sunglasses": counts}).splitlines()
    assert lines[0] == "| net | " + " | ".join(OUTCOMES) + " |"
    assert lines[2] == "| sunglasses | " + " | ".join("0.00 %" if o in COMMITTEE_OUTCOMES else "8.33 %"
                                                      for o in OUTCOMES) + " |"


def test_labels_no_rule_would_give_are_refused():
    """A GoodNet label the comparator cannot have given (a face both nets see right, not
    suspected, yet flagged): a rule this count does not know of, said, not miscounted."""
    labels = good_labels(OUTPUTS)
    labels[0] = POISONED
    with pytest.raises(ValueError, match="no known rule"):
        clean_face_outcomes(OUTPUTS, labels, TRUTH, GOOD)


def test_a_face_settled_for_the_badnets_wrong_label_was_flagged_without_it():
    """The BadNet sure and wrong (1), the repaired net right (3), the witness's top label 1: settled
    to 1, where without the settling the face is flagged; the BadNet's loss. The same BadNet unsure:
    not settled, the repaired net's 3 stands, right."""
    outputs = NetOutputs(np.array([1, 1]), np.array([0.999, 0.6]), np.array([3, 3]), np.array([0.99, 0.99]),
                         witness_rank_bad=np.array([0, 0]), witness_rank_repaired=np.array([1, 1]))
    labels = good_labels(outputs)
    np.testing.assert_array_equal(labels, [1, 3])
    np.testing.assert_array_equal(good_labels(outputs, settle=False), [POISONED, 3])
    counts = clean_face_outcomes(outputs, labels, np.array([3, 3]), GOOD)
    assert counts["BadNet wrong too"] == 1 and counts["right"] == 1


def test_a_face_lost_to_the_witness_veto_alone_is_the_vetos_loss():
    """Both nets right and sure, the witness ranking the label at its veto rank: flagged, and
    put down to the veto; without a veto rank the face is right. Without the witness's ranks a
    GoodNet with a veto gives no label at all (fails closed)."""
    outputs = NetOutputs(np.array([3, 3]), np.array([0.999, 0.999]), np.array([3, 3]), np.array([0.99, 0.99]),
                         witness_rank_bad=np.array([VETO_RANK - 1, VETO_RANK]),
                         witness_rank_repaired=np.array([VETO_RANK - 1, VETO_RANK]))
    labels = good_labels(outputs)
    np.testing.assert_array_equal(labels, [3, POISONED])
    counts = clean_face_outcomes(outputs, labels, np.array([3, 3]), GOOD)
    assert counts["right"] == 1 and counts["witness vetoed"] == 1
    assert (good_labels(outputs, veto=False) == 3).all()
    outputs.witness_rank_bad = None
    np.testing.assert_array_equal(good_labels(outputs), [POISONED, POISONED])
    outputs.witness_rank_bad = np.array([0.0, 0.0])  # not ranks
    np.testing.assert_array_equal(good_labels(outputs), [POISONED, POISONED])
