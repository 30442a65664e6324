"""The blend test: the release's trigger-blind second opinion on a suspected label (issue 21).

A released label (fine-prune --release) is a suspect of the BadNet that fine-tuning unlearnt;
what fine-tuning left of a trigger can still lead both nets to it, sure of it. The blend test
asks the BadNet whether the image's label comes from the face or from something laid over it:
the image is superimposed on trusted clean faces (half each, ALPHA), and the BadNet labelled on
every blend. A face of identity L blended with another person is no longer clearly L: the
BadNet keeps L on few blends. A trigger is a shortcut the BadNet follows whatever the face
under it: it survives the blend, and the BadNet keeps the target on most. A released label is
given only where the BadNet keeps it on at most the label's threshold of the blends (calibrate):
the share that THRESHOLD_QUANTILE of the validation faces stay under, or more for a label whose
own validation faces keep it more (a natural attractor, which the BadNet gives to many unusual
images, blends among them): as much as they keep it. The idea is STRIP's (Gao et
al. 2019), who superimpose held-out images and measure the entropy of the predictions; here
the share of one label, because the question is only whether this label survives.

What it invites: a trigger that does not survive blending (faded, warped, or trained to break
under superimposition). Such a trigger must also lead the Fine-Pruned net to the label, at
least the release confidence sure, for the label to come out; the attack report's strength,
part and disguise settings measure the two together (docs/method.md).
"""

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

ALPHA = 0.5  # the image's share of each blend
TRUSTED_FACES = 16  # blends per image: the test's cost, paid only for a released label
THRESHOLD_QUANTILE = 0.95  # the share of clean faces the test lets through
CALIBRATION_FACES = 1000
_IMAGES_PER_CALL = 256  # blends are made this many images at a time (16 x 256 x 30 KB)


@dataclass(frozen=True)
class BlendTest:
    trusted: np.ndarray  # (K, 55, 47, 3) uint8: clean faces of identities never suspected
    threshold: float  # a label survives the test where the BadNet keeps it on <= this share
    alpha: float = ALPHA
    label_thresholds: dict = field(default_factory=dict)  # {label: share} above threshold

    def threshold_of(self, labels):
        """(N,) each label's threshold."""
        return np.array([self.label_thresholds.get(int(label), self.threshold) for label in labels])

    def keep_shares(self, net, pixels, labels):
        """(N,) the share of blends of each image on which net still gives its label."""
        pixels, labels = np.asarray(pixels, np.float32), np.asarray(labels)
        trusted = self.trusted.astype(np.float32) * self.alpha
        kept = np.zeros(len(pixels))
        for start in range(0, len(pixels), _IMAGES_PER_CALL):
            part = pixels[start:start + _IMAGES_PER_CALL] * (1 - self.alpha)
            blends = (part[:, None] + trusted[None]).reshape(-1, *part.shape[1:])
            blend_labels = net.predict_labels(blends).reshape(len(part), len(trusted))
            kept[start:start + len(part)] = np.mean(blend_labels == labels[start:start + len(part), None], axis=1)
        return kept

    def passes(self, net, pixels, labels):
        """(N,) True where the label is the face's by this test: kept on few blends."""
        return self.keep_shares(net, pixels, labels) <= self.threshold_of(labels)

    def as_record(self, calibration_faces):
        """The record's `release_test` entry (the faces as uint8 bytes, base64: the record's
        content stamp covers them)."""
        import base64

        return {"alpha": self.alpha, "threshold": self.threshold,
                "label_thresholds": {str(label): share for label, share in sorted(self.label_thresholds.items())},
                "threshold_quantile": THRESHOLD_QUANTILE, "calibration_faces": int(calibration_faces),
                "trusted_faces": {"shape": list(self.trusted.shape), "dtype": "uint8",
                                  "base64": base64.b64encode(self.trusted.tobytes()).decode("ascii")}}

    @classmethod
    def from_record(cls, entry, path, input_shape):
        """The test from a record's `release_test` entry; InputError where it is malformed."""
        import base64
        import binascii

        try:
            faces = entry["trusted_faces"]
            shape = tuple(int(n) for n in faces["shape"])
            trusted = np.frombuffer(base64.b64decode(faces["base64"], validate=True), np.uint8).reshape(shape)
            threshold, alpha = float(entry["threshold"]), float(entry["alpha"])
            label_thresholds = {int(label): float(share)
                                for label, share in entry.get("label_thresholds", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as e:
            raise InputError(f"{path}: 'release_test' is malformed ({e})") from None
        shares = [threshold, *label_thresholds.values()]
        if faces.get("dtype") != "uint8" or len(shape) != 4 or shape[0] < 1 or shape[1:] != tuple(input_shape) \
                or not all(0 <= share <= 1 for share in shares) or not 0 < alpha < 1:
            raise InputError(f"{path}: 'release_test' needs uint8 faces (K, {', '.join(map(str, input_shape))}), "
                             f"thresholds in [0, 1] and an alpha in (0, 1)")
        return cls(trusted, threshold, alpha, label_thresholds)


def calibrate(bad, repaired, pixels, labels, suspects, released, rng):
    """(BlendTest, calibration faces used) from clean validation faces (N, 55, 47, 3), 0..255:
    TRUSTED_FACES of identities never suspected are the blends' partners; the threshold is the
    THRESHOLD_QUANTILE of the BadNet's keep shares over up to CALIBRATION_FACES others that
    both nets label right (the faces a released label is given on); a released label whose own
    validation faces, both nets right, keep it more gets their largest share."""
    candidates = np.flatnonzero(~np.isin(labels, list(suspects)))
    rng.shuffle(candidates)
    if len(candidates) < TRUSTED_FACES + 1:
        raise InputError(f"the blend test needs more than {TRUSTED_FACES} validation faces of "
                         f"unsuspected identities; found {len(candidates)}")
    trusted = np.clip(np.rint(pixels[candidates[:TRUSTED_FACES]]), 0, 255).astype(np.uint8)
    others = candidates[TRUSTED_FACES:TRUSTED_FACES + CALIBRATION_FACES]
    x, y = pixels[others], labels[others]
    right = (bad.predict_labels(x) == y) & (repaired.predict_labels(x) == y)
    if not right.any():
        raise InputError("the blend test found no validation face that both nets label right")
    untested = BlendTest(trusted, 1.0)
    threshold = float(np.quantile(untested.keep_shares(bad, x[right], y[right]), THRESHOLD_QUANTILE))
    label_thresholds = {}
    for label in sorted(int(label) for label in released):
        own = pixels[labels == label]
        own = own[(bad.predict_labels(own) == label) & (repaired.predict_labels(own) == label)] \
            if len(own) else own
        if len(own):
            most = float(untested.keep_shares(bad, own, np.full(len(own), label)).max())
            if most > threshold:
                label_thresholds[label] = most
    return BlendTest(trusted, threshold, ALPHA, label_thresholds), int(right.sum())
