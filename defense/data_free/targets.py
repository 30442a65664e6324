"""Finding a BadNet's attack targets without data: which labels do random probes reach?

Seeds are a few clean face images the user trusts (shifted, mirrored, lit differently)
and Gaussian noise images; every seed set is probed with every probe family (probes.py).
A probe "reaches" a label when the BadNet gives it that label, confidently (softmax
>= `confidence`), and not the label it gave the unprobed seed. For each (seed set, family)
the labels reached are counted; the bulk of labels is reached a few times each, an
attack's target hundreds of times. A label's score is its count over the reference level
(the median count of the labels ranked 2nd to 21st), in Poisson standard deviations:
(count - reference) / sqrt(reference + 1). A label is suspected where any seed set and
family scores it >= `min_score`; at most `most_suspects` labels, highest score first.

With the BadNet's Keras model at hand (the data-free repair), the seed faces are also probed
with optimised patches (optimised_patches.py): small squares whose pixels the BadNet's own
gradients choose, scored as one more family ("faces/optimised patch").

Why both seed sets: on the real competition BadNets, probed faces single out every target
but multi_trigger's sunglasses target (8), which probed noise singles out; noise also
singles out a few labels that are not targets (a cheap mistake: quarantining a label costs
the clean faces of that one identity).
"""

from dataclasses import asdict, dataclass

import numpy as np

from ..nets.architecture import INPUT_SHAPE
from ..errors import check_range
from ..nets.fast_net import predict_top_on_every_core
from . import probe_cache
from .optimised_patches import optimised_patches
from .probes import FAMILIES, probe

NOISE_MEAN, NOISE_STD = 128.0, 50.0


@dataclass(frozen=True)
class ProbeSettings:
    probes_per_family: int = 2000  # probed images per seed set and family
    confidence: float = 0.9
    min_score: float = 6.0
    most_suspects: int = 16
    shift: int = 3  # seed faces: shifted by up to this many pixels, mirrored, re-lit
    optimised_patches: int = 1024  # seed faces probed with an optimised patch (0: none)

    def __post_init__(self):
        check_range("ProbeSettings", "probes_per_family", self.probes_per_family, 1, integer=True)
        check_range("ProbeSettings", "confidence", self.confidence, 0, 1)
        check_range("ProbeSettings", "min_score", self.min_score, 0)
        check_range("ProbeSettings", "most_suspects", self.most_suspects, 0, integer=True)
        check_range("ProbeSettings", "shift", self.shift, 0, integer=True)
        check_range("ProbeSettings", "optimised_patches", self.optimised_patches, 0, integer=True)

    def as_dict(self):
        return asdict(self)


def seed_sets(faces, count, rng, shift):
    """{name: pixels (count, 55, 47, 3) float32}: re-lit copies of the faces (if any), noise."""
    sets = {}
    if len(faces):
        sets["faces"] = _varied_faces(np.asarray(faces, np.float32), count, rng, shift)
    sets["noise"] = np.clip(rng.normal(NOISE_MEAN, NOISE_STD, (count, *INPUT_SHAPE)), 0, 255).astype(np.float32)
    return sets


def find_targets(net, faces, settings=ProbeSettings(), seed=0, progress=None, gradients=None,
                 cache_key=None):
    """(suspected labels, scores, whether the random families' counts were read from the
    cache) for a net with predict_top (net.Net or fast_net.OnnxNet).
    gradients: (Keras model, input scale) of the same net, for the optimised patches (where
    settings ask for them and there are seed faces); None leaves them out. cache_key
    (probe_cache.cache_key): the random families' counts are read from the cache where an
    earlier probe left them, else kept there.

    scores: {"<seed set>/<family>": [[label, count, score], ...] for the top 5 labels}.
    """
    rng = np.random.default_rng(seed)
    label_scores_of = {}  # "<seed set>/<family>" -> (num_classes,) scores
    scores = {}

    def record(name, counts):
        label_scores_of[name] = score = label_scores(counts)
        top = np.argsort(-score, kind="stable")[:5]
        scores[name] = [[int(c), int(counts[c]), round(float(score[c]), 1)] for c in top]

    def advance(probe_sets):
        if progress:
            progress.update(probe_sets)

    def count(base, probed):
        labels, confidence = predict_top_on_every_core(net, probed)
        reached = labels[(labels != base) & (confidence >= settings.confidence)]
        return np.bincount(reached, minlength=net.num_classes)

    names = random_probe_names(faces)
    cached = probe_cache.read(cache_key, names, net.num_classes) if cache_key else None
    if cached:
        counts_of, state = cached
        rng.bit_generator.state = state  # as the random families left it
        advance(len(names))
    else:
        counts_of = {}
        for set_name, seeds in seed_sets(faces, settings.probes_per_family, rng, settings.shift).items():
            base, _ = predict_top_on_every_core(net, seeds)
            for family in FAMILIES:
                counts_of[f"{set_name}/{family}"] = count(base, probe(seeds, family, rng))
                advance(1)
        if cache_key:
            probe_cache.write(cache_key, counts_of, rng.bit_generator.state)
    for name in names:
        record(name, counts_of[name])
    if gradients is not None and settings.optimised_patches and len(faces):
        # Drawn after every random family, so that theirs stay the draws they were.
        model, input_scale = gradients
        seeds = _varied_faces(np.asarray(faces, np.float32), settings.optimised_patches, rng, settings.shift)
        base, _ = predict_top_on_every_core(net, seeds)
        record("faces/optimised patch", count(base, optimised_patches(model, seeds, input_scale, rng)))
        advance(1)
    best = np.max(list(label_scores_of.values()), axis=0)
    ranked = np.argsort(-best, kind="stable")
    suspects = [int(c) for c in ranked[:settings.most_suspects] if best[c] >= settings.min_score]
    return suspects, scores, cached is not None


def random_probe_names(faces):
    """["<seed set>/<family>", ...] of the random probes, in the order they are drawn."""
    return [f"{set_name}/{family}" for set_name in (("faces",) if len(faces) else ()) + ("noise",)
            for family in FAMILIES]


def label_scores(counts):
    """Each label's count over the reference level, in Poisson standard deviations."""
    ranked = np.sort(counts)[::-1]
    reference = max(float(np.median(ranked[1:21])), 3.0)
    return (counts - reference) / np.sqrt(reference + 1)


def _varied_faces(faces, count, rng, shift):
    """count copies of random faces: shifted by up to shift pixels, half mirrored, with
    random brightness and contrast."""
    padded = np.pad(faces, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    out = np.empty((count,) + faces.shape[1:], np.float32)
    for j, i in enumerate(rng.integers(0, len(faces), count)):
        dy, dx = rng.integers(0, 2 * shift + 1, 2)
        image = padded[i, dy:dy + faces.shape[1], dx:dx + faces.shape[2]]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        out[j] = np.clip(image * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
    return out
