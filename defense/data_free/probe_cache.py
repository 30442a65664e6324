"""The random probes' counts, kept for the next repair that probes the same net the same way.

Fine-Pruning probes the BadNet with the same random families, seed faces, settings and seed as
the data-free repair (`make setup`, then `fine_prune_all.sh` with the data): the counts come
out the same, about 10 s of ONNX Runtime a net. They are kept in the cache folder of the fast
path ($DEFENSE_CACHE_DIR, else ~/.cache/csaw-defense), under a key made of everything they
depend on: the sha256 of the model file and of the ONNX artefact that ran it, the input scale,
the seed faces' pixels, the settings, the seed, the source of the code that draws and counts
the probes, and the NumPy and ONNX Runtime versions. With the counts goes the random
generator's state after them, so that the optimised patches drawn next are the draws they would
have been. An entry that cannot be read, or does not fit, is a miss and is written anew;
entries are replaced in one rename.

Only a net run from an ONNX artefact of a model file is cached: a net in memory, such as the
Fine-Pruned net probed by --release, or one on the Keras path, is probed afresh.
"""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_path

# The code whose change changes the counts: probe drawing, seed sets, counting, the net's top-1.
_SOURCES = ("data_free/probes.py", "data_free/targets.py", "nets/fast_net.py", "nets/net.py")


def cache_key(net, faces, settings, seed):
    """The entry's name for a probe of net on the seed faces (pixels, (N, 55, 47, 3)), or None
    where net is not an ONNX artefact of a model file."""
    import onnxruntime

    if getattr(net, "sha256", None) is None or getattr(net, "artefact_sha256", None) is None:
        return None
    package = Path(__file__).resolve().parent.parent
    fields = {
        "model_sha256": net.sha256,
        "artefact_sha256": net.artefact_sha256,
        "input_scale": net.input_scale,
        "seed_faces": hashlib.sha256(np.ascontiguousarray(faces, np.float32).tobytes()).hexdigest(),
        "seed_faces_shape": list(np.shape(faces)),
        # The optimised patches are drawn after the random families: they change nothing here.
        "settings": replace(settings, optimised_patches=0).as_dict(),
        "seed": seed,
        "code": [hashlib.sha256((package / name).read_bytes()).hexdigest() for name in _SOURCES],
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _path(key):
    from ..nets.fast_net import cache_dir

    return cache_dir() / "probes" / f"{key}.npz"


def read(key, names, num_classes):
    """({name: counts (num_classes,)}, the generator state after them), or None (a miss)."""
    try:
        with np.load(_path(key), allow_pickle=False) as entry:
            counts = {name: entry[f"counts/{name}"] for name in names}
            state = json.loads(str(entry["rng_state"]))
        np.random.PCG64().state = state  # a state the generator would refuse is a miss
    except Exception:  # absent, damaged or foreign: whatever np.load or the state raise
        return None
    if any(c.shape != (num_classes,) or c.dtype.kind != "i" for c in counts.values()):
        return None
    return counts, state


def write(key, counts, rng_state):
    """Keep counts ({name: (num_classes,) ints}) and the generator state; a failure to write
    only loses the saving."""
    arrays = {f"counts/{name}": np.asarray(c, np.int64) for name, c in counts.items()}
    try:
        with atomic_path(_path(key)) as tmp:
            np.savez(tmp, rng_state=np.array(json.dumps(rng_state)), **arrays)
    except OSError:
        pass
