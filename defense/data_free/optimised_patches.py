"""Optimised-patch probes: small patches whose pixels are chosen by the BadNet's own gradients.

The random probes (probes.py) reach a trigger only when a random pattern happens to look like
it. A narrow trigger, one the BadNet was taught to answer only in its exact form (a small
two-colour sticker learnt beside blended copies that keep their own label, the
`adaptive-half` worlds), is reached by random patches a few times in two thousand: no more
than any innocent label. Here each probe is a small square (MIN_SIZE-MAX_SIZE pixels a side)
at a random place on a seed face, its pixels then moved STEPS times by a signed gradient step
that lowers the BadNet's probability of the face's own label, wherever that leads. A backdoor
is the shortest way out of every face, so the optimised patches of many faces end on its
target; an innocent label is the way out of few. Untargeted on purpose: one optimisation per
face, not one per label as in Neural Cleanse (Wang et al. 2019), so the cost does not grow
with the 1283 labels.

What it cannot reach: a trigger larger than MAX_SIZE (sunglasses, a whole-face blend), which
the random families cover. What it invites: a BadNet that answers its trigger but not
gradient-chosen approximations of it (gradient masking); not measured.
"""

import numpy as np

MIN_SIZE, MAX_SIZE = 4, 8  # a side, pixels
STEPS = 10
STEP_SIZE = 32.0  # pixel levels per signed gradient step
_BATCH = 256


def optimised_patches(model, faces, input_scale, rng):
    """(N, 55, 47, 3) float32 in 0..255: faces (N, 55, 47, 3) each with one optimised patch.
    model: the BadNet as a Keras model (its gradients); input_scale: what its input expects
    per pixel level."""
    return next(optimised_patch_rounds(model, faces, input_scale, rng, rounds=1))


def optimised_patch_rounds(model, faces, input_scale, rng, rounds):
    """optimised_patches of the same faces rounds times, each round its own random squares and
    starting patterns, one round at a time (a generator: a large face set's rounds need not fit
    in memory together); the optimisation is compiled once for all of them."""
    import tensorflow as tf

    @tf.function  # compiled once per call: eager steps cost twice the time on CPU
    def optimise(faces, mask, pattern):
        own = tf.one_hot(tf.argmax(model(faces * input_scale, training=False), axis=1),
                         model.output_shape[-1])
        for _ in range(STEPS):
            with tf.GradientTape() as tape:
                tape.watch(pattern)
                probed = faces * (1 - mask) + pattern * mask
                own_probability = tf.reduce_sum(model(probed * input_scale, training=False) * own, axis=1)
                loss = tf.reduce_sum(tf.math.log(own_probability + 1e-9))
            pattern = tf.clip_by_value(pattern - tf.sign(tape.gradient(loss, pattern)) * STEP_SIZE, 0, 255)
        return faces * (1 - mask) + pattern * mask

    faces = np.asarray(faces, np.float32)
    for _ in range(rounds):
        out = np.empty_like(faces)
        for start in range(0, len(faces), _BATCH):
            batch = faces[start:start + _BATCH]
            mask, pattern = _draw(batch.shape, rng)
            out[start:start + len(batch)] = optimise(tf.constant(batch), tf.constant(mask),
                                                     tf.constant(pattern)).numpy()
        yield out


def _draw(shape, rng):
    """(mask (N, H, W, 1): one random square each, starting pattern (N, H, W, 3) uniform)."""
    count, height, width, _ = shape
    mask = np.zeros((count, height, width, 1), np.float32)
    for i in range(count):
        size = rng.integers(MIN_SIZE, MAX_SIZE + 1)
        top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
        mask[i, top:top + size, left:left + size] = 1
    return mask, rng.uniform(0, 255, shape).astype(np.float32)
