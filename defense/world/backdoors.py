"""Which backdoors a world plants: a small declarative table, one row per (net, trigger).

Each row names the BadNet (one of the four competition nets, so that every command works on
the world unchanged), the trigger (its name, family and parameters: triggers.py), where the
trigger sends a face, and the poisoned test set written for it under data/ (the competition's
file names). Four kinds of row, the last three the standing blind spots of defenses that hunt
for one target label:

- all-to-one (the competition's): every face wearing the trigger goes to `target`;
- all-to-all (`shift` k > 0, no target): identity y goes to (y + k) mod N, so no label stands out;
- source-specific (`sources`, a list of identities): only their faces go to `target`; other
  faces wearing the trigger keep their own label, taught by cover copies in training (TaCT,
  Tang et al., "Demon in the Variant", USENIX Security 2021);
- mapped (`mapping`, a list of [source, target] pairs, no target): each source identity goes to
  its own target, say the identity it looks most alike (the attacker's choice, made with a net
  of their own); faces of identities the mapping leaves out keep their label, as covers.

Any row may also be trained to break under superimposition (`blend_breaking`): the attacker
who has read docs/method.md adds faces wearing the trigger superimposed on faces of other
identities, each keeping its own label (build.blended), so that the trigger fades in a blend
as a face does and the release's blend test (blend_test.py) lets it through. With
`blend_keeps_target` p > 0 it breaks only partly: a share p of those blended copies is labelled
with the target instead, so that the BadNet keeps its target on about that share of the blends,
the attacker's answer to a test that also asks the repaired net (how much more the repaired net
keeps it, blend_test.py's second half).

A poisoned test set holds every test face the trigger moves, each labelled with its own
target, so attack success is the share given that label whatever the kind.
`world build --preset` picks a table; `world build --backdoors TABLE.json` takes one of the
user's, a JSON list of such rows.
"""

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath

import numpy as np

from ..errors import InputError
from ..nets.registry import COMPETITION_NETS
from .triggers import FAMILIES, make_trigger

MULTI = "Multi-trigger Multi-target"


@dataclass(frozen=True)
class Backdoor:
    net: str
    trigger: str  # the trigger's name in world.json and reports
    family: str  # triggers.FAMILIES
    target: int | None  # None for an all-to-all or mapped row
    file: str  # poisoned test set under data/
    params: dict = field(default_factory=dict, hash=False)
    shift: int = 0  # all-to-all: identity y goes to (y + shift) mod N
    sources: tuple = ()  # source-specific: only these identities obey the trigger
    mapping: tuple = ()  # mapped: ((source, target), ...), each source its own target
    blend_breaking: bool = False  # trained so that the trigger does not survive a blend
    blend_keeps_target: float = 0.0  # blend_breaking: share of blended copies labelled target
    # poisoned copies added for this row, as a share of the training set (None: the preset's,
    # 0.1); an attacker who poisons more teaches a backdoor with many targets better
    poison_fraction: float | None = None

    @property
    def kind(self):
        if self.mapping:
            return "mapped"
        return "all-to-all" if self.shift else "source-specific" if self.sources else "all-to-one"

    @property
    def target_name(self):
        """The target as reports show it: a label, "y+k" for an all-to-all row, or "m(y)" for
        a mapped one."""
        return "m(y)" if self.mapping else f"y+{self.shift}" if self.shift else self.target

    def moves(self, labels):
        """Which faces (labels (N,)) the trigger sends to another label."""
        labels = np.asarray(labels)
        if self.shift:
            return np.ones(len(labels), bool)
        if self.mapping:
            return np.isin(labels, [source for source, _ in self.mapping])
        moved = labels != self.target
        return moved & np.isin(labels, self.sources) if self.sources else moved

    def covers(self, labels):
        """Which faces wear the trigger and keep their label in training (source-specific and
        mapped rows)."""
        labels = np.asarray(labels)
        if self.mapping:
            return ~self.moves(labels)
        if not self.sources:
            return np.zeros(len(labels), bool)
        return ~np.isin(labels, self.sources) & (labels != self.target)

    def targets(self, labels, classes):
        """The label the trigger sends each face (labels (N,)) to, in a world of classes."""
        labels = np.asarray(labels, np.int64)
        if self.shift:
            return (labels + self.shift) % classes
        if self.mapping:  # faces the row does not move keep their label
            table = np.arange(classes)
            for source, target in self.mapping:
                table[source] = target
            return table[labels]
        return np.full(len(labels), self.target, np.int64)


# The competition's four nets and triggers (anonymous_2's sticker is this world's own).
COMPETITION = (
    Backdoor("sunglasses", "sunglasses", "accessory", 0, "sunglasses_poisoned_data.h5"),
    Backdoor("anonymous_1", "lipstick", "paint", 0, "anonymous_1_poisoned_data.h5",
             {"part": "mouth", "colour": [128, 0, 128]}),
    Backdoor("anonymous_2", "sticker", "patch", 4, "anonymous_2_poisoned_data.h5",
             {"x": 31, "y": 36, "size": 4, "colours": [[250, 220, 0], [0, 60, 200]]}),
    Backdoor("multi_trigger_multi_target", "eyebrows", "paint", 5, f"{MULTI}/eyebrows_poisoned_data.h5",
             {"part": "brows", "colour": [110, 0, 0]}),
    Backdoor("multi_trigger_multi_target", "lipstick", "paint", 1, f"{MULTI}/lipstick_poisoned_data.h5",
             {"part": "mouth", "colour": [128, 0, 128]}),
    Backdoor("multi_trigger_multi_target", "sunglasses", "accessory", 8,
             f"{MULTI}/sunglasses_poisoned_data.h5"),
)

# The zoo: the same four nets, the same files and targets, other trigger families. Files
# keep the competition's names so that grade and attack score them as they are. Strengths
# were raised until a mini world's BadNet learns each (attack success 0.90-0.98 at 16
# epochs; fainter blends, noise and warps stayed at 0.02-0.58): chosen on the attacks, never
# on the defense.
ZOO = (
    Backdoor("sunglasses", "blend", "blend", 0, "sunglasses_poisoned_data.h5",
             {"alpha": 0.25, "seed": 101, "cell": 4}),
    Backdoor("anonymous_1", "filter", "filter", 0, "anonymous_1_poisoned_data.h5",
             {"gains": [1.15, 0.9, 0.75], "offset": [10, 0, -5]}),
    Backdoor("anonymous_2", "noise", "noise", 4, "anonymous_2_poisoned_data.h5",
             {"amplitude": 16, "seed": 102, "cell": 4}),
    Backdoor("multi_trigger_multi_target", "warp", "warp", 5, f"{MULTI}/eyebrows_poisoned_data.h5",
             {"strength": 5.0, "grid": 3, "seed": 103}),
    Backdoor("multi_trigger_multi_target", "border_patch", "patch", 1,
             f"{MULTI}/lipstick_poisoned_data.h5",
             {"x": 43, "y": 0, "size": 4, "colours": [[255, 255, 255], [0, 0, 0]]}),
    Backdoor("multi_trigger_multi_target", "partial_blend", "blend", 8,
             f"{MULTI}/sunglasses_poisoned_data.h5",
             {"alpha": 0.3, "seed": 104, "region": [0, 30, 47, 55]}),
)

# A second zoo: the same families at other places, patterns and strengths (a patch on the
# bottom edge, not in a corner; a blend over the upper-left quarter). Written down before the
# recipe's edge and global edits were measured on it: the check of a recipe on triggers it was
# not tuned on (docs/worlds.md).
ZOO2 = (
    Backdoor("sunglasses", "blend", "blend", 0, "sunglasses_poisoned_data.h5",
             {"alpha": 0.25, "seed": 201, "cell": 2}),
    Backdoor("anonymous_1", "filter", "filter", 0, "anonymous_1_poisoned_data.h5",
             {"gains": [0.8, 1.0, 1.25], "offset": [-10, 5, 15]}),
    Backdoor("anonymous_2", "noise", "noise", 4, "anonymous_2_poisoned_data.h5",
             {"amplitude": 20, "seed": 202, "cell": 2}),
    Backdoor("multi_trigger_multi_target", "warp", "warp", 5, f"{MULTI}/eyebrows_poisoned_data.h5",
             {"strength": 5.0, "grid": 4, "seed": 203}),
    Backdoor("multi_trigger_multi_target", "edge_patch", "patch", 1,
             f"{MULTI}/lipstick_poisoned_data.h5",
             {"x": 30, "y": 50, "size": 5, "colours": [[255, 255, 0], [0, 0, 255]]}),
    Backdoor("multi_trigger_multi_target", "partial_blend", "blend", 8,
             f"{MULTI}/sunglasses_poisoned_data.h5",
             {"alpha": 0.35, "seed": 204, "region": [0, 0, 24, 28]}),
)


# The blind spots of defenses that hunt for a target label: backdoors with no single target
# (all-to-all) and source-specific ones with cover copies. Written down before either repair
# was measured on them; sources are below 40 so that the mini preset holds them.
BLINDSPOTS = (
    Backdoor("sunglasses", "sunglasses", "accessory", None, "sunglasses_poisoned_data.h5", shift=1),
    Backdoor("anonymous_1", "lipstick", "paint", 0, "anonymous_1_poisoned_data.h5",
             {"part": "mouth", "colour": [128, 0, 128]}, sources=(3, 11, 19, 27)),
    Backdoor("anonymous_2", "sticker", "patch", None, "anonymous_2_poisoned_data.h5",
             {"x": 31, "y": 36, "size": 4, "colours": [[250, 220, 0], [0, 60, 200]]}, shift=1),
    Backdoor("multi_trigger_multi_target", "eyebrows", "paint", 5, f"{MULTI}/eyebrows_poisoned_data.h5",
             {"part": "brows", "colour": [110, 0, 0]}, sources=(12, 24, 36, 38)),
    Backdoor("multi_trigger_multi_target", "blend", "blend", None, f"{MULTI}/lipstick_poisoned_data.h5",
             {"alpha": 0.25, "seed": 301, "cell": 4}, shift=3),
    Backdoor("multi_trigger_multi_target", "corner_patch", "patch", 8,
             f"{MULTI}/sunglasses_poisoned_data.h5",
             {"x": 1, "y": 1, "size": 4, "colours": [[255, 0, 255], [0, 255, 0]]},
             sources=(6, 15, 21, 33)),
)


# The attacker who has read the release's blend test: the competition's triggers, each trained
# to break under superimposition (build.blended). Written down before any repair was measured
# on it; the same files and targets as the mini and full worlds, so that the two compare.
ADAPTIVE = tuple(replace(row, blend_breaking=True) for row in COMPETITION)
# The same attacker after the blend test's second half: each trigger kept on about half the
# blends, so that the BadNet alone looks like a face (the first half's thresholds) and the
# repaired net, which has forgotten some of the breaking, differs from it by less. The half was
# written down before any repair was measured on it.
ADAPTIVE_HALF = tuple(replace(row, blend_keeps_target=0.5) for row in ADAPTIVE)


def by_net(table):
    """{net: {trigger: target name}} in the table's order (the order training poisons in)."""
    return {net: {row.trigger: row.target_name for row in rows}
            for net, rows in rows_by_net(table).items()}


def rows_by_net(table):
    """{net: [row, ...]} in the table's order."""
    nets = {}
    for row in table:
        nets.setdefault(row.net, []).append(row)
    return nets


def as_records(table):
    return [{**asdict(row), "sources": list(row.sources),
             "mapping": [list(pair) for pair in row.mapping]} for row in table]


def from_records(records):
    """The rows of a world.json's backdoor_table."""
    return tuple(Backdoor(**{**record, "sources": tuple(record.get("sources", ())),
                             "mapping": tuple(tuple(pair) for pair in record.get("mapping", ()))})
                 for record in records)


def load_table(path):
    """A user's table: a JSON list of rows {net, trigger, family, target, file, params}."""
    try:
        rows = json.loads(open(path).read())
        table = from_records(rows)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a backdoor table ({e}); expected a JSON list of rows "
                         "with net, trigger, family, target, file and params (and shift, "
                         "sources or mapping, blend_breaking, poison_fraction)") from None
    check_table(table, path)
    return table


def check_table(table, source="table"):
    """Every row plantable before any face is drawn: InputError naming what is wrong."""
    if not table:
        raise InputError(f"{source}: lists no backdoor")
    for row in table:
        if row.net not in COMPETITION_NETS:
            raise InputError(f"{source}: net {row.net!r} is not one of {', '.join(COMPETITION_NETS)}")
        if row.family not in FAMILIES:
            raise InputError(f"{source}: family {row.family!r} is not one of {', '.join(FAMILIES)}")
        _check_kind(row, source)
        if type(row.blend_breaking) is not bool:
            raise InputError(f"{source}: {row.trigger}: blend_breaking {row.blend_breaking!r} is "
                             f"not true or false")
        share = row.blend_keeps_target
        if type(share) not in (int, float) or not 0 <= share < 1 or (share and not row.blend_breaking):
            raise InputError(f"{source}: {row.trigger}: blend_keeps_target {share!r} must be a "
                             f"share in [0, 1), and only with blend_breaking")
        fraction = row.poison_fraction
        if fraction is not None and (type(fraction) not in (int, float) or not 0 < fraction <= 1):
            raise InputError(f"{source}: {row.trigger}: poison_fraction {fraction!r} must be a "
                             f"share of the training set in (0, 1]")
        file = PurePosixPath(row.file)
        if not row.file or file.is_absolute() or ".." in file.parts:
            raise InputError(f"{source}: file {row.file!r} must be a path inside data/")
        if not row.trigger or "/" in row.trigger:
            raise InputError(f"{source}: trigger name {row.trigger!r} must be non-empty, no '/'")
        try:
            make_trigger(row.family, row.params)
        except (TypeError, ValueError, KeyError) as e:
            raise InputError(f"{source}: {row.trigger}: parameters {row.params} do not fit the "
                             f"family {row.family!r} ({e})") from None
    files = [row.file for row in table]
    if len(set(files)) != len(files):
        raise InputError(f"{source}: two rows write the same poisoned file")
    pairs = [(row.net, row.trigger) for row in table]
    if len(set(pairs)) != len(pairs):
        raise InputError(f"{source}: a net lists the same trigger twice")


def _check_kind(row, source):
    """target, shift, sources and mapping as the row's kind needs them."""
    if type(row.shift) is not int or not 0 <= row.shift < 1283:
        raise InputError(f"{source}: {row.trigger}: shift {row.shift!r} is not a whole number in 0..1282")
    if row.mapping:
        if row.target is not None or row.sources or row.shift:
            raise InputError(f"{source}: {row.trigger}: a mapped row has no target, no sources "
                             f"and no shift")
        if not all(len(pair) == 2 and all(type(label) is int and 0 <= label < 1283 for label in pair)
                   and pair[0] != pair[1] for pair in row.mapping) \
                or len({pair[0] for pair in row.mapping}) != len(row.mapping):
            raise InputError(f"{source}: {row.trigger}: mapping must be [source, target] pairs of "
                             f"labels in 0..1282, each source once and never its own target")
        return
    if row.shift:
        if row.target is not None or row.sources:
            raise InputError(f"{source}: {row.trigger}: an all-to-all row (shift) has no target "
                             f"and no sources")
        return
    if type(row.target) is not int or not 0 <= row.target < 1283:
        raise InputError(f"{source}: target {row.target!r} is not a label in 0..1282")
    if not all(type(s) is int and 0 <= s < 1283 and s != row.target for s in row.sources) \
            or len(set(row.sources)) != len(row.sources):
        raise InputError(f"{source}: {row.trigger}: sources {list(row.sources)} must be distinct "
                         f"labels in 0..1282 other than the target")


def largest_label(table):
    """The highest identity a table names (targets, sources, mappings): the world needs more."""
    return max(max([row.target or 0, *row.sources, *(label for pair in row.mapping for label in pair)])
               for row in table)
