"""The leaderboard of a grading run: markdown, CSV, JSON and a plot, written atomically.

Ranked per net by clean accuracy minus the worst attack success over the net's poisoned
sets (both of the GoodNet): a repair that stops the attack by flagging every face gains
nothing, one that keeps every face but lets the trigger through gains nothing either.
"""

import csv
import io
import json
from pathlib import Path

from ..atomic import atomic_path
from .grader import REFERENCE_TEAM, as_records

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.png")


def summary(row, header):
    """(clean accuracy, share of clean faces flagged, worst ASR) of a scored row, from its
    scores by the kind of each test set."""
    kinds = {name: header["data_sets"][name]["kind"] for name in row["scores"]}
    clean = [s for name, s in row["scores"].items() if kinds[name] == "clean"]
    poisoned = [s["hit_rate"] for name, s in row["scores"].items() if kinds[name] == "poisoned"]
    accuracy = clean[0]["hit_rate"] if clean else None
    flagged = clean[0]["flagged"] if clean else None
    return accuracy, flagged, max(poisoned) if poisoned else None


def ranked(rows, header, net):
    """The scored rows of a net, best first."""
    def key(row):
        accuracy, _, asr = summary(row, header)
        return (-((accuracy or 0) - (asr or 0)), row["team"], row["file"])

    return sorted((r for r in rows if r["net"] == net and r["scores"]), key=key)


def write(out, header, rows):
    """Write the four files into out; returns their paths."""
    records = as_records(rows)
    out = Path(out)
    texts = {"leaderboard.md": markdown(header, records), "leaderboard.csv": table_csv(header, records),
             "leaderboard.json": json.dumps({"header": header, "rows": records}, indent=2) + "\n"}
    for name, text in texts.items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
    with atomic_path(out / "leaderboard.png") as tmp:
        plot(header, records, tmp)
    return [out / name for name in FILES]


def _pct(value):
    return "" if value is None else f"{100 * value:.2f} %"


def markdown(header, rows):
    lines = [f"# Leaderboard (rule '{header['rule']}')", "",
             f"{len({r['team'] for r in rows if r['team'] != REFERENCE_TEAM})} teams, "
             f"{sum(r['team'] != REFERENCE_TEAM for r in rows)} files, graded on the test sets "
             f"under {header['root']}/data; csaw-defense {header['version']}. Ranked by clean "
             "accuracy minus the worst attack success (ASR) of the GoodNet. Input scales were "
             f"decided on {header['scale_evidence']}.", ""]
    for net, facts in header["nets"].items():
        sets = [n for n, d in header["data_sets"].items() if net in d["nets"]]
        poisoned = [n for n in sets if header["data_sets"][n]["kind"] == "poisoned"]
        bad = facts["badnet_scores"]
        clean = next((n for n in sets if header["data_sets"][n]["kind"] == "clean"), None)
        lines += [f"## {net}", "",
                  f"BadNet {facts['badnet']}: clean accuracy {_pct(bad[clean]['hit_rate']) if clean else ''}, "
                  + ", ".join(f"ASR {_pct(bad[n]['hit_rate'])} on {n}" for n in poisoned) + ".", "",
                  "| rank | team | file | clean accuracy | clean flagged | "
                  + " | ".join(f"ASR {n}" for n in poisoned) + " | status | net from | scale |",
                  "|---:|---|---|---:|---:|" + "---:|" * len(poisoned) + "---|---|---|"]
        for rank, row in enumerate(ranked(rows, header, net), 1):
            accuracy, flagged, _ = summary(row, header)
            lines.append(f"| {rank} | {row['team']} | {row['file']} | {_pct(accuracy)} | {_pct(flagged)} | "
                         + " | ".join(_pct(row["scores"][n]["hit_rate"]) for n in poisoned)
                         + f" | {row['status']} | {row['how_net']} | {row['scale']} ({row['how_scale']}) |")
        lines.append("")
    lines += _teams_by_nets(header, rows)
    unscored = [r for r in rows if not r["scores"]]
    notes = [r for r in rows if r["scores"] and r["reason"] and r["team"] != REFERENCE_TEAM]
    if unscored:
        lines += ["## Not graded", "", "| team | file | status | reason |", "|---|---|---|---|"]
        lines += [f"| {r['team']} | {r['file']} | {r['status']} | {_cell(r['reason'])} |" for r in unscored]
        lines.append("")
    if notes:
        lines += ["## Notes on graded files", "", "| team | file | net | note |", "|---|---|---|---|"]
        lines += [f"| {r['team']} | {r['file']} | {r['net']} | {_cell(r['reason'])} |" for r in notes]
        lines.append("")
    return "\n".join(lines)


def _teams_by_nets(header, rows):
    nets = list(header["nets"])
    lines = ["## Teams x nets (GoodNet clean accuracy / worst ASR; * unrepaired)", "",
             "| team | " + " | ".join(nets) + " |", "|---|" + "---|" * len(nets)]
    for team in sorted({r["team"] for r in rows}, key=lambda t: (t == REFERENCE_TEAM, t)):
        cells = []
        for net in nets:
            mine = [r for r in ranked(rows, header, net) if r["team"] == team]
            cells.append("; ".join(
                f"{_pct(summary(r, header)[0])} / {_pct(summary(r, header)[2])}"
                + ("*" if r["status"] == "unrepaired" else "") for r in mine) or "-")
        lines.append(f"| {team} | " + " | ".join(cells) + " |")
    return lines + [""]


def _cell(text):
    return text.replace("|", "\\|")


def table_csv(header, rows):
    sets = list(header["data_sets"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = ["team", "file", "sha256", "net", "how_net", "scale", "how_scale", "status", "reason"]
    writer.writerow(fields + [f"{n} {m}" for n in sets for m in ("hit_rate", "flagged")])
    for row in rows:
        scores = row["scores"]
        writer.writerow([row[f] if row[f] is not None else "" for f in fields]
                        + [scores[n][m] if n in scores else "" for n in sets
                           for m in ("hit_rate", "flagged")])
    return buffer.getvalue()


def plot(header, rows, path):
    """Per net: each team's GoodNet as a point, clean accuracy against worst ASR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(header["nets"]) or ["(no net graded)"]
    columns = min(2, len(nets))
    figure, axes = plt.subplots((len(nets) + 1) // 2, columns, figsize=(6 * columns, 4.5 * ((len(nets) + 1) // 2)),
                                squeeze=False)
    for ax, net in zip(axes.flat, nets):
        ax.set_title(net)
        ax.set_xlabel("attack success, worst poisoned set (%)")
        ax.set_ylabel("clean accuracy (%)")
        for row in ranked(rows, header, net) if net in header["nets"] else []:
            accuracy, _, asr = summary(row, header)
            if accuracy is None or asr is None:
                continue
            style = {"reference": ("*", "tab:green"), "unrepaired": ("x", "tab:red")}.get(
                "reference" if row["team"] == REFERENCE_TEAM else row["status"], ("o", "tab:blue"))
            ax.scatter(100 * asr, 100 * accuracy, marker=style[0], color=style[1])
            ax.annotate(row["team"], (100 * asr, 100 * accuracy), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        if net in header["nets"]:  # where the unrepaired BadNet stands
            accuracy, _, asr = summary({"scores": header["nets"][net]["badnet_scores"]}, header)
            if accuracy is not None and asr is not None:
                ax.scatter(100 * asr, 100 * accuracy, marker="s", color="grey")
                ax.annotate("BadNet", (100 * asr, 100 * accuracy), fontsize=6, color="grey",
                            xytext=(3, -8), textcoords="offset points")
        ax.set_xlim(-3, 103)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(nets):]:
        ax.axis("off")
    figure.suptitle("o graded   x unrepaired   * this project's repaired net   "
                    "square: the BadNet", fontsize=8, y=0.995)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
