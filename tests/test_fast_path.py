"""The ONNX fast path gives the Keras path's labels, and is never used when stale."""

import shutil

import numpy as np
import pytest

from conftest import LAB_WEIGHTS, SAMPLES, THIRD_PARTY_REPAIRED, run_script, weights_path
from defense import GoodNet, get_net, load_dataset
from defense.digest import file_sha256
from defense.nets.fast_net import OnnxNet, onnx_path, predict_top_on_every_core
from defense.nets.fast_net import load_net as load_fast_or_keras
from defense.nets.registry import COMPETITION_NETS

MODELS = [weights_path(net) for net in COMPETITION_NETS] + [LAB_WEIGHTS, THIRD_PARTY_REPAIRED]


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_onnx_labels_equal_keras_labels_on_the_samples(model, with_onnx, sample_pixels, load_net):
    """load_net here is conftest's cached Keras loader."""
    scale = 1.0 if model == LAB_WEIGHTS else 1 / 255
    fast = _fast(with_onnx(model), scale)
    assert isinstance(fast, OnnxNet)
    np.testing.assert_array_equal(fast.predict_labels(sample_pixels),
                                  load_net(model, scale).predict_labels(sample_pixels))


def test_every_core_gives_what_one_call_gives(with_onnx, sample_pixels, load_net):
    """The probe's forward passes, one slice per core: the same labels and confidences, in
    the same order, as one call; a Keras net runs as it is. 600 images: slices of more than
    one batch, and of unequal sizes."""
    model = weights_path("anonymous_2")
    pixels = np.random.default_rng(0).uniform(0, 255, (600, 55, 47, 3)).astype(np.float32)
    pixels[::50] = sample_pixels[:12]  # a few faces among the noise
    fast = _fast(with_onnx(model), 1 / 255)
    labels, confidence = predict_top_on_every_core(fast, pixels)
    one_labels, one_confidence = fast.predict_top(pixels)
    np.testing.assert_array_equal(labels, one_labels)
    np.testing.assert_allclose(confidence, one_confidence, rtol=1e-5)
    keras_net = load_net(model, 1 / 255)
    np.testing.assert_array_equal(predict_top_on_every_core(keras_net, pixels[:40])[0],
                                  keras_net.predict_top(pixels[:40])[0])
    assert len(predict_top_on_every_core(fast, pixels[:0])[0]) == 0
    # The whole softmax output (the witness ranks labels in it), as the Keras net's.
    np.testing.assert_allclose(fast.probabilities(pixels[:300]), keras_net.probabilities(pixels[:300]),
                               rtol=1e-4, atol=1e-6)
    assert fast.probabilities(pixels[:0]).shape == (0, fast.num_classes)


def test_a_siblings_views_side_by_side_sum_to_the_same_floats(with_onnx, sample_pixels, monkeypatch):
    """view_probabilities runs an ONNX net's nine views side by side where the cores allow:
    the softmax it gives is, bit for bit, the one the views give one at a time (the sum in the
    views' order), so no GoodNet label depends on the machine's core count."""
    from defense.comparator import siblings
    from defense.nets import fast_net

    fast = _fast(with_onnx(weights_path("anonymous_1")), 1 / 255)
    pixels = np.concatenate([sample_pixels, sample_pixels[::-1]])[:70]
    monkeypatch.setattr(fast_net.os, "cpu_count", lambda: 4 * fast_net.SESSION_THREADS)
    assert fast_net.calls_side_by_side(fast) == 4
    side_by_side = siblings.view_probabilities(fast, pixels)
    monkeypatch.setattr(fast_net.os, "cpu_count", lambda: fast_net.SESSION_THREADS)
    assert fast_net.calls_side_by_side(fast) == 1
    np.testing.assert_array_equal(side_by_side, siblings.view_probabilities(fast, pixels))
    assert fast_net.calls_side_by_side(object()) == 1  # a Keras net takes every core itself


def test_views_that_end_out_of_order_are_summed_in_the_views_order(monkeypatch):
    """Side by side, the first views end last here (they sleep longest), and their float32 sum
    depends on the order: 1 + 1e8 - 1e8 is 0 in the views' order, 1 in the order they end."""
    import time

    from defense.comparator import siblings

    values = iter([1.0, 1e8, -1e8] + [0.0] * 6)
    ordered = [np.float32(next(values)) for _ in range(9)]
    calls = []

    class SlowFirst:
        def probabilities(self, view):
            index = len(calls)
            calls.append(index)
            time.sleep(0.05 * (9 - index))
            return np.full((1, 1), ordered[index], np.float32)

    monkeypatch.setattr(siblings, "calls_side_by_side", lambda net: 9)
    image = np.zeros((1, 55, 47, 3), np.float32)
    assert siblings.view_probabilities(SlowFirst(), image)[0, 0] == np.float32(0.0)
    assert sum(reversed(ordered)) == np.float32(1.0)  # the order they end in would say so


def test_artefacts_take_the_hdf5_layout_and_older_channels_last_ones_still_work(tmp_path, sample_pixels):
    """export_onnx cuts Keras' leading transpose (input (N, 3, 55, 47)); an artefact
    exported as Keras writes it, as this package did before, gives the same labels."""
    import onnx

    from defense import load_keras_model
    from defense.digest import file_sha256
    from defense.nets.fast_net import STAMP_KEY, export_onnx

    model = tmp_path / "net.h5"
    shutil.copyfile(weights_path("anonymous_2"), model)
    export_onnx(model)
    channels_first = _fast(model, 1 / 255)
    assert channels_first.channels_first and channels_first.session.get_inputs()[0].shape[1:] == [3, 55, 47]
    labels = channels_first.predict_labels(sample_pixels)

    keras_model = load_keras_model(model)
    keras_model(sample_pixels[:1] / 255)
    keras_model.export(str(onnx_path(model)), format="onnx", verbose=False)
    graph = onnx.load(str(onnx_path(model)))
    entry = graph.metadata_props.add()
    entry.key, entry.value = STAMP_KEY, file_sha256(model)
    onnx.save(graph, str(onnx_path(model)))
    channels_last = _fast(model, 1 / 255)
    assert not channels_last.channels_first
    np.testing.assert_array_equal(channels_last.predict_labels(sample_pixels), labels)


def _fast(path, scale):
    warnings = []
    net = load_fast_or_keras(path, scale, warn=warnings.append)
    assert warnings == []
    return net


def test_a_stale_artefact_is_never_used(with_onnx, tmp_path, sample_pixels, load_net):
    # The artefact of one net placed beside another net's weights: the cache serves instead.
    shutil.copyfile(weights_path("anonymous_1"), tmp_path / "net.h5")
    shutil.copyfile(onnx_path(with_onnx(weights_path("sunglasses"))), tmp_path / "net.onnx")
    net = load_fast_or_keras(tmp_path / "net.h5", 1 / 255, warn=lambda line: None)
    assert isinstance(net, OnnxNet)
    np.testing.assert_array_equal(net.predict_labels(sample_pixels),
                                  load_net(weights_path("anonymous_1")).predict_labels(sample_pixels))


def test_a_brought_model_gets_a_cached_artefact_on_first_use(tmp_path, monkeypatch, sample_pixels):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEFENSE_CACHE_DIR", str(cache))
    folder = tmp_path / "readonly"
    folder.mkdir()
    shutil.copyfile(weights_path("anonymous_2"), folder / "net.h5")
    folder.chmod(0o555)  # nothing may be written beside the user's file
    try:
        first_notes, second_notes = [], []
        first = load_fast_or_keras(folder / "net.h5", 1 / 255, warn=first_notes.append)
        second = load_fast_or_keras(folder / "net.h5", 1 / 255, warn=second_notes.append)
    finally:
        folder.chmod(0o755)
    assert isinstance(first, OnnxNet) and isinstance(second, OnnxNet)
    assert len(first_notes) == 1 and "once" in first_notes[0] and second_notes == []
    assert sorted(p.name for p in folder.iterdir()) == ["net.h5"]
    assert [p.name for p in (cache / "onnx").iterdir()] == [f"{file_sha256(folder / 'net.h5')}.onnx"]
    np.testing.assert_array_equal(first.predict_labels(sample_pixels), second.predict_labels(sample_pixels))


def test_a_damaged_cache_entry_is_made_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFENSE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copyfile(weights_path("sunglasses"), tmp_path / "net.h5")
    entry = tmp_path / "cache" / "onnx" / f"{file_sha256(tmp_path / 'net.h5')}.onnx"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"\x08\x07garbage")
    assert isinstance(load_fast_or_keras(tmp_path / "net.h5", 1 / 255, warn=lambda line: None), OnnxNet)
    assert entry.stat().st_size > 100_000


def test_without_a_writable_cache_the_keras_path_runs_with_one_warning(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("DEFENSE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copyfile(weights_path("anonymous_2"), tmp_path / "net.h5")
    warnings = []
    net = load_fast_or_keras(tmp_path / "net.h5", 1 / 255, warn=warnings.append)
    assert not isinstance(net, OnnxNet) and len(warnings) == 1 and "Keras" in warnings[0]


def test_eval_script_fast_and_keras_paths_print_the_same_labels(with_onnx):
    bad = with_onnx(weights_path("multi_trigger_multi_target"))
    repaired = with_onnx(THIRD_PARTY_REPAIRED)
    fast = run_script("eval_multi_trigger.py", "--bad-model", bad, "--repaired", repaired, SAMPLES)
    keras = run_script("eval_multi_trigger.py", "--bad-model", bad, "--repaired", repaired,
                       "--keras", SAMPLES)
    assert fast.returncode == keras.returncode == 0
    assert fast.stderr == "" and fast.stdout == keras.stdout and fast.stdout.count("\n") == 40


def test_fast_goodnet_equals_keras_goodnet_on_a_repaired_world(data_free_world):
    """The world's BadNets and their repairs carry artefacts (world build, fine-prune): the
    mini world's four nets with their data-free repairs, which quarantine labels."""
    world, root, _ = data_free_world
    test = load_dataset(world / "data" / "clean_test_data.h5")
    for net in COMPETITION_NETS:
        spec = get_net(net)
        bad = root / "models" / spec.bad_net_file
        repaired = root / "fine_pruned_models" / spec.repaired_file
        assert onnx_path(bad).exists() and onnx_path(repaired).exists()
        fast = GoodNet.from_files(bad, repaired, spec.input_scale, warn=pytest.fail)
        keras = GoodNet.from_files(bad, repaired, spec.input_scale, fast=False)
        assert isinstance(fast.bad, OnnxNet) and len(fast.quarantined)  # not the BadNet twice
        np.testing.assert_array_equal(fast.predict(test.x), keras.predict(test.x))


def test_a_damaged_artefact_beside_the_model_is_passed_over(tmp_path, sample_pixels, load_net):
    shutil.copyfile(weights_path("sunglasses"), tmp_path / "net.h5")
    (tmp_path / "net.onnx").write_bytes(b"\x08\x07garbage")
    net = load_fast_or_keras(tmp_path / "net.h5", 1 / 255, warn=lambda line: None)
    assert isinstance(net, OnnxNet)
    np.testing.assert_array_equal(net.predict_labels(sample_pixels),
                                  load_net(weights_path("sunglasses")).predict_labels(sample_pixels))
