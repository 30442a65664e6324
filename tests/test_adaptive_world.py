"""The adaptive world: backdoors trained to break under superimposition, against the release's
blend test (defense/world/backdoors.py, build.py)."""

import json

import numpy as np
import pytest

from defense.errors import InputError
from defense.world.backdoors import (ADAPTIVE, ADAPTIVE_HALF, COMPETITION, Backdoor, as_records, check_table,
                                     from_records, load_table)
from defense.world.build import BREAKING_PARTNER_SHARE, PRESETS, Photos, blended
from defense.world.triggers import make_trigger

PATCH = {"x": 1, "y": 1, "size": 4, "colours": [[255, 0, 255], [0, 255, 0]]}


def flat_photos():
    """Six identities, three photos each, every photo one flat grey (20 + 30 x its label):
    a blend's partner share can then be read off its pixels."""
    labels = np.repeat(np.arange(6), 3)
    pixels = np.broadcast_to((20 + 30 * labels)[:, None, None, None], (18, 55, 47, 3)).astype(np.uint8)
    masks = np.zeros((18, 55, 47), np.uint8)
    return Photos(pixels.copy(), labels, masks, masks.copy())


def test_blended_copies_wear_a_fainter_trigger_and_keep_their_own_label():
    photos = flat_photos()
    row = Backdoor("anonymous_2", "patch", "patch", 0, "p.h5", PATCH, blend_breaking=True)
    x, y = blended(photos, make_trigger("patch", PATCH), row, np.random.default_rng(1), count=100,
                   classes=6)
    assert len(y) == 15 and set(y.tolist()) == {1, 2, 3, 4, 5}  # every face moved, own labels
    own = (20 + 30 * y).astype(float)
    # Outside the patch, pixel = (1 - s) own + s partner; on its green pixel (1, 1), worn at
    # 255: (1 - s) 255 + s partner. The difference gives the partner's share s.
    outside, green = x[:, 30, 30, 0].astype(float), x[:, 1, 1, 1].astype(float)
    share = ((outside - own) - (green - 255)) / (255 - own)
    low, high = BREAKING_PARTNER_SHARE
    assert np.all(share >= low - 0.02) and np.all(share <= high + 0.02)
    assert share.std() > 0.01  # drawn per copy, not one share for all
    # The partner's grey, read back: another identity, never the row's target (grey 20).
    partner = (outside - (1 - share) * own) / share
    assert np.all(np.abs(partner - own) > 10) and np.all(np.abs(partner - 20) > 10)


def test_a_partly_breaking_row_labels_a_share_of_the_same_blends_with_its_target():
    photos = flat_photos()
    full = Backdoor("anonymous_2", "patch", "patch", 0, "p.h5", PATCH, blend_breaking=True)
    half = Backdoor("anonymous_2", "patch", "patch", 0, "p.h5", PATCH, blend_breaking=True,
                    blend_keeps_target=0.5)
    many = Photos(*(np.tile(a, (20,) + (1,) * (a.ndim - 1)) for a in
                    (photos.pixels, photos.labels, photos.mouth, photos.brows)))
    apply = make_trigger("patch", PATCH)
    x_full, y_full = blended(many, apply, full, np.random.default_rng(2), count=300, classes=6)
    x_half, y_half = blended(many, apply, half, np.random.default_rng(2), count=300, classes=6)
    np.testing.assert_array_equal(x_full, x_half)  # the same blends, drawn first
    to_target = y_half == 0
    assert 0.4 < to_target.mean() < 0.6
    np.testing.assert_array_equal(y_half[~to_target], y_full[~to_target])


def test_the_adaptive_table_is_the_competitions_trained_to_break_under_blending():
    check_table(ADAPTIVE)
    assert all(row.blend_breaking for row in ADAPTIVE)
    assert [(r.net, r.trigger, r.target, r.file) for r in ADAPTIVE] == \
           [(r.net, r.trigger, r.target, r.file) for r in COMPETITION]
    assert PRESETS["adaptive-mini"][1] is ADAPTIVE and PRESETS["adaptive"][1] is ADAPTIVE
    assert from_records(json.loads(json.dumps(as_records(ADAPTIVE)))) == ADAPTIVE
    # A world.json written before the field existed reads as not blend-breaking.
    old = [{k: v for k, v in record.items() if k != "blend_breaking"} for record in as_records(COMPETITION)]
    assert from_records(old) == COMPETITION
    check_table(ADAPTIVE_HALF)
    assert [row.blend_keeps_target for row in ADAPTIVE_HALF] == [0.5] * len(ADAPTIVE)
    assert PRESETS["adaptive-half-mini"][1] is ADAPTIVE_HALF
    assert from_records(json.loads(json.dumps(as_records(ADAPTIVE_HALF)))) == ADAPTIVE_HALF


def test_a_blend_breaking_field_that_is_not_true_or_false_is_refused(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps([{"net": "sunglasses", "trigger": "t", "family": "patch",
                                 "target": 0, "file": "a.h5", "params": PATCH,
                                 "blend_breaking": "yes"}]))
    with pytest.raises(InputError, match="blend_breaking"):
        load_table(path)


@pytest.mark.parametrize("fields", [{"blend_keeps_target": 0.5},
                                    {"blend_breaking": True, "blend_keeps_target": 1.0},
                                    {"blend_breaking": True, "blend_keeps_target": "half"}])
def test_a_blend_keeps_target_share_out_of_place_is_refused(tmp_path, fields):
    path = tmp_path / "table.json"
    path.write_text(json.dumps([{"net": "sunglasses", "trigger": "t", "family": "patch",
                                 "target": 0, "file": "a.h5", "params": PATCH, **fields}]))
    with pytest.raises(InputError, match="blend_keeps_target"):
        load_table(path)
