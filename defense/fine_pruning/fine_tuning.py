"""Fine-tuning a pruned DeepID net on clean data, with the pruned channels held at zero.

The recipe (chosen by measurement on generated worlds: docs/method.md):
- the targets are the clean faces' true labels only. The BadNet's own labels carry its
  backdoor: a BadNet gives its target to clean faces that half-fire the trigger (brows like
  the eyebrows trigger), and copying those labels teaches the trigger back;
- every training face gets random region edits (augment.py), which drive the units a
  backdoor uses while the target stays the face's identity; global edits (a blend, a colour
  transform or faint noise over the face) are an option, off by default;
- randomly shifted copies of the faces each epoch, Adam with a cosine-decaying learning rate.
A held-out slice of the clean data picks the epoch.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import SettingError, check_range
from .augment import GlobalEdits, RegionEdits


@dataclass(frozen=True)
class Recipe:
    epochs: int = 10
    learning_rate: float = 1e-3  # at the start; decays to 0 along a cosine
    copies: int = 4  # randomly shifted copies of the training faces per epoch, at least
    # An epoch trains on at least this many faces: 4 copies of the 8,981 training faces of
    # the competition's validation set; a smaller set is copied more often, so that its repair
    # gets as many updates (a few copies of a small set leave backdoors in place).
    min_samples_per_epoch: int = 32_000
    shift: int = 2  # pixels each way
    batch_size: int = 64
    edits: RegionEdits = field(default_factory=RegionEdits)
    # Off by default: on the trigger zoo they weakened blends and noise but strengthened a
    # corner patch (docs/method.md); applied before the region edits.
    global_edits: GlobalEdits = field(default_factory=lambda: GlobalEdits(probability=0.0))

    def __post_init__(self):
        for name in ("epochs", "copies", "min_samples_per_epoch", "batch_size"):
            check_range("Recipe", name, getattr(self, name), 1, integer=True)
        check_range("Recipe", "learning_rate", self.learning_rate, 0)
        if not self.learning_rate > 0:
            raise SettingError(f"Recipe.learning_rate: {self.learning_rate!r} must be above 0")
        check_range("Recipe", "shift", self.shift, 0, integer=True)
        if not isinstance(self.edits, RegionEdits) or not isinstance(self.global_edits, GlobalEdits):
            raise SettingError("Recipe.edits / global_edits: must be RegionEdits / GlobalEdits")

    def as_dict(self):
        return asdict(self)


def split_holdout(labels, per_identity=2, seed=0):
    """Indices (train, holdout): per_identity images of every identity held out."""
    rng = np.random.default_rng(seed)
    holdout = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        holdout.extend(rng.choice(members, size=min(per_identity, len(members) - 1), replace=False))
    holdout = np.sort(np.array(holdout, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), holdout), holdout


def fine_tune(model, pruned, x, y, holdout, recipe, max_value, seed=0, log=None):
    """Train model (already pruned) in place; returns (history, chosen epoch).

    x: inputs already scaled for the net, pixels in 0..max_value; y: labels;
    holdout: (x, y) held out from training, for choosing the epoch.
    """
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    one_hot = np.eye(model.output_shape[-1], dtype=np.float32)
    log = log or (lambda line: None)
    copies = copies_per_epoch(recipe, len(x))
    steps_per_epoch = -(-copies * len(x) // recipe.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, recipe.epochs * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=keras.losses.CategoricalCrossentropy())
    keep_pruned = _keep_pruned(pruned)

    history, best = [], (-1.0, None, 0)
    for epoch in range(1, recipe.epochs + 1):
        inputs = np.concatenate([_shifted(x, recipe.shift, rng) for _ in range(copies)])
        inputs = recipe.global_edits.apply(inputs, rng, max_value)
        inputs = recipe.edits.apply(inputs, rng, max_value)
        model.fit(inputs, one_hot[np.tile(y, copies)], batch_size=recipe.batch_size,
                  epochs=1, shuffle=True, verbose=0, callbacks=[keep_pruned])
        accuracy = _accuracy(model, holdout)
        history.append({"epoch": epoch, "holdout_accuracy": accuracy})
        log(f"epoch {epoch}/{recipe.epochs}: held-out accuracy {accuracy:.4f}")
        if accuracy > best[0]:
            best = (accuracy, model.get_weights(), epoch)
    model.set_weights(best[1])
    return history, best[2]


def copies_per_epoch(recipe, faces):
    return max(recipe.copies, -(-recipe.min_samples_per_epoch // faces))


def _accuracy(model, data):
    x, y = data
    return float(np.mean(model.predict(x, batch_size=1024, verbose=0).argmax(axis=1) == y))


def _shifted(x, shift, rng):
    """x with each image translated by up to shift pixels (edges repeated)."""
    if not shift:
        return x
    padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * shift + 1, size=(2, len(x)))
    h, w = x.shape[1:3]
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def _keep_pruned(channels):
    """A Keras callback zeroing the pruned conv_3 channels after every batch, so they stay
    exactly zero (built here: Keras is imported only when training)."""
    import keras

    from .pruning import zero_channels

    class KeepPruned(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            zero_channels(self.model, channels)

    return KeepPruned()
