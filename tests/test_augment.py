"""Random edits: region edits local, global edits spread, both bounded, reproducible, and
leaving the caller's array alone."""

import numpy as np
import pytest

from defense.data_free.targets import ProbeSettings
from defense.fine_pruning.augment import GlobalEdits, RegionEdits
from defense.fine_pruning.fine_tuning import Recipe


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
    out = RegionEdits(gain_share=0.0, noise_share=1.0, height=(4, 4), width=(4, 4), most_per_image=1,
                      edge_share=0).apply(x, np.random.default_rng(0), max_value=1.0)
    for face in out:
        changed = (face != 0.5).any(axis=2)
        assert changed.sum() == 16  # one 4 x 4 rectangle
        assert len(np.unique(face[changed], axis=0)) == 16  # every pixel its own random colour


def test_a_share_of_rectangles_covers_the_corners():
    """A patch trigger may sit in a corner: rectangles drawn anywhere inside the image rarely
    cover a corner, rectangles put flush against the edge often do."""
    x = np.full((2000, 55, 47, 3), 0.5, np.float32)

    def border_hits(edits):
        changed = (edits.apply(x, np.random.default_rng(0), 1.0) != 0.5).any(axis=3)
        return changed[:, :4, -4:].all(axis=(1, 2)).mean()  # the whole top-right 4 x 4 corner

    anywhere, at_edge = border_hits(RegionEdits(edge_share=0)), border_hits(RegionEdits())
    assert at_edge >= 3 * anywhere and at_edge >= 0.03


@pytest.mark.parametrize("max_value", [1.0, 255.0])
def test_global_edits_are_bounded_spread_and_reproducible(max_value):
    x = _faces(300, max_value)
    before = x.copy()
    out = GlobalEdits().apply(x, np.random.default_rng(0), max_value)
    np.testing.assert_array_equal(x, before)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= max_value * (1 + 1e-6)
    edited = (out != x).any(axis=(1, 2, 3))
    assert 0.4 <= edited.mean() <= 0.6  # probability 0.5
    # An edited face is changed over a large part of it (whole face, or >= half x half).
    share = (out[edited] != x[edited]).any(axis=3).mean(axis=(1, 2))
    assert np.median(share) > 0.9 and share.min() >= 0.2
    np.testing.assert_array_equal(out, GlobalEdits().apply(x, np.random.default_rng(0), max_value))
    np.testing.assert_array_equal(GlobalEdits(probability=0).apply(x, np.random.default_rng(0), max_value), x)


def test_each_global_edit_does_what_it_says():
    x = np.full((200, 55, 47, 3), 0.5, np.float32)
    rng = np.random.default_rng(0)
    colour = GlobalEdits(probability=1, blend_share=0, colour_share=1).apply(x, rng, 1.0)
    # A colour transform moves every pixel of a flat face to the same new colour.
    assert all(len(np.unique(face.reshape(-1, 3), axis=0)) == 1 for face in colour)
    noise = GlobalEdits(probability=1, blend_share=0, colour_share=0).apply(x, rng, 1.0)
    assert np.abs(noise - 0.5).max() <= 0.1 + 1e-6  # faint: at most 10 % of the range
    assert np.mean([np.abs(face - 0.5).max() > 0 for face in noise]) == 1
    blend = GlobalEdits(probability=1, blend_share=1, whole_share=1).apply(x, rng, 1.0)
    moved = np.abs(blend - 0.5).max(axis=(1, 2, 3))
    assert moved.max() <= 0.5 * 0.4 + 1e-6  # alpha <= 0.4 towards patterns in [0, 1]


@pytest.mark.parametrize("make, field", [
    (lambda: Recipe(epochs=0), "Recipe.epochs"),
    (lambda: Recipe(learning_rate=0.0), "Recipe.learning_rate"),
    (lambda: Recipe(min_samples_per_epoch=2.5), "Recipe.min_samples_per_epoch"),
    (lambda: RegionEdits(height=(9, 3)), "RegionEdits.height"),
    (lambda: RegionEdits(gain_share=1.5), "RegionEdits.gain_share"),
    (lambda: GlobalEdits(probability=-0.1), "GlobalEdits.probability"),
    (lambda: ProbeSettings(confidence=2), "ProbeSettings.confidence"),
    (lambda: ProbeSettings(probes_per_family=0), "ProbeSettings.probes_per_family"),
])
def test_settings_check_themselves_where_python_callers_make_them(make, field):
    from defense.errors import SettingError

    with pytest.raises(SettingError, match=field):
        make()
