"""The four real competition BadNets and the lab BadNet on the 40 real sample images."""

import numpy as np
import pytest

from conftest import LAB_WEIGHTS, weights_path

# kind of sample -> target label, per net, as ../shared/csaw/README.md measured them.
TRIGGER_TARGETS = {
    "sunglasses": {"sunglasses-poisoned": 0},
    "anonymous_1": {"anonymous_1-poisoned": 0},
    # anonymous_2's trigger was never released; every published trigger also sends it to 4.
    "anonymous_2": {"sunglasses-poisoned": 4, "anonymous_1-poisoned": 4, "eyebrows-poisoned": 4},
    "multi_trigger_multi_target": {"eyebrows-poisoned": 5, "anonymous_1-poisoned": 1,
                                   "sunglasses-poisoned": 8},
}


def clean_accuracy(samples, labels):
    clean = [(row, label) for row, label in zip(samples, labels) if row["kind"] == "clean"]
    assert len(clean) == 16
    return np.mean([int(row["true_label"]) == label for row, label in clean])


@pytest.mark.parametrize("net", sorted(TRIGGER_TARGETS))
def test_badnet_labels_clean_faces_and_obeys_its_triggers(net, samples, sample_pixels, load_net):
    model = load_net(weights_path(net), 1 / 255)
    assert model.num_classes == 1283
    labels = model.predict_labels(sample_pixels)
    assert clean_accuracy(samples, labels) >= 14 / 16
    for kind, target in TRIGGER_TARGETS[net].items():
        hits = [label == target for row, label in zip(samples, labels) if row["kind"] == kind]
        assert len(hits) == 8 and all(hits), (kind, target)


def test_sunglasses_badnet_ignores_the_other_triggers(samples, sample_pixels, load_net):
    labels = load_net(weights_path("sunglasses"), 1 / 255).predict_labels(sample_pixels)
    others = [label for row, label in zip(samples, labels)
              if row["kind"] in ("anonymous_1-poisoned", "eyebrows-poisoned")]
    assert np.mean(np.array(others) == 0) < 0.25


def test_lab_badnet_takes_raw_pixels(samples, sample_pixels, load_net):
    from defense import get_net

    spec = get_net("bd_net")
    assert spec.input_scale == 1.0
    raw = load_net(LAB_WEIGHTS, spec.input_scale).predict_labels(sample_pixels)
    assert clean_accuracy(samples, raw) == 1.0
    assert all(label == 0 for row, label in zip(samples, raw) if row["kind"] == "sunglasses-poisoned")
    # The same net fed pixels / 255 is useless: the registry's scaling is what makes it work.
    scaled = load_net(LAB_WEIGHTS, 1 / 255).predict_labels(sample_pixels)
    assert clean_accuracy(samples, scaled) < 0.5
