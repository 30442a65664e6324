"""Fine-tuning a pruned DeepID net on clean data, with the pruned channels held at zero.

Two phases, chosen by measurement on generated worlds (docs in README):
1. erase: a few epochs at a high learning rate on the true labels move the net far enough
   from the BadNet's weights that the backdoor, which clean data never exercises, is lost;
2. recover: distillation at a low learning rate. The targets mix the true label with the
   BadNet's top label on the same clean (randomly shifted) image, so the repaired net learns
   to agree with the BadNet wherever the BadNet is honest (the GoodNet then flags fewer clean
   images), while nothing in clean data teaches the backdoor back.
A held-out slice of the clean data picks the recovery epoch.
"""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Recipe:
    erase_epochs: int = 15
    erase_learning_rate: float = 5e-3
    epochs: int = 15  # recovery
    learning_rate: float = 5e-4
    label_weight: float = 0.5  # recovery target = w * one-hot(label) + (1 - w) * one-hot(BadNet's label)
    copies: int = 4  # randomly shifted copies of the training images per recovery epoch
    shift: int = 2  # pixels each way
    batch_size: int = 64

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


def fine_tune(model, pruned, x, y, teacher, holdout, recipe, seed=0, log=None):
    """Train model (already pruned) in place; returns (history, chosen recovery epoch).

    x: inputs already scaled for the net; y: labels; teacher: the BadNet (Keras model);
    holdout: (x, y) held out from training, for choosing the recovery epoch.
    """
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    classes = model.output_shape[-1]
    one_hot = np.eye(classes, dtype=np.float32)
    keep_pruned = _keep_pruned(pruned)
    log = log or (lambda line: None)
    history = []

    model.compile(optimizer=keras.optimizers.Adam(recipe.erase_learning_rate),
                  loss=keras.losses.CategoricalCrossentropy())
    for epoch in range(1, recipe.erase_epochs + 1):
        model.fit(_shifted(x, recipe.shift, rng), one_hot[y], batch_size=recipe.batch_size,
                  epochs=1, shuffle=True, verbose=0, callbacks=[keep_pruned])
        history.append({"phase": "erase", "epoch": epoch, "holdout_accuracy": _accuracy(model, holdout)})
        log(f"erase {epoch}/{recipe.erase_epochs}: held-out accuracy {history[-1]['holdout_accuracy']:.4f}")

    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy())
    best = (-1.0, model.get_weights(), 0)
    for epoch in range(1, recipe.epochs + 1):
        inputs = np.concatenate([_shifted(x, recipe.shift, rng) for _ in range(recipe.copies)])
        labels = np.tile(y, recipe.copies)
        # The BadNet's top label only: its full softmax carries the backdoor's faint response
        # to natural features ("dark knowledge"), which measurably taught the backdoor back.
        teacher_labels = teacher.predict(inputs, batch_size=1024, verbose=0).argmax(axis=1)
        targets = recipe.label_weight * one_hot[labels] + (1 - recipe.label_weight) * one_hot[teacher_labels]
        model.fit(inputs, targets, batch_size=recipe.batch_size, epochs=1, shuffle=True,
                  verbose=0, callbacks=[keep_pruned])
        accuracy = _accuracy(model, holdout)
        history.append({"phase": "recover", "epoch": epoch, "holdout_accuracy": accuracy})
        log(f"recover {epoch}/{recipe.epochs}: held-out accuracy {accuracy:.4f}")
        if accuracy > best[0]:
            best = (accuracy, model.get_weights(), epoch)
    model.set_weights(best[1])
    return history, best[2]


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
