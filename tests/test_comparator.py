"""The comparator's rules on hand-made outputs of the two nets."""

import dataclasses

import numpy as np
import pytest

from defense.comparator.goodnet import RULES, NetOutputs, decide

# Seven images: agree; disagree, BadNet sure; disagree, BadNet unsure; disagree, BadNet
# unsure of a quarantined label; agree on a quarantined label; disagree, BadNet sure of a
# quarantined label; disagree, BadNet unsure, the repaired net giving a quarantined label (a
# record that lists a label the repaired net was not made to refuse).
OUTPUTS = NetOutputs(bad_labels=np.array([3, 4, 0, 7, 7, 7, 2]),
                     bad_confidence=np.array([0.6, 0.999, 0.7, 0.5, 0.999, 0.999, 0.6]),
                     repaired_labels=np.array([3, 2, 9, 1, 7, 1, 7]))
POISONED = 10
EXPECTED = {
    "original": [3, POISONED, POISONED, POISONED, POISONED, POISONED, POISONED],
    "confidence": [3, POISONED, 0, POISONED, POISONED, POISONED, 2],
    "repaired": [3, POISONED, 9, 1, POISONED, POISONED, POISONED],
}


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_on_hand_made_outputs(rule):
    labels = decide(OUTPUTS, rule, flag_confidence=0.99, quarantined=np.array([7]),
                    poisoned_label=POISONED)
    np.testing.assert_array_equal(labels, EXPECTED[rule])


def test_flag_confidence_zero_makes_every_rule_the_original():
    for rule in RULES:
        labels = decide(OUTPUTS, rule, 0.0, np.array([7]), POISONED)
        np.testing.assert_array_equal(labels, EXPECTED["original"])


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown comparator rule"):
        decide(OUTPUTS, "majority", 0.99, np.array([7]), POISONED)


@pytest.mark.parametrize("rule", RULES)
def test_no_rule_ever_gives_a_quarantined_label(rule):
    rng = np.random.default_rng(0)
    outputs = NetOutputs(bad_labels=rng.integers(0, 6, 500), bad_confidence=rng.uniform(0, 1, 500),
                         repaired_labels=rng.integers(0, 6, 500))
    labels = decide(outputs, rule, 0.99, np.array([1, 4]), POISONED)
    disagree = outputs.bad_labels != outputs.repaired_labels
    assert not np.isin(labels, [1, 4]).any()
    if rule != "original":  # which flags every disagreement
        assert np.isin(labels[disagree], [0, 2, 3, 5]).any()


@pytest.mark.parametrize("rule, flag_confidence, field", [
    ("majority", 0.99, "GoodNet.rule"), ("repaired", 1.5, "GoodNet.flag_confidence"),
    ("repaired", float("nan"), "GoodNet.flag_confidence"), ("repaired", "0.9", "GoodNet.flag_confidence"),
])
def test_the_comparator_checks_its_settings_naming_the_field(rule, flag_confidence, field):
    from defense.errors import SettingError
    from defense.comparator.goodnet import check_settings

    with pytest.raises(SettingError, match=field):
        check_settings(rule, flag_confidence)


# Released labels (Fine-Pruning's suspects of the BadNet alone): five images, all with label 7
# from the BadNet: both nets give 7, repaired net sure; both give 7, repaired net unsure; the
# repaired net disagrees, BadNet unsure (the "repaired" rule hands out the repaired net's
# label); the repaired net gives 7 but the BadNet another label, unsure; then a plain agreement.
RELEASE_OUTPUTS = NetOutputs(bad_labels=np.array([7, 7, 7, 3, 2]),
                             bad_confidence=np.array([0.999, 0.999, 0.5, 0.5, 0.999]),
                             repaired_labels=np.array([7, 7, 1, 7, 2]),
                             repaired_confidence=np.array([0.95, 0.6, 0.9, 0.99, 0.99]),
                             release_witness_agrees=np.ones(5, dtype=bool),
                             release_test_passed=np.ones(5, dtype=bool))


@pytest.mark.parametrize("rule", RULES)
def test_a_released_label_comes_out_only_where_both_nets_give_it_and_the_repaired_is_sure(rule):
    labels = decide(RELEASE_OUTPUTS, rule, 0.99, np.array([], np.int64), POISONED,
                    released=np.array([7]), release_confidence=0.9)
    assert labels[0] == 7 and labels[1] == POISONED and labels[4] == 2
    # The repaired net alone never gives it back ("confidence" keeps the unsure BadNet's 3).
    assert labels[3] == {"original": POISONED, "confidence": 3, "repaired": POISONED}[rule]
    assert labels[2] == {"original": POISONED, "confidence": POISONED, "repaired": 1}[rule]


@pytest.mark.parametrize("gate", ["release_witness_agrees", "release_test_passed"])
@pytest.mark.parametrize("verdict", [np.array([False, True, True, True, True]), None, np.array([True])])
def test_a_released_label_needs_the_witness_and_the_blend_tests_verdicts(gate, verdict):
    """Either verdict failed, missing or of another length (a caller that built the outputs by
    hand): the label does not come out."""
    outputs = dataclasses.replace(RELEASE_OUTPUTS, **{gate: verdict})
    labels = decide(outputs, "repaired", 0.99, np.array([], np.int64), POISONED,
                    released=np.array([7]), release_confidence=0.9)
    assert labels[0] == POISONED and labels[4] == 2


def test_released_labels_need_the_repaired_nets_confidence():
    outputs = NetOutputs(RELEASE_OUTPUTS.bad_labels, RELEASE_OUTPUTS.bad_confidence,
                         RELEASE_OUTPUTS.repaired_labels,  # no confidence given: nothing released
                         release_witness_agrees=np.ones(5, dtype=bool),
                         release_test_passed=np.ones(5, dtype=bool))
    labels = decide(outputs, "repaired", 0.99, np.array([], np.int64), POISONED,
                    released=np.array([7]), release_confidence=0.9)
    assert not (labels == 7).any()


def test_labels_passed_as_sets_are_matched_as_arrays_are():
    """RepairedRecord keeps its labels as frozensets; np.isin would match nothing in one."""
    as_arrays = decide(RELEASE_OUTPUTS, "repaired", 0.99, np.array([2]), POISONED,
                       released=np.array([7]), release_confidence=0.9)
    as_sets = decide(RELEASE_OUTPUTS, "repaired", 0.99, frozenset({2}), POISONED,
                     released=frozenset({7}), release_confidence=0.9)
    np.testing.assert_array_equal(as_sets, as_arrays)
    assert as_sets[4] == POISONED and as_sets[1] == POISONED
