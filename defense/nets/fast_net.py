"""The fast path: a DeepID net exported to ONNX and run by ONNX Runtime.

Importing TensorFlow and building Keras nets costs seconds per process; ONNX Runtime starts
in a fraction of that. Each model file X.h5 gets X.onnx beside it (made by `make setup`,
`fine_prune_all.sh` and `python3 -m defense export-onnx`), stamped with X.h5's sha256: an
artefact whose stamp does not match its model file is never used. A model file without one
beside it (a file the user brings, in a folder that may be read-only) gets its artefact in a
cache folder instead, keyed by the file's sha256 ($DEFENSE_CACHE_DIR, else
$XDG_CACHE_HOME/csaw-defense, else ~/.cache/csaw-defense): made once, by the first call, and
used from then on. Entries are written to a temporary file and renamed, so concurrent calls
and interrupted ones never leave half an artefact; one that cannot be read is made anew. Where
no artefact can be had, the Keras path runs, after one warning line.

The artefact takes channels-first input (N, 3, 55, 47), the layout of the competition's
HDF5 files: Keras' export begins with a transpose to that layout, which is cut off here, so
a data set read from HDF5 reaches ONNX Runtime without being transposed twice (copying the
transposed view of 12,830 images alone costs about a second on 2 cores). Artefacts made
before that change (channels-last input) still work.
"""

import functools
import os
import sys
from pathlib import Path

import numpy as np

from .architecture import INPUT_SHAPE
from ..atomic import atomic_path
from ..digest import file_sha256
from ..errors import InputError, reason
from .net import Net, fd2_silenced, top_of

BATCH_SIZE = 256  # two nets side by side: 128-256 ran fastest on 2 cores
# A GoodNet runs its two nets side by side (goodnet.py): each session gets half the cores.
SESSION_THREADS = max(1, (os.cpu_count() or 2) // 2)
STAMP_KEY = "source_sha256"


def onnx_path(model_path):
    return Path(model_path).with_suffix(".onnx")


def cache_dir():
    """Where artefacts of model files without one beside them go (XDG cache convention)."""
    if os.environ.get("DEFENSE_CACHE_DIR"):
        return Path(os.environ["DEFENSE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "csaw-defense"


def cached_onnx_path(sha256):
    return cache_dir() / "onnx" / f"{sha256}.onnx"


def export_onnx(model_path, target=None, model=None):
    """Write model_path's .onnx artefact, beside it unless target is given; model: the Keras
    net already loaded from model_path (else it is loaded through the safe loader)."""
    import warnings

    import onnx

    from .model_io import load_keras_model

    model = model or load_keras_model(model_path)
    model(np.zeros((1, *INPUT_SHAPE), np.float32))  # Keras exports only a net that has run
    target = Path(target) if target else onnx_path(model_path)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf2onnx's NumPy deprecation chatter
        model.export(str(tmp), format="onnx", verbose=False)
        graph = onnx.load(str(tmp))
        _take_channels_first(graph.graph)
        entry = graph.metadata_props.add()
        entry.key, entry.value = STAMP_KEY, file_sha256(model_path)
        onnx.save(graph, str(tmp))
    return target


def _take_channels_first(graph):
    """Drop the graph's leading NHWC -> NCHW transpose: its input becomes (N, 3, 55, 47)."""
    first = graph.node[0]
    perm = [list(a.ints) for a in first.attribute if a.name == "perm"]
    (graph_input,) = graph.input
    if first.op_type != "Transpose" or perm != [[0, 3, 1, 2]] or list(first.input) != [graph_input.name]:
        raise InputError(f"unexpected start of the exported graph ({first.op_type}); cannot "
                         "make it channels-first")
    for node in graph.node[1:]:
        node.input[:] = [graph_input.name if name == first.output[0] else name for name in node.input]
    del graph.node[0]
    dims = graph_input.type.tensor_type.shape.dim
    channels = dims[3].dim_value
    dims[3].dim_value, dims[2].dim_value, dims[1].dim_value = dims[2].dim_value, dims[1].dim_value, channels


class OnnxNet:
    """Same interface as net.Net: num_classes, path, predict_labels, predict_top."""

    def __init__(self, session, input_scale, path, sha256=None, artefact=None):
        self.session = session
        self.sha256 = sha256  # of the model file the artefact was made from (its stamp)
        self.artefact = artefact  # the ONNX file the session runs
        self.input_name = session.get_inputs()[0].name
        self.channels_first = session.get_inputs()[0].shape[1] == 3
        self.input_scale = float(input_scale)
        self.path = Path(path)
        self.num_classes = int(session.get_outputs()[0].shape[-1])

    @functools.cached_property
    def artefact_sha256(self):
        """Read only where asked (the probe cache's key), never on the eval scripts' path."""
        return file_sha256(self.artefact) if self.artefact else None

    def predict_labels(self, pixels, progress=False):
        return self.predict_top(pixels, progress)[0]

    def predict_top(self, pixels, progress=False):
        """(labels (N,), the softmax probability of each label (N,)), as net.Net's."""
        # Reduced a batch at a time: a large set never holds (N, num_classes) outputs.
        tops = [top_of(outputs) for outputs in self._batch_outputs(pixels, progress)]
        if not tops:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate([t[0] for t in tops]), np.concatenate([t[1] for t in tops])

    def probabilities(self, pixels, progress=False):
        """Softmax outputs (N, num_classes), as net.Net's."""
        outputs = list(self._batch_outputs(pixels, progress))
        return np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes), np.float32)

    def _batch_outputs(self, pixels, progress):
        pixels = np.asarray(pixels)  # scaled to float32 a batch at a time (_scaled)
        chunks = range(0, len(pixels), BATCH_SIZE)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=self.path.name, unit="batch", leave=False, disable=None)
        if self.channels_first:  # a view; for a data set read from HDF5, its stored layout
            pixels = pixels.transpose(0, 3, 1, 2)
        for i in chunks:
            yield self.session.run(None, {self.input_name: self._scaled(pixels[i:i + BATCH_SIZE])})[0]

    def _scaled(self, chunk):
        # order="C": ONNX Runtime takes contiguous arrays; the transposed view of a
        # channels-last chunk becomes one in the same pass as the scaling.
        return np.multiply(chunk, np.float32(self.input_scale), dtype=np.float32, order="C")


def predict_top_on_every_core(net, pixels):
    """net.predict_top over pixels, one slice per core at the same time, where net runs alone:
    an OnnxNet's session runs on half the cores (made for a GoodNet's two nets side by side),
    and ONNX Runtime runs concurrent calls of one session in parallel. A Keras net
    (net.Net) runs as it is."""
    if not isinstance(net, OnnxNet):
        return net.predict_top(pixels)
    from concurrent.futures import ThreadPoolExecutor

    parts = np.array_split(np.asarray(pixels), os.cpu_count() or 1)  # views, no copies
    with ThreadPoolExecutor(len(parts)) as pool:
        tops = list(pool.map(net.predict_top, parts))
    return np.concatenate([t[0] for t in tops]), np.concatenate([t[1] for t in tops])


def calls_side_by_side(net):
    """How many calls of net fill the cores at once: an OnnxNet's session runs on
    SESSION_THREADS of them (ONNX Runtime releases the GIL); a Keras net (net.Net) takes them
    all itself."""
    if not isinstance(net, OnnxNet):
        return 1
    return max(1, (os.cpu_count() or 1) // SESSION_THREADS)


def load_net(model_path, input_scale, warn=None):
    """The fastest sound way to run model_path: its stamped ONNX artefact (beside it, else in
    the cache, made there on first use), else Keras."""
    model_path = Path(model_path)
    if not model_path.is_file():
        return Net.from_file(model_path, input_scale)  # fails with the loader's one-line error
    sha256 = file_sha256(model_path)
    for artefact in (onnx_path(model_path), cached_onnx_path(sha256)):
        session = _stamped_session(artefact, sha256)
        if session is not None:
            return OnnxNet(session, input_scale, model_path, sha256, artefact)
    net = Net.from_file(model_path, input_scale)  # a bad model fails here, unwarned
    artefact = cached_onnx_path(sha256)
    try:
        with fd2_silenced():  # TensorFlow's C++ log lines while exporting
            export_onnx(model_path, artefact, model=net.model)
    except (OSError, InputError) as e:
        (warn or _warn)(f"warning: no fast-path artefact for {model_path.name} ({reason(e, 120)}); "
                        f"using the slower Keras path")
        return net
    session = _stamped_session(artefact, sha256)
    if session is None:  # written but unreadable: keep the Keras net already loaded
        (warn or _warn)(f"warning: {artefact} cannot be read; using the slower Keras path")
        return net
    (warn or _warn)(f"note: made the fast-path artefact of {model_path.name} in {artefact.parent} "
                    f"(once; later calls start in a fraction of a second)")
    return OnnxNet(session, input_scale, model_path, sha256, artefact)


def ensure_artefact(model_path, prog):
    """model_path's artefact beside it, made unless a current one is there. The artefact only
    speeds things up: a failure is one warning line on stderr, and the caller goes on."""
    model_path = Path(model_path)
    if _stamped_session(onnx_path(model_path), file_sha256(model_path)) is not None:
        return
    from .net import quiet_tensorflow

    quiet_tensorflow()
    try:
        with fd2_silenced():  # TensorFlow's C++ log lines while exporting
            artefact = export_onnx(model_path)
    except Exception as e:
        print(f"{prog}: warning: no fast-path artefact for {model_path.name} "
              f"({reason(e, 120)}); the eval scripts will use the slower Keras path",
              file=sys.stderr)
        return
    print(f"{artefact}: fast-path artefact written", file=sys.stderr)


def _stamped_session(artefact, sha256):
    """A session of artefact if it exists, reads, and was made from the file with sha256."""
    if not artefact.is_file():
        return None
    session, _ = _session(artefact)
    if session is not None and session.get_modelmeta().custom_metadata_map.get(STAMP_KEY) == sha256:
        return session
    return None


def _session(artefact):
    """(ONNX Runtime session, None), or (None, why the artefact cannot be used)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # A GoodNet runs its two nets side by side (goodnet.py): half the cores each.
    options.intra_op_num_threads = SESSION_THREADS
    try:
        return onnxruntime.InferenceSession(str(artefact), options, providers=["CPUExecutionProvider"]), None
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
    from ..layout import models_dir, repaired_dir
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
