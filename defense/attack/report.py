"""Run the sweep against one net's GoodNet and summarise it: rows, worst cases, markdown, plot.

Every setting costs one forward pass of each net over the faces; every comparator rule is
scored from those same outputs (goodnet.decide), so the rules are compared on equal terms.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from ..comparator.goodnet import RULES
from .sweep import (AS_PLANTED, CLEAN_SWEEP, TRIGGER_SWEEP, combined_setting, perturbed_setting,
                    poisoned_faces, transform_images)


@dataclass
class Row:
    net: str
    faces: str  # "clean" or the trigger's name
    target: int | str | None  # the trigger's target ("y+k": all-to-all, "m(y)": mapped); None for clean faces
    kind: str  # the setting's kind (sweep.Setting)
    value: float | str
    setting: str  # its label, e.g. "jpeg 30"
    images: int
    badnet: float  # clean: accuracy; trigger: attack success rate
    goodnet: dict = field(default_factory=dict)  # rule -> {"rate": ..., "flagged": ...}
    spread: bool = False  # a whole-face trigger, moved and scaled as an added change


def attack_net(net, good, clean, plans, progress=None, perturbations=(), public=None):
    """Rows for one net: its clean faces under every image setting, then every trigger under
    every trigger setting and, where two kinds of setting got through under the GoodNet's
    rule, both at once (sweep.combined_setting); then, for each eps in perturbations, the
    trigger as planted with a perturbation of at most eps levels crafted on public
    (perturbation.PublicNets). progress.update(1) after each setting."""
    rows = []
    for setting in CLEAN_SWEEP:
        pixels = transform_images(clean.pixels, setting)
        rows.append(_row(net, "clean", None, setting, good, pixels, clean.labels))
        _tick(progress)
    for plan in plans:
        trigger = plan.load()
        tried = []
        for setting in TRIGGER_SWEEP:
            tried.append((setting, _trigger_row(net, trigger, setting, good)))
            _tick(progress)
        rows += [row for _, row in tried]
        # Ties (one face in a few hundred) go to the setting the BadNet obeys most: the one
        # that keeps more of the trigger's force for the combination.
        combined = combined_setting([(s, (row.goodnet[good.rule]["rate"], row.badnet))
                                     for s, row in tried])
        if combined is not None:
            if progress is not None:
                progress.total += 1
            rows.append(_trigger_row(net, trigger, combined, good))
            _tick(progress)
        planted = poisoned_faces(trigger, AS_PLANTED) if perturbations else None
        for eps in perturbations:
            rows.append(_row(net, trigger.name, trigger.target, perturbed_setting(eps), good,
                             public.craft(planted, trigger.targets, eps), trigger.targets, trigger.spread))
            _tick(progress)
    return rows


def _trigger_row(net, trigger, setting, good):
    return _row(net, trigger.name, trigger.target, setting, good, poisoned_faces(trigger, setting),
                trigger.targets, trigger.spread)


def _row(net, faces, target, setting, good, pixels, expected, spread=False):
    outputs = good.outputs(pixels)
    scores = {}
    for rule in RULES:
        labels = good.decide(outputs, rule)
        scores[rule] = {"rate": float(np.mean(labels == expected)),
                        "flagged": float(np.mean(labels == good.poisoned_label))}
    return Row(net, faces, target, setting.kind, setting.value, setting.label, len(pixels),
               float(np.mean(outputs.bad_labels == expected)), scores, spread)


def _tick(progress):
    if progress is not None:
        progress.update(1)


def summarise(rows):
    """Per net: each trigger's worst case per rule (adaptive ASR and the setting that gave
    it), and the clean faces as planted and at their worst, per rule."""
    summary = {}
    for net in dict.fromkeys(r.net for r in rows):
        mine = [r for r in rows if r.net == net]
        clean = [r for r in mine if r.faces == "clean"]
        plain = next(r for r in clean if r.kind == "none")
        entry = {"clean": {"images": plain.images, "badnet_accuracy": plain.badnet, "rules": {}},
                 "triggers": {}}
        for rule in RULES:
            worst_accuracy = min(clean, key=lambda r: r.goodnet[rule]["rate"])
            worst_flagged = max(clean, key=lambda r: r.goodnet[rule]["flagged"])
            entry["clean"]["rules"][rule] = {
                "accuracy": plain.goodnet[rule]["rate"], "flagged": plain.goodnet[rule]["flagged"],
                "worst_accuracy": worst_accuracy.goodnet[rule]["rate"],
                "worst_accuracy_setting": worst_accuracy.setting,
                "worst_flagged": worst_flagged.goodnet[rule]["flagged"],
                "worst_flagged_setting": worst_flagged.setting,
            }
        for name in dict.fromkeys(r.faces for r in mine if r.faces != "clean"):
            sweep = [r for r in mine if r.faces == name]
            full = next(r for r in sweep if r.kind == "strength" and r.value == 1.0)
            worst_bad = max(sweep, key=lambda r: r.badnet)
            entry["triggers"][name] = {
                "target": full.target, "images": full.images, "spread": full.spread,
                "badnet_asr": full.badnet, "badnet_worst_asr": worst_bad.badnet,
                "rules": {rule: _worst(sweep, full, rule) for rule in RULES},
            }
        summary[net] = entry
    return summary


def _worst(sweep, full, rule):
    """The rule's ASR as planted (full: the full-strength row) and at its worst setting."""
    worst = max(sweep, key=lambda r: r.goodnet[rule]["rate"])
    return {"asr": full.goodnet[rule]["rate"], "adaptive_asr": worst.goodnet[rule]["rate"],
            "worst_setting": worst.setting, "badnet_asr_there": worst.badnet}


def as_json(rows, summary, settings):
    return {"settings": settings, "summary": summary, "rows": [asdict(r) for r in rows]}


def format_markdown(rows, summary, settings, notes=(), every_setting=True):
    """The report; every_setting=False leaves out the long per-setting table (stdout)."""
    pct = _pct
    lines = ["# Adaptive-attack report", "",
             f"Root: `{settings['root']}`; up to {settings['images_per_set'] or 'all'} faces per "
             f"set (seed {settings['seed']}); the GoodNet's rule: `{settings['rule']}`, flag "
             f"confidence {settings['flag_confidence']}. Adaptive ASR: the worst GoodNet attack "
             f"success over the whole sweep ({len(TRIGGER_SWEEP)} settings per trigger: "
             "strength, shift, scale, part, disguise, JPEG, resize, noise; then the worst "
             "strength, shift, scale, part and disguise under the GoodNet's rule at once, where "
             "two of them got through). A trigger over most of the face (\"whole face\") is "
             "shifted and scaled as the change it adds to the face."
             + (f" Then the trigger as planted with a perturbation of at most "
                f"{', '.join(map(str, settings['perturb']))} levels of 255 (\"perturbed EPS\") "
                "crafted by gradient steps on the public nets the GoodNet trusts (notes below)."
                if settings.get("perturb") else ""), ""]
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")
    header = " | ".join(f"{rule}: ASR / adaptive (worst setting)" for rule in RULES)
    lines += ["## Triggers", "", f"| net | trigger -> target | faces | BadNet ASR | {header} |",
              "|---|---|---:|---:|" + "---|" * len(RULES)]
    for net, entry in summary.items():
        for name, t in entry["triggers"].items():
            cells = " | ".join(f"{pct(w['asr'])} / **{pct(w['adaptive_asr'])}** ({w['worst_setting']})"
                               for w in (t["rules"][rule] for rule in RULES))
            spread = " (whole face)" if t["spread"] else ""
            lines.append(f"| {net} | {name} -> {t['target']}{spread} | {t['images']} | "
                         f"{pct(t['badnet_asr'])} | {cells} |")
    header = " | ".join(f"{rule}: accuracy / flagged (worst)" for rule in RULES)
    lines += ["", "## Clean faces", "",
              f"| net | faces | BadNet accuracy | {header} |", "|---|---:|---:|" + "---|" * len(RULES)]
    for net, entry in summary.items():
        c = entry["clean"]
        cells = " | ".join(f"{pct(r['accuracy'])} / {pct(r['flagged'])} "
                           f"({pct(r['worst_accuracy'])} / {pct(r['worst_flagged'])})"
                           for r in (c["rules"][rule] for rule in RULES))
        lines.append(f"| {net} | {c['images']} | {pct(c['badnet_accuracy'])} | {cells} |")
    if not every_setting:
        return "\n".join(lines) + "\n"
    lines += ["", "## Every setting", "",
              "| net | faces | setting | images | BadNet | "
              + " | ".join(f"{rule} (flagged)" for rule in RULES) + " |",
              "|---|---|---|---:|---:|" + "---:|" * len(RULES)]
    for r in rows:
        cells = " | ".join(f"{pct(r.goodnet[rule]['rate'])} ({pct(r.goodnet[rule]['flagged'])})"
                           for rule in RULES)
        lines.append(f"| {r.net} | {r.faces} | {r.setting} | {r.images} | {pct(r.badnet)} | {cells} |")
    return "\n".join(lines) + "\n"


def _pct(x):
    return f"{100 * x:.2f} %"


def can_plot(rows):
    """True where some trigger was planted (a strength sweep to draw)."""
    return any(r.kind == "strength" for r in rows)


def plot(rows, rule, path):
    """ASR and flagged share against trigger strength, one panel per net (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = [n for n in dict.fromkeys(r.net for r in rows)
            if any(r.net == n and r.kind == "strength" for r in rows)]
    fig, axes = plt.subplots(1, len(nets), figsize=(4.2 * len(nets), 3.6), squeeze=False)
    for ax, net in zip(axes[0], nets):
        triggers = list(dict.fromkeys(r.faces for r in rows if r.net == net and r.kind == "strength"))
        for colour, name in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], triggers):
            sweep = [r for r in rows if r.net == net and r.faces == name and r.kind == "strength"]
            x = [r.value for r in sweep]
            ax.plot(x, [100 * r.badnet for r in sweep], ":", color=colour, label=f"{name}: BadNet ASR")
            ax.plot(x, [100 * r.goodnet[rule]["rate"] for r in sweep], "-o", color=colour,
                    markersize=3, label=f"{name}: GoodNet ASR")
            ax.plot(x, [100 * r.goodnet[rule]["flagged"] for r in sweep], "--", color=colour,
                    label=f"{name}: flagged")
        ax.set_title(net)
        ax.set_xlabel("trigger strength (opacity)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="center left")
    axes[0][0].set_ylabel(f"% of poisoned faces (rule '{rule}')")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
