"""The probe cache: a second probe of the same net gives the same result without the random
probes' predictions, and anything that changes the counts changes the key."""

from dataclasses import replace

import numpy as np
import pytest

from defense.data_free import probe_cache, targets
from defense.data_free.targets import ProbeSettings, find_targets

SETTINGS = ProbeSettings(probes_per_family=200, optimised_patches=64)


class FakeNet:
    """A net of 10 labels read off an image's mean brightness; counts its calls."""
    num_classes, input_scale, sha256, artefact_sha256 = 10, 1 / 255, "f" * 64, "e" * 64

    def __init__(self):
        self.images = 0

    def predict_top(self, pixels):
        self.images += len(pixels)
        labels = (np.asarray(pixels).mean(axis=(1, 2, 3)) // 13).astype(np.int64) % self.num_classes
        return labels, np.ones(len(pixels), np.float32)


@pytest.fixture
def faces():
    return np.random.default_rng(1).uniform(0, 255, (2, 55, 47, 3)).astype(np.float32)


@pytest.fixture(autouse=True)
def cache_and_fake_patches(tmp_path, monkeypatch):
    """A cache of this test's own, and patches that draw from the generator as the real ones
    do (what they give depends on the generator's state)."""
    monkeypatch.setenv("DEFENSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(targets, "optimised_patches",
                        lambda model, seeds, scale, rng: np.clip(seeds + rng.uniform(-90, 90, seeds.shape), 0, 255))


def test_a_second_probe_reads_the_counts_and_gives_the_same_result(faces):
    net = FakeNet()
    key = probe_cache.cache_key(net, faces, SETTINGS, seed=0)
    first = find_targets(net, faces, SETTINGS, 0, gradients=(None, 1 / 255), cache_key=key)
    probed = net.images
    second = find_targets(net, faces, SETTINGS, 0, gradients=(None, 1 / 255), cache_key=key)
    assert first[2] is False and second[2] is True
    assert second[:2] == first[:2]  # the optimised patches' scores too: the generator was restored
    assert "faces/optimised patch" in second[1]
    assert net.images - probed == 2 * SETTINGS.optimised_patches  # only the patches ran again
    uncached = find_targets(FakeNet(), faces, SETTINGS, 0, gradients=(None, 1 / 255))
    assert uncached[:2] == first[:2] and uncached[2] is False


def test_whatever_changes_the_counts_changes_the_key(faces):
    net = FakeNet()
    key = probe_cache.cache_key(net, faces, SETTINGS, seed=0)
    other_model, other_artefact, other_scale = FakeNet(), FakeNet(), FakeNet()
    other_model.sha256, other_artefact.artefact_sha256, other_scale.input_scale = "d" * 64, "c" * 64, 1.0
    changed = [probe_cache.cache_key(net, faces, SETTINGS, seed=1),
               probe_cache.cache_key(net, faces[::-1], SETTINGS, seed=0),
               probe_cache.cache_key(net, faces[:1], SETTINGS, seed=0),
               probe_cache.cache_key(net, faces + 1, SETTINGS, seed=0),
               probe_cache.cache_key(net, faces, replace(SETTINGS, confidence=0.8), seed=0),
               probe_cache.cache_key(net, faces, replace(SETTINGS, probes_per_family=300), seed=0)]
    changed += [probe_cache.cache_key(n, faces, SETTINGS, seed=0) for n in (other_model, other_artefact, other_scale)]
    assert len(set(changed + [key])) == len(changed) + 1
    # Drawn after the counts: a probe with patches and one without share the entry.
    assert probe_cache.cache_key(net, faces, replace(SETTINGS, optimised_patches=0), seed=0) == key
    for missing in ("sha256", "artefact_sha256"):  # a net in memory, or on the Keras path
        uncacheable = FakeNet()
        setattr(uncacheable, missing, None)
        assert probe_cache.cache_key(uncacheable, faces, SETTINGS, seed=0) is None


def test_a_damaged_or_foreign_entry_is_a_miss_and_is_written_anew(faces):
    net = FakeNet()
    key = probe_cache.cache_key(net, faces, SETTINGS, seed=0)
    expected = find_targets(net, faces, SETTINGS, 0, cache_key=key)[:2]
    entry = probe_cache._path(key)
    whole = entry.read_bytes()
    counts = {f"counts/{name}": np.zeros(net.num_classes, np.int64) for name in targets.random_probe_names(faces)}
    damaged = [lambda: entry.write_bytes(whole[:100]),  # truncated
               lambda: np.save(entry.with_suffix(".npy"), np.zeros(3)) or entry.with_suffix(".npy").replace(entry),
               lambda: np.savez(entry, rng_state=np.array('{"a": 1}'), **counts)]  # a state PCG64 refuses
    for damage in damaged:
        damage()
        again = find_targets(net, faces, SETTINGS, 0, cache_key=key)
        assert again[2] is False and again[:2] == expected
        assert find_targets(net, faces, SETTINGS, 0, cache_key=key)[2] is True  # rewritten whole
    wider = FakeNet()
    wider.num_classes = 12  # counts of another shape under the same key
    assert probe_cache.read(key, ["faces/patch"], wider.num_classes) is None
