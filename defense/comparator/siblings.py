"""Sibling BadNets: a second opinion on a quarantined label, and a committee on every label
(issue 21); written by either repair (fine-prune --siblings), made for the data-free one.

The data-free repair has no clean data and so no net it can trust: every net it has descends
from the BadNet, and a faded trigger cannot be told from a real face of the target by the
BadNet's own outputs, its units, blends or transplants onto the seed faces
(docs/results/2026-12-05-units-test.md and earlier). The competition hands out four BadNets
trained on the same 1283 identities by attacks with other triggers and targets. Beside the
sunglasses BadNet, anonymous_2's BadNet is a face recognizer that never learnt the sunglasses:
it sees the face under them. Those other BadNets are the siblings.

For each label the repair quarantines, the siblings whose own probe (the same data-free probe,
the same seed faces, settings and seed) does not single it out vouch for it. The GoodNet gives
a quarantined label back where the BadNet gives it and **every** sibling that vouches for it
gives it as its top label, and only where at least MIN_VOUCHERS siblings vouch for it; any other
quarantined label stays switched off, as before. The rule "every" was written down before any
measurement; the minimum of two after one sibling, backdoored by the same attacker too weakly
for its probe, let the trigger through alone (docs/results/2026-12-06-siblings.md).

Off by default (fine-prune --siblings): it assumes that the siblings' makers did not plant this
BadNet's backdoor in them.

What it invites:

- One attacker behind every BadNet, planting the same trigger and target in each. Where a
  sibling's probe finds that target, the sibling does not vouch for it. Where the attacker
  poisons siblings so weakly that their probes miss the target while they still obey the
  trigger now and then, those siblings vouch for it on triggered faces: the results file
  measures how often, with one such sibling and with two.
- Perturbations crafted on the siblings, which are public: a triggered face altered to be read
  as the target by every sibling (measured at full size, before the siblings read nine views:
  7.40 % at 8 levels of 255, 25.60 % at 16). That makes a quarantined label as open to
  adversarial examples as every other label of the BadNet already is.
- A net without two siblings (the lab's BadNet, a net of another class count or input scale)
  keeps the plain quarantine.

**The committee** (records with a `veto_rank` in the entry). The siblings judge
every label too, not only the quarantined ones: a backdoor with no single target (all-to-all
y -> y+1, each face to its lookalike) never shows in the probe, and the plain quarantine passes
it. Where at least MIN_VOUCHERS siblings give one top label other than the BadNet's, that label
comes out, unless the BadNet's probe or the probe of a sibling giving it suspects it (then the
image is flagged; with --release's witness, a giving sibling's suspicion gives way where the
witness's top label and the repaired net's label are that label too: WITNESS_OVERRULES,
docs/results/2026-12-07-witnessed-agreement.md). Where the label the GoodNet would give is within
the top `veto_rank` labels (COMMITTEE_VETO_RANK, 5, written down before any measurement) of fewer
than COMMITTEE_VETO_RANKERS (2) siblings (of every sibling whose probe does not suspect it, where
fewer do not), it is flagged: one sibling's word let a trigger through that scattered the two
others over other labels (docs/results/2026-12-06-two-rankers.md). A trigger must then move the
siblings too, which another attacker's trigger does not.
The siblings then run on every image.

**Nine views.** A sibling reads an image as its softmax averaged over nine views of it, the image
moved by every offset of at most one pixel (VIEW_SHIFT; edge pixels repeated): on full-size worlds
it then misreads fewer clean faces, so fewer lose their label to two siblings agreeing on a wrong
one (docs/results/2026-12-06-sibling-views.md). Twenty-seven forward passes an image for three
siblings, nine for each (three before), the views of an ONNX net side by side on the cores
(docs/results/2026-12-07-sibling-speed.md).

With data (Fine-Pruning, with or without --release) the entry is the same, the siblings probed
as the data-free repair probes them: they vouch only for the quarantined labels no witness gives
back, the committee counts the released labels among the BadNet's suspects, and the witness's
veto judges after the committee: it ranks the label the siblings agreed on as it ranks the two
nets' labels (flagged at its veto rank or beyond).

The record (`sibling_witnesses`) names each sibling's file by a path relative to the record's
folder and by its sha256, with the labels its probe suspects. Where a sibling file is missing
(a repaired net copied without the BadNets beside it) the GoodNet says so in one line and keeps
the plain quarantine, without the committee; a sibling file that changed is refused in one line.
Without the committee (older records) the siblings run only on images whose BadNet label is one
they vouch for, loaded on the first such image (a clean image costs nothing).
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..digest import file_sha256
from ..errors import InputError
from ..nets.fast_net import calls_side_by_side

RECORD_KEY = "sibling_witnesses"
# The fewest siblings that must vouch for a label for it to come back: with one, a sibling
# backdoored alike, too weakly for its probe, is all the trigger needs (results 2026-12-06).
MIN_VOUCHERS = 2
# The committee's veto: a label too few siblings rank among their top this many is flagged.
# Written down before any measurement (docs/results/2026-12-06-committee.md), not chosen on one.
COMMITTEE_VETO_RANK = 5
# How many siblings must rank a label so (every one whose probe does not suspect it, where fewer
# do not): one sibling's word let a trigger through that scattered the two others over other
# labels (docs/results/2026-12-06-two-rankers.md). Two, as MIN_VOUCHERS: set before measuring.
COMMITTEE_VETO_RANKERS = 2
# With --release's witness, the committee's exception for a label a giving sibling suspects
# (goodnet._committee), as the reports and help texts say it.
WITNESS_OVERRULES = ("a sibling's suspicion gives way where the witness's top label and the "
                     "repaired net's are it too")
# A sibling reads an image through views: its softmax averaged over the image moved by every
# offset of at most this many pixels (nine views). On the development world it misread 22-25 %
# fewer clean faces so (results 2026-12-06-sibling-views): fewer then refuse a face of a quarantined
# identity or agree on a wrong label. A sibling never learnt this BadNet's trigger, moved or not.
VIEW_SHIFT = 1
# Images the siblings judge at once (their full outputs, (n, classes) floats, are reduced to
# the top labels a chunk at a time).
CHUNK = 2048


@dataclass(frozen=True)
class Sibling:
    """One sibling BadNet as the record names it."""

    net: str  # its registry name
    path: Path  # resolved from the record's folder
    sha256: str
    suspects: frozenset  # the labels its own probe singles out


@dataclass(frozen=True)
class SiblingEntry:
    """The record's `sibling_witnesses`: the siblings, and which of them vouch for each label."""

    siblings: tuple = ()  # of Sibling
    vouchers: dict = field(default_factory=dict)  # quarantined label -> names of the siblings
    veto_rank: int | None = None  # the committee's (COMMITTEE_VETO_RANK); None: vouching only

    @property
    def labels(self):
        """The quarantined labels some sibling vouches for (the others stay switched off)."""
        return frozenset(label for label, names in self.vouchers.items() if names)

    @property
    def committee(self):
        """Whether the siblings judge every label (the committee), not only vouch."""
        return self.veto_rank is not None

    def vouching_for(self, labels):
        """This entry with its siblings vouching, by vouchers_for's rule, for labels (the
        quarantined labels nothing else gives back) instead."""
        return replace(self, vouchers=vouchers_for(labels, {s.net: s.suspects for s in self.siblings}))

    def as_record(self, record_dir):
        return {"nets": [{"net": s.net, "path": os.path.relpath(s.path, record_dir), "sha256": s.sha256,
                          "suspects": sorted(s.suspects)} for s in self.siblings],
                "vouchers": {str(label): list(names) for label, names in sorted(self.vouchers.items())},
                **({"veto_rank": self.veto_rank} if self.committee else {})}

    @classmethod
    def from_record(cls, entry, record_path, num_classes, quarantined):
        """The entry of the record at record_path; InputError where it is malformed: every
        voucher a named sibling, every vouched label quarantined."""
        def bad(why):
            return InputError(f"{record_path}: '{RECORD_KEY}' {why}")

        def is_label(value):
            return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < num_classes

        if not isinstance(entry, dict) or not isinstance(entry.get("nets"), list) \
                or not isinstance(entry.get("vouchers"), dict):
            raise bad("must be a JSON object with 'nets' (a list) and 'vouchers' (an object)")
        siblings = []
        for item in entry["nets"]:
            if not isinstance(item, dict) or not isinstance(item.get("net"), str) \
                    or not isinstance(item.get("path"), str) or not item["path"]:
                raise bad("needs each sibling's 'net' and 'path'")
            sha256, suspects = item.get("sha256"), item.get("suspects")
            if not isinstance(sha256, str) or len(sha256) != 64:
                raise bad(f"needs the sha256 of sibling {item['net']}")
            if not isinstance(suspects, list) or not all(is_label(label) for label in suspects):
                raise bad(f"needs the suspects of sibling {item['net']} as labels in [0, {num_classes})")
            siblings.append(Sibling(item["net"], Path(record_path).parent / item["path"], sha256,
                                    frozenset(suspects)))
        names = {s.net for s in siblings}
        if len(names) != len(siblings) or len({s.sha256 for s in siblings}) != len(siblings):
            raise bad("names a sibling twice (by name or by file)")
        vouchers = {}
        for key, vouching in entry["vouchers"].items():
            label = int(key) if key.isascii() and key.isdigit() else None
            if label not in quarantined:
                raise bad(f"vouches for {key!r}, which is not a quarantined label")
            if not isinstance(vouching, list) or not all(isinstance(name, str) for name in vouching) \
                    or not set(vouching) <= names or len(set(vouching)) != len(vouching):
                raise bad(f"label {key}: vouchers must be siblings it names, each once")
            if any(label in s.suspects for s in siblings if s.net in vouching):
                raise bad(f"label {key}: a sibling whose probe suspects it cannot vouch for it")
            if 0 < len(vouching) < MIN_VOUCHERS:
                raise bad(f"label {key}: {len(vouching)} voucher(s), fewer than {MIN_VOUCHERS}")
            vouchers[label] = tuple(vouching)
        veto_rank = entry.get("veto_rank")
        if veto_rank is not None and not (is_label(veto_rank) and veto_rank >= 1):
            raise bad(f"'veto_rank' must be a whole number in [1, {num_classes})")
        if veto_rank is not None and len(siblings) < MIN_VOUCHERS:
            raise bad(f"a committee needs {MIN_VOUCHERS} siblings at least")
        return cls(tuple(siblings), vouchers, veto_rank)

    @property
    def suspected_by_all(self):
        """The labels every sibling's own probe suspects: no sibling can vouch for or rank them,
        so the committee flags them (with a witness's veto, it lets one stand only where it is
        the witness's top label). On 40 identities small nets share such attractors (results
        2026-12-07-mini-floor)."""
        if not self.siblings:
            return frozenset()
        return frozenset.intersection(*(s.suspects for s in self.siblings))

    def unranked(self, quarantined, released=()):
        """The labels every sibling suspects that the BadNet's own probe does not (neither
        quarantined nor released): no rule but the committee's touches them, and it cannot rank
        them. The repaired net's summary and grade name these."""
        return self.suspected_by_all - frozenset(quarantined) - frozenset(released)

    @property
    def asked(self):
        """The siblings the GoodNet asks: every one for a committee, else the vouching ones."""
        vouching = {name for names in self.vouchers.values() for name in names}
        return tuple(s for s in self.siblings if self.committee or s.net in vouching)

    def missing(self):
        """The siblings the GoodNet would need (asked) whose files are not where the record says
        ('' where all are). The GoodNet then keeps the plain quarantine, and says so."""
        return ", ".join(f"{s.net} ({s.path})" for s in self.asked if not s.path.is_file())


class SiblingWitness:
    """The siblings at work: loaded on first use, each checked against its sha256."""

    def __init__(self, entry, load):
        self.entry = entry
        self._load = load  # path -> a net with probabilities (fast_net.load_net)
        self._nets = {}

    @property
    def labels(self):
        return self.entry.labels

    @property
    def committee(self):
        return self.entry.committee

    @property
    def suspects(self):
        """Each sibling's suspects, in the order of judge's rows."""
        return tuple(s.suspects for s in self.entry.siblings)

    def judge(self, pixels):
        """Every sibling on every image: (tops (S, N), near (S, N, veto_rank)): each sibling's
        top label (argmax: the lowest label among equals), and the labels it ranks among its
        veto_rank highest, best first, that can save a label from the committee's veto. Not
        among those (-1 in their place): a label it gives no probability at all (a sure net's
        softmax underflows to 0 for most labels, and a rank among zeros means nothing), and a
        label its own probe suspects (its opinion there is not trigger-blind)."""
        pixels = np.asarray(pixels)
        k = self.entry.veto_rank
        count = len(self.entry.siblings)
        tops = np.zeros((count, len(pixels)), dtype=np.int64)
        near = np.full((count, len(pixels), k), -1, dtype=np.int64)
        for row, sibling in enumerate(self.entry.siblings):
            suspects = list(sibling.suspects)
            for start, stop, probabilities in self._opinions(sibling, pixels):
                # A stable sort of the whole row: equal probabilities in label order, as argmax.
                highest = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
                tops[row, start:stop] = highest[:, 0]
                given = np.take_along_axis(probabilities, highest, axis=1) > 0
                near[row, start:stop] = np.where(given & ~np.isin(highest, suspects), highest, -1)
        return tops, near

    def agrees_from(self, tops, bad_labels):
        """agrees, from the tops judge gave (no further pass)."""
        return self._agrees(bad_labels, lambda row, sibling, asked: tops[row][asked])

    def agrees(self, pixels, bad_labels):
        """(N,) True where the BadNet's label is one the siblings vouch for and every sibling
        that vouches for it gives it as its top label; each sibling runs on those images only."""
        def tops_of(row, sibling, asked):  # called only where some image is asked
            return np.concatenate([probabilities.argmax(axis=1) for _, _, probabilities
                                   in self._opinions(sibling, np.asarray(pixels)[asked])])

        return self._agrees(bad_labels, tops_of)

    def _agrees(self, bad_labels, tops_of):
        """agrees, with tops_of(row, sibling, asked indices) giving a sibling's top labels there."""
        bad_labels = np.asarray(bad_labels)
        agrees = np.isin(bad_labels, list(self.labels))
        for row, sibling in enumerate(self.entry.siblings):
            asked = np.flatnonzero(agrees & np.isin(bad_labels, self._vouched_by(sibling.net)))
            if len(asked):
                agrees[asked] = tops_of(row, sibling, asked) == bad_labels[asked]
        return agrees

    def describe(self):
        """The vouched labels and their vouchers, in words."""
        return ("; ".join(f"{label} on the word of {', '.join(names)}"
                          for label, names in sorted(self.entry.vouchers.items()) if names) or "none")

    def describe_committee(self, with_witness=False):
        """The committee in words ('' where there is none); with_witness: a repair with data,
        whose witness may overrule a giving sibling's suspicion (goodnet._committee)."""
        if not self.committee:
            return ""
        overruled = f"; {WITNESS_OVERRULES}" if with_witness else ""
        return (f"{', '.join(s.net for s in self.entry.siblings)} (each reading nine views of an "
                f"image): a label two of them replace by "
                f"another top label is theirs (flagged where the BadNet's probe or that of a sibling "
                f"giving it suspects it{overruled}), one fewer than two of them rank in their top "
                f"{self.entry.veto_rank} is flagged (where only one does not suspect it, that one)")

    def _opinions(self, sibling, pixels):
        """(start, stop, the sibling's view_probabilities of pixels[start:stop]), CHUNK images at
        a time."""
        net = self._net(sibling)
        for start in range(0, len(pixels), CHUNK):
            probabilities = view_probabilities(net, pixels[start:start + CHUNK])
            yield start, start + len(probabilities), probabilities

    def _vouched_by(self, name):
        return [label for label, names in self.entry.vouchers.items() if name in names]

    def _net(self, sibling):
        if sibling.net not in self._nets:
            net = self._load(sibling.path)
            actual = getattr(net, "sha256", None) or file_sha256(sibling.path)
            if actual != sibling.sha256:
                raise InputError(f"{sibling.path}: not the sibling BadNet the repaired net's record "
                                 f"names (sha256 {actual[:12]}..., the record says {sibling.sha256[:12]}...); "
                                 f"repair again with 'python3 -m defense fine-prune --data-free'")
            self._nets[sibling.net] = net
        return self._nets[sibling.net]


def view_probabilities(net, pixels):
    """net's softmax (N, classes), each image's averaged over its views: the image moved by every
    offset of at most VIEW_SHIFT pixels down or right (negative: up, left), edge pixels repeated
    into the gap."""
    views = shifted_views(pixels)
    side_by_side = calls_side_by_side(net)
    if side_by_side == 1:
        return sum(map(net.probabilities, views)) / len(views)
    # An ONNX session runs on part of the cores: views side by side fill them (1.7 times as
    # fast on 2 cores). Summed in the views' order, whichever ends first: the same floats.
    with ThreadPoolExecutor(side_by_side) as pool:
        return sum(pool.map(net.probabilities, views)) / len(views)


def shifted_views(pixels):
    """The views of images (N, H, W, 3): one array for every offset of at most VIEW_SHIFT pixels,
    in views_of_padded's order, edge pixels repeated into the gap."""
    pixels = np.asarray(pixels)
    shift = VIEW_SHIFT
    padded = np.pad(pixels, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    return views_of_padded(padded, *pixels.shape[1:3])


def views_of_padded(padded, height, width):
    """The views of images of height x width padded by VIEW_SHIFT pixels on each side (edge
    pixels repeated): one slice for every offset of at most VIEW_SHIFT pixels, in one fixed order.
    Slices of a NumPy array or of a TensorFlow tensor alike (attack/perturbation.py)."""
    shift = VIEW_SHIFT
    return [padded[:, shift - dy:shift - dy + height, shift - dx:shift - dx + width]
            for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]


def vouchers_for(quarantined, sibling_suspects):
    """{label: (names of the siblings whose suspects do not hold it)} for each quarantined
    label, () where fewer than MIN_VOUCHERS; sibling_suspects: {name: suspected labels}."""
    vouchers = {}
    for label in sorted(quarantined):
        names = tuple(name for name, suspects in sibling_suspects.items() if label not in suspects)
        vouchers[int(label)] = names if len(names) >= MIN_VOUCHERS else ()
    return vouchers
