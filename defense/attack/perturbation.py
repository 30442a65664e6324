"""Perturbations crafted on the public nets (`attack --perturb EPS`): triggered faces moved by at
most EPS pixel levels so that the nets the GoodNet trusts read them as the trigger's target.

The competition's BadNets are public, and so are a `--siblings` repair's siblings (the record
names their files and sha256). A white-box attacker who has read siblings.py takes each triggered
face as planted and runs projected gradient descent (Madry et al. 2018): STEPS signed steps of
EPS/8 pixel levels on the summed -log p(target) of the BadNet and of every sibling as the GoodNet
reads it (its softmax averaged over the nine views, siblings.view_probabilities), each step kept
within EPS of the face and within 0..255, the result rounded to 8-bit pixels as a delivered image
is. The trigger stays: the perturbation is added to the face wearing it.

Not attacked: the repaired net (a data-free one never gives a quarantined label itself; a
Fine-Pruned one is the defender's, not published) and `--release`'s witness, whose seed is drawn
at random and kept nowhere. Against a GoodNet without siblings the perturbation aims at the BadNet
alone. Needs TensorFlow (the nets' gradients); about 28 forward and backward passes an image a
step with three siblings.
"""

import numpy as np

from ..comparator.siblings import VIEW_SHIFT, views_of_padded

STEPS = 20
STEP_SHARE = 1 / 8  # of EPS a step
BATCH = 64  # faces at a time (a sibling's nine views make nine times as many images)


class PublicNets:
    """The nets an attacker crafts on: the BadNet, and the siblings through their views."""

    def __init__(self, bad_path, sibling_paths, input_scale):
        from ..nets.model_io import load_keras_model
        from ..nets.net import quiet_tensorflow

        # Quiet, and with oneDNN as training runs: about twice as fast on CPU. Its float sums may
        # differ between runs (a perturbation with them by a level here and there), and so would a
        # Keras-path label in this process; the GoodNets label through ONNX artefacts (fast_net).
        quiet_tensorflow(onednn=True)

        self.bad = _logits(load_keras_model(bad_path))
        self.siblings = [_logits(load_keras_model(path)) for path in sibling_paths]
        self.input_scale = float(input_scale)
        self._step = None

    @classmethod
    def of(cls, good, bad_path, input_scale):
        """The public nets of a GoodNet (comparator.goodnet.GoodNet) made from bad_path: its
        siblings where they judge every label (the committee), else those that vouch for some
        label (the only ones it asks); an unasked sibling's gradient would only blunt the attack."""
        siblings = good.siblings.entry.asked if good.siblings is not None else ()
        return cls(bad_path, [s.path for s in siblings], input_scale)

    def describe(self):
        return "the BadNet" + (f" and {len(self.siblings)} sibling BadNets through their nine views"
                               if self.siblings else "")

    def craft(self, faces, targets, eps):
        """faces (N, 55, 47, 3) uint8 moved by at most eps levels towards targets (N,): uint8."""
        import tensorflow as tf

        faces = np.asarray(faces, np.uint8)
        if eps <= 0 or len(faces) == 0:
            return faces.copy()
        step = self._compiled()
        eps = tf.constant(float(eps), tf.float32)
        out = np.empty_like(faces)
        for start in range(0, len(faces), BATCH):
            origin = tf.constant(faces[start:start + BATCH], tf.float32)
            wanted = tf.constant(np.asarray(targets[start:start + BATCH]), tf.int64)
            pixels = origin
            for _ in range(STEPS):
                pixels = step(pixels, origin, wanted, eps)
            # Rounded, still within eps and 0..255: the faces are whole levels, eps a whole number.
            out[start:start + BATCH] = np.round(pixels.numpy()).astype(np.uint8)
        return out

    def loss(self, pixels, targets):
        """The summed -log p(target) (N,) of the BadNet and of each sibling's nine-view average,
        from logits: a softmax that underflows to 0 for the target would give no gradient."""
        import tensorflow as tf

        total = -_log_target(self.bad(pixels * self.input_scale, training=False), targets)
        for sibling in self.siblings:
            views = _views(pixels)
            logits = sibling(tf.concat(views, axis=0) * self.input_scale, training=False)
            per_view = tf.reshape(_log_target(logits, tf.tile(targets, [len(views)])), (len(views), -1))
            # log of the views' mean probability
            total -= tf.reduce_logsumexp(per_view, axis=0) - np.log(len(views))
        return total

    def _compiled(self):
        import tensorflow as tf

        if self._step is None:
            @tf.function(reduce_retracing=True)  # eager steps cost twice the time on CPU
            def step(pixels, origin, targets, eps):
                with tf.GradientTape() as tape:
                    tape.watch(pixels)
                    loss = tf.reduce_sum(self.loss(pixels, targets))
                moved = pixels - tf.sign(tape.gradient(loss, pixels)) * eps * STEP_SHARE
                return tf.clip_by_value(tf.clip_by_value(moved, origin - eps, origin + eps), 0.0, 255.0)

            self._step = step
        return self._step


def _logits(model):
    """model (DeepID, softmax output) as a function of the same input giving its logits."""
    import keras

    output = model.get_layer("output")
    penultimate = keras.Model(model.inputs, output.input)

    def logits(pixels, training=False):
        return penultimate(pixels, training=training) @ output.kernel + output.bias

    return logits


def _log_target(logits, targets):
    """log softmax(logits)[target], (N,)."""
    import tensorflow as tf

    return tf.gather(tf.nn.log_softmax(logits), targets, axis=1, batch_dims=1)


def _views(pixels):
    """The views siblings.view_probabilities takes of pixels (N, H, W, 3), as tensors: the
    tensor padded by VIEW_SHIFT with its edge pixels repeated (np.pad's "edge"), then sliced."""
    import tensorflow as tf

    height, width = pixels.shape[1], pixels.shape[2]
    rows = np.clip(np.arange(-VIEW_SHIFT, height + VIEW_SHIFT), 0, height - 1)
    columns = np.clip(np.arange(-VIEW_SHIFT, width + VIEW_SHIFT), 0, width - 1)
    return views_of_padded(tf.gather(tf.gather(pixels, rows, axis=1), columns, axis=2), height, width)
