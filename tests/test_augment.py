"""Random region edits: local, bounded, and leaving the caller's array alone."""

import numpy as np

from defense.augment import RegionEdits


def _faces(n=200, max_value=1.0):
    return np.random.default_rng(1).uniform(0, max_value, (n, 55, 47, 3)).astype(np.float32)


def test_edits_stay_in_range_and_inside_a_few_rectangles():
    x = _faces()
    before = x.copy()
    edits = RegionEdits(gain_share=0.5)
    out = edits.apply(x, np.random.default_rng(0), max_value=1.0)
    np.testing.assert_array_equal(x, before)  # the input is not touched
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1.0
    changed = (out != x).any(axis=3)
    assert changed.any(axis=(1, 2)).mean() > 0.95  # probability 1: (almost) every face edited
    # At most 3 rectangles of at most 15 x 20 pixels each.
    assert changed.sum(axis=(1, 2)).max() <= 3 * 15 * 20
    assert changed.mean() < 0.4  # local edits, not whole images


def test_painted_rectangles_are_flat_colours_over_raw_pixel_scale():
    """With no gain or noise share every edit is a painted rectangle; on a flat grey face of the lab
    net's raw 0..255 scale, an edited pixel takes a colour within the 0..255 range."""
    x = np.full((50, 55, 47, 3), 128.0, np.float32)
    out = RegionEdits(gain_share=0.0, noise_share=0.0, most_per_image=1).apply(x, np.random.default_rng(0),
                                                                         max_value=255)
    assert out.max() <= 255 and out.min() >= 0
    for face in out:
        changed = (face != 128).any(axis=2)
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        if len(rows):  # one rectangle, one colour: the changed pixels fill their bounding box
            box = face[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            assert changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
            assert len(np.unique(box.reshape(-1, 3), axis=0)) == 1


def test_probability_zero_edits_nothing_and_seeds_repeat():
    x = _faces(20)
    np.testing.assert_array_equal(RegionEdits(probability=0).apply(x, np.random.default_rng(0), 1.0), x)
    a = RegionEdits().apply(x, np.random.default_rng(7), 1.0)
    b = RegionEdits().apply(x, np.random.default_rng(7), 1.0)
    np.testing.assert_array_equal(a, b)


def test_noise_rectangles_hold_many_colours():
    x = np.full((20, 55, 47, 3), 0.5, np.float32)
    out = RegionEdits(gain_share=0.0, noise_share=1.0, height=(4, 4), width=(4, 4), most_per_image=1) \
        .apply(x, np.random.default_rng(0), max_value=1.0)
    for face in out:
        changed = (face != 0.5).any(axis=2)
        assert changed.sum() == 16  # one 4 x 4 rectangle
        assert len(np.unique(face[changed], axis=0)) == 16  # every pixel its own random colour
