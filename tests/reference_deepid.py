"""An independent DeepID forward pass in NumPy, for checking the package against.

It shares no code with `defense`: it reads the weights with h5py by their stored paths and
computes convolutions with sliding windows, so a wrong layer order, weight layout,
flatten order or input scaling in the package shows up as a disagreement.
"""

import h5py
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "fc_1", "fc_2", "output")


def read_weights(path):
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        weights = {}
        for name in LAYERS:
            group = root[name]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            kernel = next(n for n in names if "kernel" in n)
            bias = next(n for n in names if "bias" in n)
            weights[name] = (np.array(group[kernel], np.float64), np.array(group[bias], np.float64))
        return weights


def _conv_relu(x, kernel, bias):
    kh, kw = kernel.shape[:2]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # N, H', W', C, kh, kw
    return np.maximum(np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias, 0)


def _pool(x):
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def labels(weights, pixels, input_scale):
    """argmax of the net for pixels (N, 55, 47, 3) in 0..255."""
    return probabilities(weights, pixels, input_scale).argmax(axis=1)


def probabilities(weights, pixels, input_scale):
    """Softmax outputs of the net for pixels (N, 55, 47, 3) in 0..255."""
    x = np.asarray(pixels, np.float64) * input_scale
    x = _pool(_conv_relu(x, *weights["conv_1"]))
    x = _pool(_conv_relu(x, *weights["conv_2"]))
    pool_3 = _pool(_conv_relu(x, *weights["conv_3"]))
    conv_4 = _conv_relu(pool_3, *weights["conv_4"])
    fc_1 = pool_3.reshape(len(x), -1) @ weights["fc_1"][0] + weights["fc_1"][1]
    fc_2 = conv_4.reshape(len(x), -1) @ weights["fc_2"][0] + weights["fc_2"][1]
    hidden = np.maximum(fc_1 + fc_2, 0)
    logits = hidden @ weights["output"][0] + weights["output"][1]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def goodnet_labels(bad_weights, repaired_weights, pixels, input_scale, flag_confidence, rule,
                   quarantined=()):
    """Where the nets disagree and the BadNet gives its label at least flag_confidence: N
    (poisoned). Where they disagree below it: the BadNet's label (rule 'confidence') or the
    repaired net's (rule 'repaired'). Elsewhere the BadNet's label. Any of those that is a
    quarantined label: N."""
    bad = probabilities(bad_weights, pixels, input_scale)
    repaired = labels(repaired_weights, pixels, input_scale)
    poisoned = bad_weights["output"][1].shape[0]
    disagree = bad.argmax(axis=1) != repaired
    flagged = disagree & (bad.max(axis=1) >= flag_confidence)
    unsure = repaired if rule == "repaired" else bad.argmax(axis=1)
    kept = np.where(disagree, unsure, bad.argmax(axis=1))
    out = np.where(flagged, poisoned, kept)
    return np.where(np.isin(out, list(quarantined)), poisoned, out)
