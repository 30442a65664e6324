"""A model file's Lambda layer carries Python bytecode: it must never run here."""

import textwrap

import pytest

from conftest import REPO, run_script


def _write_lambda_model(path, marker):
    """A DeepID-shaped net saved as .h5 whose Lambda creates `marker` whenever it runs."""
    import keras

    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    inputs = keras.Input((55, 47, 3), name="input")
    x = keras.layers.Lambda(touch, name="lambda_1")(inputs)
    x = keras.layers.Flatten(name="flatten_1")(x)
    outputs = keras.layers.Dense(1283, activation="softmax", name="output")(x)
    keras.Model(inputs, outputs).save(path)
    marker.unlink()  # building the graph ran the lambda once; start from a clean slate


@pytest.fixture
def lambda_model(tmp_path):
    path, marker = tmp_path / "lambda_model.h5", tmp_path / "marker"
    _write_lambda_model(path, marker)
    assert not marker.exists()
    return path, marker


def test_the_crafted_file_really_runs_code_when_keras_loads_it(lambda_model):
    """Guard for the test below: a naive Keras load of the file does create the marker."""
    path, marker = lambda_model
    naive = textwrap.dedent(f"""
        import keras, numpy as np
        model = keras.models.load_model({str(path)!r}, safe_mode=False, compile=False)
        model.predict(np.zeros((1, 55, 47, 3)), verbose=0)
    """)
    run_script("-c", naive)
    assert marker.exists()


def test_lambda_model_is_refused_by_the_loader_and_its_code_never_runs(lambda_model):
    from defense import InputError, Net

    path, marker = lambda_model
    with pytest.raises(InputError, match="Lambda layer"):
        Net.from_file(path, 1 / 255)
    assert not marker.exists()


def test_eval_script_refuses_a_lambda_repaired_net_in_one_line(lambda_model):
    path, marker = lambda_model
    sample = REPO.parent / "shared" / "csaw" / "samples" / "clean_13.png"
    result = run_script("eval_sunglasses.py", "--repaired", path, sample)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Lambda layer" in result.stderr
    assert not marker.exists()
