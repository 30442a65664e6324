"""Pruning conv_3 channels of a DeepID net by their activation on clean data.

Fine-Pruning's observation: the channels that clean faces leave dormant are where a backdoor
can hide. Channels are ranked by their mean activation at pool_3 over clean validation images
and pruned from the least active up. Pruning channel c zeroes its conv_3 kernel and bias, so
its pool_3 map is exactly zero; everything before pool_3 is unchanged, so a pruning sweep
computes pool_3 once and reruns only the layers after it at each step.
"""

import numpy as np

BATCH_SIZE = 1024
HEAD_LAYERS = ("conv_4", "flatten_1", "flatten_2", "fc_1", "fc_2", "add_1", "activation_1", "output")


def pool_3_activations(model, pixels, input_scale):
    """pool_3 outputs (N, 5, 4, 60) for pixels (N, 55, 47, 3) in 0..255."""
    import keras

    trunk = keras.Model(model.input, model.get_layer("pool_3").output)
    return _batched(trunk, np.asarray(pixels, np.float32) * input_scale)


def rank_channels(activations):
    """conv_3 channels from least to most active (mean pool_3 activation), ties by index."""
    means = activations.mean(axis=(0, 1, 2))
    return np.argsort(means, kind="stable"), means


class Head:
    """The layers after pool_3, run on cached pool_3 activations with channels masked."""

    def __init__(self, model):
        import keras

        pool_3 = keras.Input(model.get_layer("pool_3").output.shape[1:])
        layer = {name: model.get_layer(name) for name in HEAD_LAYERS}
        branch_1 = layer["fc_1"](layer["flatten_1"](pool_3))
        branch_2 = layer["fc_2"](layer["flatten_2"](layer["conv_4"](pool_3)))
        hidden = layer["activation_1"](layer["add_1"]([branch_1, branch_2]))
        self.model = keras.Model(pool_3, layer["output"](hidden))

    def labels(self, activations, pruned):
        masked = activations.copy()
        masked[..., list(pruned)] = 0
        return _batched(self.model, masked).argmax(axis=1)


def sweep(model, activations, labels, order, poisoned=None):
    """Accuracy after pruning the first k channels of order, for k = 0..len(order).

    poisoned: optional (activations, target labels) of poisoned data, for the lab's plots
    only (never to choose anything): its attack success rate at each k is returned too.
    """
    head = Head(model)
    accuracy, attack_success = [], []
    for k in range(len(order) + 1):
        accuracy.append(float(np.mean(head.labels(activations, order[:k]) == labels)))
        if poisoned is not None:
            attack_success.append(float(np.mean(head.labels(poisoned[0], order[:k]) == poisoned[1])))
    return np.array(accuracy), (np.array(attack_success) if poisoned is not None else None)


def prune(model, channels):
    """A copy of model whose conv_3 channels are zeroed (kernel and bias)."""
    from ..nets.architecture import build_deepid

    pruned = build_deepid(num_classes=model.output_shape[-1])
    pruned.set_weights(model.get_weights())
    zero_channels(pruned, channels)
    return pruned


def zero_channels(model, channels):
    conv_3 = model.get_layer("conv_3")
    kernel, bias = conv_3.get_weights()
    kernel[..., list(channels)] = 0
    bias[list(channels)] = 0
    conv_3.set_weights([kernel, bias])


def depth_for_drop(accuracy, max_drop):
    """The most channels that can be pruned, in order, before validation accuracy first falls
    more than max_drop (a fraction, 0.04 = 4 points) below the unpruned accuracy."""
    below = np.flatnonzero(accuracy < accuracy[0] - max_drop)
    return int(below[0] - 1) if len(below) else len(accuracy) - 1


def _batched(model, x):
    outputs = [np.asarray(model(x[i:i + BATCH_SIZE], training=False)) for i in range(0, len(x), BATCH_SIZE)]
    return np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(model.output_shape[1:]))
