"""The comparator's rules on hand-made outputs of the two nets."""

import numpy as np
import pytest

from defense.goodnet import RULES, NetOutputs, decide

# Five images: agree; disagree, BadNet sure; disagree, BadNet unsure; disagree, unsure on a
# quarantined label; agree on a quarantined label.
OUTPUTS = NetOutputs(bad_labels=np.array([3, 4, 0, 7, 7]),
                     bad_confidence=np.array([0.6, 0.999, 0.7, 0.5, 0.999]),
                     repaired_labels=np.array([3, 2, 9, 1, 7]))
POISONED = 10
EXPECTED = {
    "original": [3, POISONED, POISONED, POISONED, 7],
    "confidence": [3, POISONED, 0, POISONED, 7],
    "repaired": [3, POISONED, 9, POISONED, 7],
}


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_on_hand_made_outputs(rule):
    labels = decide(OUTPUTS, rule, flag_confidence=0.99, quarantined=np.array([7]),
                    poisoned_label=POISONED)
    np.testing.assert_array_equal(labels, EXPECTED[rule])


def test_flag_confidence_zero_makes_every_rule_the_original():
    for rule in RULES:
        labels = decide(OUTPUTS, rule, 0.0, np.array([], dtype=np.int64), POISONED)
        np.testing.assert_array_equal(labels, EXPECTED["original"])


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown comparator rule"):
        decide(OUTPUTS, "majority", 0.99, np.array([7]), POISONED)
