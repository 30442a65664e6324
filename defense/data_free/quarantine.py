"""Quarantined labels: the suspected attack targets a data-free repair rules out.

The repaired net is the BadNet with the quarantined labels' output units switched off (zero
weights, bias far below any logit), so it never gives those labels and disagrees with the
BadNet wherever the BadNet gives one. The labels are also listed in the JSON record beside
the repaired net, so that the GoodNet never gives one under any rule (goodnet.decide): a
faded trigger lowers the BadNet's confidence, not its label.
"""

import json
from pathlib import Path

from ..errors import InputError

SWITCHED_OFF_BIAS = -1e4  # DeepID logits stay within a few dozen of zero
RECORD_KEY = "quarantined_labels"


def switch_off_labels(model, labels):
    """Zero the output weights of labels and sink their biases, in place."""
    output = model.get_layer("output")
    kernel, bias = output.get_weights()
    kernel[:, list(labels)] = 0
    bias[list(labels)] = SWITCHED_OFF_BIAS
    output.set_weights([kernel, bias])


def record_path(repaired_path):
    return Path(repaired_path).with_suffix(".json")


def read_quarantined(repaired_path, num_classes):
    """The quarantined labels in the record beside a repaired net (frozenset, empty when the
    record is absent or lists none). A record that cannot be read is an error: silently
    dropping a quarantine would let its targets through."""
    path = record_path(repaired_path)
    if not path.is_file():
        return frozenset()
    try:
        labels = json.loads(path.read_text()).get(RECORD_KEY, [])
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(f"{path}: repaired net's record is not readable JSON ({e})") from None
    if not isinstance(labels, list) or not all(
            isinstance(label, int) and 0 <= label < num_classes for label in labels):
        raise InputError(f"{path}: '{RECORD_KEY}' must be a list of labels in [0, {num_classes})")
    return frozenset(labels)
