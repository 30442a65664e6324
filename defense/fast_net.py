"""The fast path: a DeepID net exported to ONNX and run by ONNX Runtime.

Importing TensorFlow and building Keras nets costs seconds per process; ONNX Runtime starts
in a fraction of that. Each model file X.h5 gets X.onnx beside it (made by `make setup`,
`fine_prune_all.sh` and `python3 -m defense export-onnx`), stamped with X.h5's sha256: an
artefact whose stamp does not match its model file is never used. Without a usable artefact
the Keras path runs instead, after one warning line.
"""

import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .digest import file_sha256
from .errors import reason

BATCH_SIZE = 1024
STAMP_KEY = "source_sha256"


def onnx_path(model_path):
    return Path(model_path).with_suffix(".onnx")


def export_onnx(model_path):
    """Write model_path's .onnx artefact (loads the model through the safe loader)."""
    import warnings

    import onnx

    from .model_io import load_keras_model

    model = load_keras_model(model_path)
    model(np.zeros((1, 55, 47, 3), np.float32))  # Keras exports only a net that has run
    target = onnx_path(model_path)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf2onnx's NumPy deprecation chatter
        model.export(str(tmp), format="onnx", verbose=False)
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = STAMP_KEY, file_sha256(model_path)
        onnx.save(graph, str(tmp))
    return target


class OnnxNet:
    """Same interface as net.Net: num_classes, path, predict_labels, predict_top."""

    def __init__(self, session, input_scale, path):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.input_scale = float(input_scale)
        self.path = Path(path)
        self.num_classes = int(session.get_outputs()[0].shape[-1])

    def predict_labels(self, pixels, progress=False):
        return self.predict_top(pixels, progress)[0]

    def predict_top(self, pixels, progress=False):
        """(labels (N,), the softmax probability of each label (N,)), as net.Net's."""
        from .net import top_of

        pixels = np.asarray(pixels, dtype=np.float32)
        chunks = range(0, len(pixels), BATCH_SIZE)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=self.path.name, unit="batch", leave=False, disable=None)
        tops = [top_of(self.session.run(None, {self.input_name: pixels[i:i + BATCH_SIZE] * self.input_scale})[0])
                for i in chunks]
        if not tops:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate([t[0] for t in tops]), np.concatenate([t[1] for t in tops])


def load_net(model_path, input_scale, warn=None):
    """The fastest sound way to run model_path: its stamped ONNX artefact, else Keras."""
    from .net import Net

    model_path = Path(model_path)
    artefact = onnx_path(model_path)
    if not (model_path.is_file() and artefact.is_file()):
        why = f"no {artefact.name} beside {model_path.name}"
    else:
        session, why = _session(artefact)
        if session is not None:
            if session.get_modelmeta().custom_metadata_map.get(STAMP_KEY) == file_sha256(model_path):
                return OnnxNet(session, input_scale, model_path)
            why = f"{artefact.name} was made from another version of {model_path.name}"
    net = Net.from_file(model_path, input_scale)  # a missing or bad model fails here, unwarned
    (warn or _warn)(f"warning: {why}; using the slower Keras path "
                    f"(make it with: python3 -m defense export-onnx {model_path})")
    return net


def _session(artefact):
    """(ONNX Runtime session, None), or (None, why the artefact cannot be used)."""
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(artefact), providers=["CPUExecutionProvider"]), None
    except Exception as e:  # ONNX Runtime raises its own types for damaged files
        return None, f"{artefact.name} cannot be read ({reason(e, limit=120)})"


def _warn(message):
    print(message, file=sys.stderr)


def add_arguments(parser):
    parser.add_argument("models", nargs="*", type=Path, metavar="MODEL",
                        help="model files to export (default: every .h5 in ROOT/models and "
                             "ROOT/fine_pruned_models)")
    parser.add_argument("--root", type=Path, metavar="DIR", help="project root (default: this repository)")


def run(args):
    from .errors import InputError
    from .layout import models_dir, repaired_dir
    from .net import quiet_tensorflow

    quiet_tensorflow()
    models = args.models or sorted([*models_dir(args.root).glob("*.h5"),
                                    *repaired_dir(args.root).glob("*.h5")])
    failures = 0
    for model in models:
        try:
            print(f"export-onnx: wrote {export_onnx(model)}", file=sys.stderr)
        except InputError as e:
            print(f"export-onnx: error: {e}", file=sys.stderr)
            failures += 1
    return 2 if failures else 0
