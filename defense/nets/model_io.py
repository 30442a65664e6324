"""Reading and writing DeepID model files without running any code stored in them.

Two forms are read: Keras-2 full-model .h5 files (`model.save`, with a `model_config`
attribute and a `model_weights` group; the competition's `*_bd_net.h5`, saved by Keras
2.3.1) and weight-only .h5 files (`save_weights`; the `*_bd_weights.h5`). Keras 3's own
`.h5` saves have the same layout. The stored config is only ever read as JSON and checked
against the DeepID graph; it is never given to Keras' deserializer, which would run the
Python bytecode a Lambda layer carries. The net is then rebuilt from `architecture.py`
and the weights copied in by layer name.
"""

import json
from pathlib import Path

import numpy as np

from .architecture import GRAPH, INPUT_SHAPE, LAYER_CONFIG, expected_weight_shapes
from ..atomic import atomic_path
from ..errors import InputError, reason


def read_weights(path):
    """Layer name -> (kernel, bias) arrays from a DeepID model file, after every check.

    Raises InputError naming the file and the reason for anything that is not a readable
    DeepID model: missing, not HDF5, truncated, code-carrying layers, other architecture.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                check_config(_decode(f.attrs["model_config"]), path)
            root = f["model_weights"] if "model_weights" in f else f
            return _read_layer_weights(root, path)
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        # h5py reports a non-HDF5, truncated or damaged file with any of these.
        raise InputError(f"{path}: not a readable HDF5 model file ({reason(e)})") from None


def num_classes(path):
    """How many identities the DeepID model file labels (its output layer's width)."""
    return read_weights(path)["output"][1].shape[0]


def check_config(config_text, path):
    """Refuse a stored model config that is not exactly the DeepID graph.

    Lambda and custom layers are refused by class name before anything else, so a file
    that carries code is rejected with a message that says so.
    """
    try:
        config = json.loads(config_text)
        layers = config["config"]["layers"]
        by_name = {layer["config"].get("name", layer.get("name")): layer for layer in layers}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"{path}: model config is not valid Keras JSON") from None
    for name, layer in by_name.items():
        cls = layer.get("class_name")
        if cls == "Lambda":
            raise InputError(f"{path}: refused: layer {name!r} is a Lambda layer, which carries "
                             "Python code; model files are never allowed to run code here")
        if cls not in {c for c, _ in GRAPH.values()}:
            raise InputError(f"{path}: refused: layer {name!r} has class {cls!r}, "
                             "which is not part of the DeepID architecture")
    if set(by_name) != set(GRAPH):
        missing, extra = sorted(set(GRAPH) - set(by_name)), sorted(set(by_name) - set(GRAPH))
        raise InputError(f"{path}: not the DeepID architecture (missing layers {missing}, "
                         f"unexpected layers {extra})")
    for name, (cls, inputs) in GRAPH.items():
        layer = by_name[name]
        if layer["class_name"] != cls:
            raise InputError(f"{path}: layer {name!r} is a {layer['class_name']}, expected {cls}")
        found_inputs = tuple(_inbound_layer_names(layer.get("inbound_nodes", [])))
        if name != "input" and found_inputs != inputs:
            raise InputError(f"{path}: layer {name!r} takes {list(found_inputs)}, "
                             f"expected {list(inputs)}: not the DeepID graph")
        for key, want in LAYER_CONFIG.get(name, {}).items():
            got = _normalise(layer["config"].get(key))
            if got not in (want if isinstance(want, frozenset) else {want}):
                raise InputError(f"{path}: layer {name!r} has {key}={got!r}, expected {want!r}")
    input_config = by_name["input"]["config"]
    shape = input_config.get("batch_input_shape") or input_config.get("batch_shape")
    if shape is None or tuple(shape[1:]) != INPUT_SHAPE:
        raise InputError(f"{path}: input shape {shape and tuple(shape[1:])}, expected {INPUT_SHAPE}")


def load_keras_model(path):
    """A Keras DeepID model with the weights of the file at path (imports Keras)."""
    from .architecture import build_deepid

    weights = read_weights(path)
    model = build_deepid(num_classes=weights["output"][1].shape[0])
    for name, (kernel, bias) in weights.items():
        model.get_layer(name).set_weights([kernel, bias])
    return model


def save_model(model, path):
    """Save a Keras model as a full-model .h5 file, atomically: the old file stays intact
    until the new one is complete."""
    with atomic_path(path) as tmp:
        save_model_to(model, tmp)


def save_model_to(model, path):
    """Save a Keras model as a full-model .h5 file at path as it is (no rename): for a caller
    that renames it into place itself (repaired.write_repaired). Returns the file's sha256,
    the stamp its record and artefact carry."""
    import logging

    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    # Keras warns that .h5 is a legacy format; it is the competition's format, on purpose.
    absl_logger.setLevel(logging.ERROR)
    try:
        model.save(path, include_optimizer=False)  # a net to run, not a training checkpoint
    finally:
        absl_logger.setLevel(level)
    from ..digest import file_sha256

    return file_sha256(path)


def save_weights(model, path):
    """Save the weights alone in the Keras-2 `save_weights` layout of the competition's
    `*_bd_weights.h5` (Keras 3 writes only its own `.weights.h5` layout), atomically."""
    import h5py

    names = [layer.name for layer in model.layers]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.array(names, dtype="S")
        f.attrs["backend"], f.attrs["keras_version"] = "tensorflow", "2.3.1"
        for layer in model.layers:
            group = f.create_group(layer.name)
            weight_names = [f"{layer.name}/{kind}:0" for kind in ("kernel", "bias")][:len(layer.weights)]
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")
            for weight_name, value in zip(weight_names, layer.get_weights()):
                group.create_dataset(weight_name, data=value)


def _read_layer_weights(root, path):
    weight_sets = {}
    for name in ("conv_1", "conv_2", "conv_3", "conv_4", "fc_1", "fc_2", "output"):
        if name not in root:
            raise InputError(f"{path}: no weights for layer {name!r}: not a DeepID model file")
        group = root[name]
        arrays = {}
        for weight_name in (_decode(n) for n in group.attrs.get("weight_names", [])):
            kind = weight_name.rsplit("/", 1)[-1].split(":")[0]
            arrays[kind] = np.asarray(group[weight_name], dtype=np.float32)
        if set(arrays) != {"kernel", "bias"}:
            raise InputError(f"{path}: layer {name!r} holds weights {sorted(arrays)}, "
                             "expected kernel and bias")
        weight_sets[name] = (arrays["kernel"], arrays["bias"])
    num_classes = weight_sets["output"][1].shape[0]
    if num_classes < 2:
        raise InputError(f"{path}: output layer has {num_classes} classes")
    for name, shapes in expected_weight_shapes(num_classes).items():
        got = tuple(a.shape for a in weight_sets[name])
        if got != shapes:
            raise InputError(f"{path}: layer {name!r} has weight shapes {got}, expected {shapes}: "
                             "not a DeepID net for 55x47 RGB input")
        if not all(np.isfinite(a).all() for a in weight_sets[name]):
            raise InputError(f"{path}: layer {name!r} holds NaN or infinite weights")
    return weight_sets


def _inbound_layer_names(node):
    """Names of the layers feeding a layer, from a Keras 2 or a Keras 3 config."""
    if isinstance(node, dict):
        if "keras_history" in node:  # Keras 3: {"keras_history": [layer, node, tensor]}
            yield node["keras_history"][0]
            return
        for value in node.values():
            yield from _inbound_layer_names(value)
    elif isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int):
            yield node[0]  # Keras 2: [layer, node index, tensor index, kwargs]
            return
        for item in node:
            yield from _inbound_layer_names(item)


def _normalise(value):
    return tuple(value) if isinstance(value, list) else value


def _decode(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
