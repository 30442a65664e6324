"""Quarantined labels: the suspected attack targets a repair rules out.

The repaired net is the BadNet (or its Fine-Pruned repair) with the quarantined labels' output
units switched off (zero weights, a bias far below any logit), so it never gives those labels
and disagrees with the BadNet wherever the BadNet gives one. The labels are also listed in the
repaired net's record (repaired.py), so that the GoodNet never gives one under any rule
(goodnet.decide): a faded trigger lowers the BadNet's confidence, not its label.
"""

from ..nets.repaired import SWITCHED_OFF_BIAS


def switch_off_labels(model, labels):
    """Zero the output weights of labels and sink their biases, in place."""
    output = model.get_layer("output")
    kernel, bias = output.get_weights()
    kernel[:, list(labels)] = 0
    bias[list(labels)] = SWITCHED_OFF_BIAS
    output.set_weights([kernel, bias])


def restore_labels(model, source, labels):
    """Give labels their output units back from source's (the BadNet the net was repaired
    from), in place: the inverse of switch_off_labels for a net whose units were the source's."""
    output = model.get_layer("output")
    kernel, bias = output.get_weights()
    source_kernel, source_bias = source.get_layer("output").get_weights()
    kernel[:, list(labels)] = source_kernel[:, list(labels)]
    bias[list(labels)] = source_bias[list(labels)]
    output.set_weights([kernel, bias])
