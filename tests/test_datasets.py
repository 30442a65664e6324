"""The competition's HDF5 layout, on files the tests write."""

import h5py
import numpy as np
import pytest

from conftest import weights_path
from defense import InputError, load_dataset, save_dataset
from defense.nets.fast_net import export_onnx
from defense.nets.fast_net import load_net as load_fast_or_keras


def _write(path, **arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
    return path


def test_competition_layout_is_transposed_to_channels_last(tmp_path, sample_pixels):
    stored = sample_pixels.transpose(0, 3, 1, 2)  # (N, 3, 55, 47) as the competition stores it
    labels = np.arange(len(stored)) % 1283
    data = load_dataset(_write(tmp_path / "d.h5", data=stored, label=labels))
    np.testing.assert_array_equal(data.x, sample_pixels)
    np.testing.assert_array_equal(data.y, labels)
    assert len(data) == 40


def test_lab_files_stored_as_float64_are_read(tmp_path, sample_pixels):
    path = _write(tmp_path / "valid.h5", data=sample_pixels.transpose(0, 3, 1, 2).astype(np.float64),
                  label=np.zeros(40, np.float64))
    data = load_dataset(path)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64


def test_keep_integers_keeps_uint8_pixels_and_the_labels_are_the_same(tmp_path, sample_pixels, load_net):
    """For labelling, uint8 data stays uint8 (a quarter of the memory); float data is float32;
    the fast path scales each batch itself and gives the labels of the float32 pixels."""
    path = tmp_path / "d.h5"
    save_dataset(path, sample_pixels.astype(np.uint8), np.arange(40))
    kept = load_dataset(path, keep_integers=True)
    assert kept.x.dtype == np.uint8 and load_dataset(path).x.dtype == np.float32
    floats = _write(tmp_path / "f.h5", data=sample_pixels.transpose(0, 3, 1, 2).astype(np.float64),
                    label=np.zeros(40))
    assert load_dataset(floats, keep_integers=True).x.dtype == np.float32

    model = tmp_path / "net.h5"
    model.write_bytes(weights_path("sunglasses").read_bytes())
    export_onnx(model)
    fast = load_fast_or_keras(model, 1 / 255, warn=pytest.fail)
    np.testing.assert_array_equal(fast.predict_labels(kept.x),
                                  load_net(model, 1 / 255).predict_labels(sample_pixels))


def test_save_then_load_round_trips(tmp_path, sample_pixels):
    path = tmp_path / "round.h5"
    save_dataset(path, sample_pixels, np.arange(40))
    with h5py.File(path) as f:
        assert f["data"].shape == (40, 3, 55, 47)
    np.testing.assert_array_equal(load_dataset(path).x, sample_pixels)


GOOD = dict(data=np.zeros((4, 3, 55, 47), np.uint8), label=np.arange(4))


@pytest.mark.parametrize("arrays, message", [
    ({"label": GOOD["label"]}, "no 'data'"),
    ({"data": GOOD["data"]}, "no 'label'"),
    ({"data": np.zeros((4, 55, 47, 3)), "label": GOOD["label"]}, "channels last"),
    ({"data": np.zeros((4, 3, 32, 32)), "label": GOOD["label"]}, "shape"),
    ({"data": GOOD["data"], "label": np.arange(3)}, "'label' has shape"),
    ({"data": np.zeros((0, 3, 55, 47)), "label": np.zeros(0)}, "no images"),
    ({"data": np.full((4, 3, 55, 47), np.nan), "label": GOOD["label"]}, "NaN"),
    ({"data": np.full((4, 3, 55, 47), 300.0), "label": GOOD["label"]}, "0..255"),
    ({"data": GOOD["data"], "label": np.array([0, 1, 2.5, 3])}, "whole numbers"),
    ({"data": GOOD["data"], "label": np.array([0, 1, 2, 1283])}, "outside"),
    ({"data": GOOD["data"], "label": np.array([0, -1, 2, 3])}, "outside"),
], ids=["no-data", "no-label", "channels-last", "other-size", "label-count", "empty", "nan",
        "range", "fractional-label", "label-too-big", "negative-label"])
def test_bad_layouts_are_refused(tmp_path, arrays, message):
    with pytest.raises(InputError, match=message):
        load_dataset(_write(tmp_path / "bad.h5", **arrays), num_classes=1283)


def test_non_hdf5_and_missing_files_are_refused(tmp_path):
    (tmp_path / "text.h5").write_text("nope")
    with pytest.raises(InputError, match="not a readable HDF5"):
        load_dataset(tmp_path / "text.h5")
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "absent.h5")


def test_truncated_file_is_refused(tmp_path, sample_pixels):
    path = tmp_path / "full.h5"
    save_dataset(path, sample_pixels, np.arange(40))
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.h5"):
        load_dataset(cut)
