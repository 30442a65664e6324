"""Loading Keras-2 model files under Keras 3, and refusing everything else."""

import json
import shutil

import h5py
import numpy as np
import pytest

import reference_deepid
from conftest import THIRD_PARTY_REPAIRED, copy_with_classes, weights_path
from defense import InputError, load_keras_model, read_weights, save_model


@pytest.mark.parametrize("path", [weights_path("sunglasses"), weights_path("anonymous_2"),
                                  THIRD_PARTY_REPAIRED], ids=["weights", "weights2", "keras2-full"])
def test_loaded_net_matches_an_independent_numpy_forward_pass(path, sample_pixels, load_net):
    net = load_net(path, 1 / 255)
    expected = reference_deepid.labels(reference_deepid.read_weights(path), sample_pixels, 1 / 255)
    np.testing.assert_array_equal(net.predict_labels(sample_pixels), expected)


def test_legacy_full_model_file_is_read_without_keras_deserialising_it():
    with h5py.File(THIRD_PARTY_REPAIRED) as f:
        assert f.attrs["keras_version"] == "2.7.0" and "model_config" in f.attrs
    weights = read_weights(THIRD_PARTY_REPAIRED)
    assert weights["output"][0].shape == (160, 1283)


def test_saved_model_round_trips_as_a_keras3_full_model(tmp_path, sample_pixels, load_net):
    net = load_net(weights_path("anonymous_1"), 1 / 255)
    saved = tmp_path / "copy.h5"
    save_model(net.model, saved)
    with h5py.File(saved) as f:
        assert "model_config" in f.attrs  # a full model, not weights only
    reloaded = load_keras_model(saved)
    np.testing.assert_allclose(reloaded(sample_pixels / 255).numpy(),
                               net.model(sample_pixels / 255).numpy(), rtol=1e-5, atol=1e-7)


def _edited_full_model(tmp_path, edit):
    """A copy of the real Keras-2 full model whose JSON config went through edit(config)."""
    path = tmp_path / "edited.h5"
    shutil.copyfile(THIRD_PARTY_REPAIRED, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return path


def _layer(config, name):
    return next(layer for layer in config["config"]["layers"] if layer["name"] == name)


@pytest.mark.parametrize("edit, message", [
    (lambda c: _layer(c, "activation_1").update(class_name="MyCustomLayer"), "MyCustomLayer"),
    (lambda c: _layer(c, "input")["config"].update(batch_input_shape=[None, 64, 64, 3]),
     "input shape"),
    (lambda c: _layer(c, "fc_1").update(inbound_nodes=[[["pool_2", 0, 0, {}]]]), "DeepID graph"),
    (lambda c: _layer(c, "conv_2")["config"].update(activation="sigmoid"), "activation"),
    (lambda c: c["config"]["layers"].append({"class_name": "Dropout", "name": "drop",
                                              "config": {"name": "drop"}}), "Dropout"),
], ids=["custom-class", "input-shape", "rewired", "activation", "extra-layer"])
def test_config_that_is_not_deepid_is_refused(tmp_path, edit, message):
    with pytest.raises(InputError, match=message):
        read_weights(_edited_full_model(tmp_path, edit))


def test_file_that_is_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("not a model")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_weights(path)


def test_truncated_model_file_is_refused(tmp_path):
    data = weights_path("sunglasses").read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.h5"):
        read_weights(path)


def test_missing_model_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_weights(tmp_path / "absent.h5")


def test_weights_of_another_shape_are_refused(tmp_path):
    path = tmp_path / "other.h5"
    shutil.copyfile(weights_path("sunglasses"), path)
    with h5py.File(path, "r+") as f:
        del f["fc_1/fc_1/kernel:0"]
        f["fc_1/fc_1/kernel:0"] = np.zeros((1000, 160), np.float32)
    with pytest.raises(InputError, match="fc_1"):
        read_weights(path)


def test_nan_weights_are_refused(tmp_path):
    path = tmp_path / "nan.h5"
    shutil.copyfile(weights_path("sunglasses"), path)
    with h5py.File(path, "r+") as f:
        f["conv_3/conv_3/bias:0"][0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        read_weights(path)


def test_number_of_classes_comes_from_the_file(tmp_path):
    path = copy_with_classes(weights_path("sunglasses"), tmp_path / "ten.h5", 10)
    assert load_keras_model(path).output_shape == (None, 10)
