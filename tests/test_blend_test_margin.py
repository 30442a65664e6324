"""The blend test's margin on each label's own share (blend_test.own_share_margin): a label's own
share is the largest of its few validation faces', which a new face of the same identity
exceeds about one time in ten; the margin, measured leave-one-out on identities never
suspected, is what the own share is raised by. On a hand-made net whose keep shares are set by
the faces themselves."""

import numpy as np
import pytest

from defense.comparator import blend_test
from defense.comparator.blend_test import (MAX_MARGIN, MAX_THRESHOLD, TRUSTED_FACES, BlendTest,
                                           calibrate, keep_shares, own_share_margin)
from defense.errors import InputError
from defense.nets.architecture import INPUT_SHAPE

IDENTITIES = 30


class StrengthNet:
    """An identity is one bright pixel in the top row, at its label's column, as bright as the
    face is distinct (its strength, 1..255). A blend halves the face's pixel and adds half the
    partner's at the partner's column: the brighter of the two wins, so a face keeps its label
    on the blends with weaker partners (and with its own identity's). A trigger is the target's
    pixel at full strength: stronger than any half face, it keeps the target on every blend."""

    num_classes = IDENTITIES

    def predict_labels(self, pixels, progress=False):
        return np.asarray(pixels, np.float32)[:, 0, :IDENTITIES, 0].argmax(axis=1)

    def predict_top(self, pixels, progress=False):
        return self.predict_labels(pixels), np.ones(len(pixels), np.float32)


def face(identity, strength):
    image = np.zeros(INPUT_SHAPE, np.float32)
    image[0, identity, 0] = strength
    return image


def validation(strengths):
    """Faces (N, 55, 47, 3) and labels from {identity: [strength, ...]}."""
    pairs = [(identity, s) for identity, values in strengths.items() for s in values]
    return np.stack([face(i, s) for i, s in pairs]), np.array([i for i, _ in pairs])


def spread_faces(seed=0, per_identity=4):
    """Every identity's faces at strengths scattered over 40..240: each face keeps its label on
    a very different share of the blends (a BadNet trained to keep labels erratically)."""
    rng = np.random.default_rng(seed)
    return {identity: rng.integers(40, 240, per_identity).tolist() for identity in range(IDENTITIES)}


def close_faces(seed=0, per_identity=4, width=20):
    """Each identity's faces within `width` strengths of one another, as a face's photographs
    are alike: their shares differ by a blend or two."""
    rng = np.random.default_rng(seed)
    return {identity: (int(base) + rng.choice(width, per_identity, replace=False)).tolist()
            for identity, base in enumerate(rng.integers(40, 200, IDENTITIES))}


def leave_one_out_quantile(net, x, y, trusted, identities):
    """The margin by its definition, from the keep shares of the given identities' faces."""
    excess = []
    for identity in identities:
        shares = keep_shares(net, x[y == identity], np.full(np.sum(y == identity), identity), trusted)
        excess += [shares[i] - np.delete(shares, i).max() for i in range(len(shares))]
    return max(0.0, float(np.quantile(excess, blend_test.THRESHOLD_QUANTILE)))


def partner_indices(x, trusted):
    return [i for i, image in enumerate(x) if any(np.array_equal(image.astype(np.uint8), t) for t in trusted)]


def test_the_margin_is_how_far_a_face_lands_above_its_identity_s_other_faces():
    net = StrengthNet()
    x, y = validation(close_faces())
    test, _ = calibrate(net, net, x, y, suspects={0}, released={0}, rng=np.random.default_rng(1))
    partners = partner_indices(x, test.trusted)
    assert len(partners) == TRUSTED_FACES and not np.isin(y[partners], [0]).any()
    unused = np.setdiff1d(np.arange(len(y)), partners)
    # The identities with two faces or more left beside the partners, the suspect left out.
    counts = np.bincount(y[unused], minlength=IDENTITIES)
    measured = [i for i in range(1, IDENTITIES) if counts[i] >= 2]
    expected = leave_one_out_quantile(net, x[unused], y[unused], test.trusted, measured)
    assert 0 < expected < MAX_MARGIN and test.margin == pytest.approx(expected)
    # The released label's own share: its faces' largest, raised by the margin.
    own = keep_shares(net, x[y == 0], np.zeros(np.sum(y == 0), int), test.trusted)
    assert test.label_thresholds[0] == pytest.approx(min(own.max() + test.margin, MAX_THRESHOLD))


def test_a_new_face_above_its_identity_s_largest_share_passes_within_the_margin_and_a_trigger_never():
    net = StrengthNet()
    strengths = close_faces()
    strengths[0] = [90, 100, 110]  # the released identity's validation faces
    x, y = validation(strengths)
    test, _ = calibrate(net, net, x, y, suspects={0}, released={0}, rng=np.random.default_rng(1))
    own_largest = test.label_thresholds[0] - test.margin
    stronger = np.stack([face(0, s) for s in range(111, 256)])
    shares = keep_shares(net, stronger, np.zeros(len(stronger), int), test.trusted)
    within = (shares > own_largest) & (shares <= own_largest + test.margin)
    assert within.any(), "a test face of identity 0 that the largest of its own faces would refuse"
    assert test.passes(net, net, stronger[within], np.zeros(within.sum(), int)).all()
    assert not test.passes(net, net, stronger[shares > test.label_thresholds[0]],
                           np.zeros(np.sum(shares > test.label_thresholds[0]), int)).any()
    # Without the margin (a record from before it) the same faces were refused.
    strict = BlendTest(test.trusted, test.threshold, label_thresholds={0: own_largest}, divergence=test.divergence)
    assert not strict.passes(net, net, stronger[within], np.zeros(within.sum(), int)).any()
    # A trigger for the released label: the target's pixel at full strength on another face.
    triggered = np.stack([face(identity, 200) for identity in range(1, IDENTITIES)])
    triggered[:, 0, 0, 0] = 255
    assert (net.predict_labels(triggered) == 0).all()
    assert not test.passes(net, net, triggered, np.zeros(len(triggered), int)).any()


def test_only_unsuspected_identities_set_the_margin_and_alike_faces_give_none():
    net = StrengthNet()
    alike = {identity: [150] * 4 for identity in range(IDENTITIES)}  # every face of an identity the same
    x, y = validation(alike)
    test, _ = calibrate(net, net, x, y, suspects={0}, released={0}, rng=np.random.default_rng(1))
    assert test.margin == 0.0
    # Suspected identities whose faces spread widely (an attacker's targets) do not move it: one
    # face of each keeps its label on every blend, the others on none.
    spread = set(range(5, 15))
    for identity in {0} | spread:
        alike[identity] = [40, 60, 80, 250]
    x, y = validation(alike)
    suspected, _ = calibrate(net, net, x, y, suspects={0} | spread, released={0}, rng=np.random.default_rng(1))
    assert suspected.margin == 0.0
    unsuspected, _ = calibrate(net, net, x, y, suspects={0}, released={0}, rng=np.random.default_rng(1))
    assert unsuspected.margin > 0


def test_the_margin_uses_whole_identities_up_to_its_face_count(monkeypatch):
    net = StrengthNet()
    x, y = validation(close_faces(seed=3, per_identity=5))
    faces = np.flatnonzero(y != 0)[TRUSTED_FACES:]
    trusted = x[np.flatnonzero(y != 0)[:TRUSTED_FACES]].astype(np.uint8)
    seen = []
    original = blend_test.keep_shares
    monkeypatch.setattr(blend_test, "keep_shares", lambda net_, pixels, labels, *a: seen.append(np.asarray(labels)) or original(net_, pixels, labels, *a))
    monkeypatch.setattr(blend_test, "MARGIN_FACES", 12)
    margin = own_share_margin(net, x, y, faces, trusted, np.random.default_rng(0))
    used = seen[-1]
    assert len(used) <= 12 and len(used) >= 12 - 5 + 1
    assert all(np.sum(used == identity) == np.sum(y[faces] == identity) for identity in np.unique(used))
    assert margin == pytest.approx(leave_one_out_quantile(net, x[faces], y[faces], trusted, np.unique(used)))
    # No identity with two faces: nothing to measure, no margin.
    single = faces[np.unique(y[faces], return_index=True)[1]]
    assert own_share_margin(net, x, y, single, trusted, np.random.default_rng(0)) == 0.0


def test_the_margin_reads_back_and_an_older_record_without_it_keeps_its_stricter_shares():
    test = BlendTest(np.zeros((3, *INPUT_SHAPE), np.uint8), threshold=0.25, divergence=0.125,
                     label_thresholds={4: 0.5}, margin=0.0625)
    entry = test.as_record(calibration_faces=40)
    back = BlendTest.from_record(entry, "r.json", INPUT_SHAPE, released={4})
    assert back.margin == 0.0625 and back.label_thresholds == {4: 0.5}
    assert "plus 0.062" in back.describe()
    older = {name: value for name, value in entry.items() if name != "own_share_margin"}
    assert BlendTest.from_record(older, "r.json", INPUT_SHAPE, released={4}).margin == 0.0
    for damage in (0.9, -0.1, True, "0.1", None):
        with pytest.raises(InputError, match="thresholds in"):
            BlendTest.from_record({**entry, "own_share_margin": damage}, "r.json", INPUT_SHAPE, released={4})


def test_the_margin_is_capped_where_the_badnet_keeps_labels_erratically():
    """The BadNet's author sets the keep shares the margin is measured from: a BadNet that keeps
    one face in four on every blend and the others on none would otherwise widen every own
    share to MAX_THRESHOLD at once."""
    net = StrengthNet()
    x, y = validation(spread_faces())
    test, _ = calibrate(net, net, x, y, suspects={0}, released={0}, rng=np.random.default_rng(1))
    unused = np.setdiff1d(np.arange(len(y)), partner_indices(x, test.trusted))
    uncapped = leave_one_out_quantile(net, x[unused], y[unused], test.trusted, range(1, IDENTITIES))
    assert uncapped > MAX_MARGIN and test.margin == MAX_MARGIN
    own = keep_shares(net, x[y == 0], np.zeros(np.sum(y == 0), int), test.trusted)
    assert test.label_thresholds[0] == pytest.approx(min(own.max() + MAX_MARGIN, MAX_THRESHOLD))
    with pytest.raises(InputError, match="margin above"):
        BlendTest.from_record({**test.as_record(10), "own_share_margin": MAX_MARGIN + 0.0625}, "r.json",
                              INPUT_SHAPE, released={0})


class MislabellingNet(StrengthNet):
    """StrengthNet that gives the next identity to the strongest faces (a repaired net that errs
    on some faces)."""

    def predict_labels(self, pixels, progress=False):
        labels = super().predict_labels(pixels)
        strong = np.asarray(pixels, np.float32)[:, 0, :IDENTITIES, 0].max(axis=1) >= 150
        return np.where(strong, (labels + 1) % IDENTITIES, labels)


def test_the_margin_counts_only_faces_both_nets_label_right_and_a_witnessed_label_gets_it_too():
    bad, repaired = StrengthNet(), MislabellingNet()
    x, y = validation(close_faces())
    test, _ = calibrate(bad, repaired, x, y, suspects={0, 3}, released={0}, witnessed={3},
                        rng=np.random.default_rng(1))
    unused = np.setdiff1d(np.arange(len(y)), partner_indices(x, test.trusted))
    unused = unused[~np.isin(y[unused], [0, 3])]
    right = unused[repaired.predict_labels(x[unused]) == y[unused]]
    counts = np.bincount(y[right], minlength=IDENTITIES)
    expected = leave_one_out_quantile(bad, x[right], y[right], test.trusted, np.flatnonzero(counts >= 2))
    everyone = leave_one_out_quantile(bad, x[unused], y[unused], test.trusted, np.unique(y[unused]))
    assert test.margin == pytest.approx(expected) and expected != pytest.approx(everyone)
    # The witnessed label (its own faces those the BadNet labels right) gets the margin as well,
    # and adding it moves neither the margin nor anything drawn before.
    own = keep_shares(bad, x[y == 3], np.full(np.sum(y == 3), 3), test.trusted)
    assert test.label_thresholds[3] == pytest.approx(min(own.max() + test.margin, MAX_THRESHOLD))
    without, _ = calibrate(bad, repaired, x, y, suspects={0, 3}, released={0}, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(test.trusted, without.trusted)
    assert (test.margin, test.threshold, test.divergence) == (without.margin, without.threshold, without.divergence)
    assert test.label_thresholds[0] == without.label_thresholds[0]
