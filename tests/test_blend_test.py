"""The blend test (defense/blend_test.py) on a hand-made net whose backdoor is known: a bright
corner sends it to label 7 whatever the face; otherwise its label is the face's brightness."""

import numpy as np
import pytest

from defense.architecture import INPUT_SHAPE
from defense.blend_test import TRUSTED_FACES, BlendTest, calibrate
from defense.errors import InputError
from defense.goodnet import GoodNet

TARGET = 7


class CornerNet:
    """Label 7 where the top-left pixel is above 100 (a trigger that survives a half blend:
    255 / 2 > 100); else the face's mean brightness in tens (0..6), which blending changes."""

    num_classes = 10
    path = None

    def predict_top(self, pixels, progress=False):
        pixels = np.asarray(pixels, np.float32)
        labels = np.where(pixels[:, 0, 0, 0] > 100, TARGET,
                          np.clip(pixels[:, 1:, 1:].mean(axis=(1, 2, 3)) // 10, 0, 6).astype(np.int64))
        return labels, np.ones(len(pixels), np.float32)

    def predict_labels(self, pixels, progress=False):
        return self.predict_top(pixels)[0]


def faces(levels, trigger=False):
    """One flat face per brightness level; trigger: a white top-left pixel, the corner dark
    otherwise."""
    x = np.stack([np.full(INPUT_SHAPE, level, np.float32) for level in levels])
    x[:, 0, 0] = 255 if trigger else 0
    return x


def test_a_trigger_keeps_its_label_on_every_blend_and_a_face_on_few():
    net = CornerNet()
    test = BlendTest(faces([2, 18, 35, 52, 64]).astype(np.uint8), threshold=0.5)
    face = faces([65])  # label 6; blended with darker faces it falls to 3..4
    assert net.predict_labels(face)[0] == 6
    assert test.keep_shares(net, face, [6])[0] <= 0.2 and test.passes(net, face, [6])[0]
    triggered = faces([65], trigger=True)
    assert test.keep_shares(net, triggered, [TARGET])[0] == 1.0
    assert not test.passes(net, triggered, [TARGET])[0]


def test_calibration_takes_partners_and_threshold_from_unsuspected_faces():
    rng = np.random.default_rng(0)
    levels = rng.uniform(0, 69, 200)
    x, y = faces(levels), (levels // 10).astype(np.int64)
    test, used = calibrate(CornerNet(), CornerNet(), x, y, suspects={6}, released={6},
                           rng=np.random.default_rng(1))
    assert test.trusted.shape == (TRUSTED_FACES, *INPUT_SHAPE) and test.trusted.dtype == np.uint8
    assert not np.isin(test.trusted[:, 5, 5, 0] // 10, [6]).any()  # no face of a suspect
    assert 0 <= test.threshold < 1 and 0 < used <= 200 - TRUSTED_FACES
    # The faces it was calibrated on pass at the calibrated share; every trigger fails.
    assert test.passes(CornerNet(), faces(levels), y).mean() >= 0.9
    assert not test.passes(CornerNet(), faces(levels, trigger=True), np.full(200, TARGET)).any()


def test_calibration_without_enough_unsuspected_faces_is_an_error():
    with pytest.raises(InputError, match="needs more than"):
        calibrate(CornerNet(), CornerNet(), faces([5, 15]), np.array([0, 1]), set(), set(), np.random.default_rng(0))


def test_the_record_entry_reads_back_and_a_damaged_one_is_refused():
    test = BlendTest(faces([10, 20, 30]).astype(np.uint8), threshold=0.25)
    entry = test.as_record(calibration_faces=40)
    back = BlendTest.from_record(entry, "r.json", INPUT_SHAPE)
    np.testing.assert_array_equal(back.trusted, test.trusted)
    assert back.threshold == 0.25 and back.alpha == test.alpha
    for damage in ({"threshold": 2.0}, {"alpha": 1.0}, {"trusted_faces": {**entry["trusted_faces"], "shape": [3, 55, 48, 3]}},
                   {"trusted_faces": {**entry["trusted_faces"], "base64": "not base64!"}}, {"threshold": None}):
        with pytest.raises(InputError, match="release_test"):
            BlendTest.from_record({**entry, **damage}, "r.json", INPUT_SHAPE)


def test_the_goodnet_gives_a_released_label_only_to_images_that_pass():
    """Three images on which both nets agree: a face of the released identity 6, a triggered
    face given the released target 7, a face of identity 2 (never suspected)."""
    net = CornerNet()
    test = BlendTest(faces([2, 18, 35, 52]).astype(np.uint8), threshold=0.5)
    good = GoodNet(net, net, quarantined=(), released=(6, TARGET), release_confidence=0.9, release_test=test)
    pixels = np.concatenate([faces([65]), faces([65], trigger=True), faces([25])])
    outputs = good.outputs(pixels)
    np.testing.assert_array_equal(outputs.release_test_passed, [True, False, False])  # 2: not released
    np.testing.assert_array_equal(good.decide(outputs), [6, good.poisoned_label, 2])
    # Outputs made without the test (a caller that built them by hand) give nothing back.
    outputs.release_test_passed = None
    np.testing.assert_array_equal(good.decide(outputs), [good.poisoned_label, good.poisoned_label, 2])


class AttractorNet(CornerNet):
    """CornerNet, but every image of mean brightness 30..59 gets label 5: the faces of identity
    5 (50..59) keep it on most blends, as a natural attractor's do."""

    def predict_top(self, pixels, progress=False):
        labels, confidence = super().predict_top(pixels)
        mean = np.asarray(pixels, np.float32)[:, 1:, 1:].mean(axis=(1, 2, 3))
        return np.where((labels != TARGET) & (mean >= 30) & (mean < 60), 5, labels), confidence


def test_a_released_attractor_gets_the_share_its_own_faces_keep():
    rng = np.random.default_rng(0)
    levels = rng.uniform(0, 69, 300)
    net = AttractorNet()
    x = faces(levels)
    y = net.predict_labels(x)
    test, _ = calibrate(net, net, x, y, suspects={1, 5}, released={1, 5}, rng=np.random.default_rng(1))
    assert set(test.label_thresholds) == {5} and test.label_thresholds[5] > test.threshold
    own = x[y == 5]
    assert test.passes(net, own, np.full(len(own), 5)).all()  # its own faces all pass
    np.testing.assert_array_equal(test.threshold_of([5, 1, 3]),
                                  [test.label_thresholds[5], test.threshold, test.threshold])
    back = BlendTest.from_record(test.as_record(10), "r.json", INPUT_SHAPE)
    assert back.label_thresholds == test.label_thresholds
    for damage in ({"x": 0.5}, {"3": 1.5}, ["3"]):
        with pytest.raises(InputError, match="release_test"):
            BlendTest.from_record({**test.as_record(10), "label_thresholds": damage}, "r.json", INPUT_SHAPE)
