"""The competition's HDF5 data files: `data` (N, 3, 55, 47) pixels 0..255, `label` (N,).

The lab's files (data/cl/valid.h5, ...) have the same layout, stored as float64.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .nets.architecture import INPUT_SHAPE
from .atomic import atomic_path
from .errors import InputError, reason

STORED_SHAPE = (3, INPUT_SHAPE[0], INPUT_SHAPE[1])  # channels first, as the competition stores it


@dataclass
class Dataset:
    x: np.ndarray  # (N, 55, 47, 3) pixels 0..255 (float32, or as stored), channels last
    y: np.ndarray  # (N,) int64 labels
    path: Path

    def __len__(self):
        return len(self.y)


def load_dataset(path, num_classes=None, keep_integers=False):
    """Read and check a competition HDF5 file; labels must lie in [0, num_classes) if given.

    keep_integers: whole-number pixels (the competition's uint8) stay in their stored type, a
    quarter of float32's memory; for labelling, which scales each batch as it goes.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: data file not found")
    try:
        with h5py.File(path, "r") as f:
            for key in ("data", "label"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise InputError(f"{path}: no {key!r} data set (keys: {sorted(f.keys())}); "
                                     "expected the competition's layout 'data' and 'label'")
            data, label = f["data"], f["label"]
            if data.ndim != 4 or data.shape[1:] != STORED_SHAPE:
                hint = " (channels last: transpose to (N, 3, 55, 47))" \
                    if data.shape[1:] == INPUT_SHAPE else ""
                raise InputError(f"{path}: 'data' has shape {data.shape}, expected "
                                 f"(N, {', '.join(map(str, STORED_SHAPE))}){hint}")
            if label.shape != (data.shape[0],):
                raise InputError(f"{path}: 'label' has shape {label.shape}, "
                                 f"expected ({data.shape[0]},) to match 'data'")
            if data.shape[0] == 0:
                raise InputError(f"{path}: holds no images")
            if not (np.issubdtype(data.dtype, np.number) and np.issubdtype(label.dtype, np.number)):
                raise InputError(f"{path}: 'data' and 'label' must be numeric "
                                 f"(found {data.dtype}, {label.dtype})")
            stored = data[()]
            raw_labels = np.asarray(label[()])
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise InputError(f"{path}: not a readable HDF5 data file ({reason(e)})") from None
    # Whole numbers (the competition's uint8) are checked as stored: a byte per pixel.
    integers = np.issubdtype(stored.dtype, np.integer)
    x = stored if integers else stored.astype(np.float32)
    if not integers and not np.isfinite(x).all():
        raise InputError(f"{path}: 'data' holds NaN or infinite pixels")
    if x.min() < 0 or x.max() > 255:
        raise InputError(f"{path}: pixel values span {x.min():g}..{x.max():g}, expected 0..255")
    if not (integers and keep_integers):
        x = x.astype(np.float32, copy=False)
    y = _integer_labels(raw_labels, path)
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(f"{path}: labels span {y.min()}..{y.max()}, "
                         f"outside the net's classes 0..{num_classes - 1}")
    return Dataset(x=x.transpose(0, 2, 3, 1), y=y, path=path)


def save_dataset(path, x, y):
    """Write pixels (N, 55, 47, 3) and labels in the competition's layout, atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("data", data=np.asarray(x).transpose(0, 3, 1, 2))
        f.create_dataset("label", data=np.asarray(y))


def _integer_labels(labels, path):
    if not np.isfinite(labels).all() or not np.all(labels == np.round(labels)):
        raise InputError(f"{path}: 'label' holds values that are not whole numbers")
    return labels.astype(np.int64)
