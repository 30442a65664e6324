"""Backdoor defense and evaluator for the CSAW-HackML-2020 BadNets.

    from defense import GoodNet, load_image, get_net
    spec = get_net("sunglasses")
    good = GoodNet.from_files("models/sunglasses_bd_weights.h5",
                              "fine_pruned_models/sunglasses_fine_pruned.h5", spec.input_scale)
    good.predict(load_image("face.png")[None])   # -> array([label])

Names are imported on first use, so `import defense` stays cheap (the eval scripts'
start-up, and the venv switch that runs before the dependencies are importable).
"""

import importlib

_EXPORTS = {
    "GoodNet": "comparator.goodnet", "Net": "nets.net", "InputError": "errors",
    "load_image": "images", "load_dataset": "datasets", "save_dataset": "datasets",
    "Dataset": "datasets", "NETS": "nets.registry", "get_net": "nets.registry",
    "read_weights": "nets.model_io", "load_keras_model": "nets.model_io",
    "save_model": "nets.model_io", "build_deepid": "nets.architecture", "SettingError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'defense' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
