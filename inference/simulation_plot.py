"""The campaign's cost plot: per round, manual against both simulated annotators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BARS = (
    ("manual", "manual (slice by slice)", "#999999"),
    ("recontour", "re-contour only (box, review, brush)", "#6a8fc7"),
    ("prompts", "prompts then re-contour (range, boxes, brush)", "#2b7a3d"),
)


def _per_lesion(report: dict[str, Any], round_: int, key: str) -> list[float]:
    """Minutes per lesion of one bar of one round (``key``: manual or an annotator)."""
    rows = [row for row in report["lesions"] if row["round"] == round_]
    if key == "manual":
        return [row["manual_s"] / 60 for row in rows]
    return [row[key]["seconds"] / 60 for row in rows]


def plot_costs(report: dict[str, Any], path: Path) -> None:
    """Grouped bars per round (mean minutes per lesion: manual, re-contour only, prompts then
    re-contour, each lesion a dot), a red tick on each annotator's bar where the same lesions
    cost with the round-0 backend, and each annotator's reduction written above its bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = report["rounds"]
    fig, ax = plt.subplots(figsize=(7.6, 4.6), dpi=110)
    width = 0.27
    top = 0.0
    for i, (key, label, colour) in enumerate(BARS):
        offset = (i - 1) * width
        for j, summary in enumerate(rounds):
            x = summary["round"] + offset
            values = _per_lesion(report, summary["round"], key)
            mean = sum(values) / len(values) if values else 0.0
            ax.bar(x, mean, width, color=colour, label=label if j == 0 else None)
            ax.plot([x] * len(values), values, ".", color="#222", ms=3, alpha=0.6)
            top = max(top, mean, *values)
            if key == "manual":
                continue
            arm = summary["annotators"][key]
            untrained = arm["untrained"]["seconds_per_lesion"] / 60
            ax.plot(
                x, untrained, "_", color="C3", ms=14, mew=2,
                label="same lesions, round-0 backend" if (i, j) == (1, 0) else None,
            )  # fmt: skip
            ax.annotate(
                f"{arm['trained']['cost_reduction']:+.0%}",
                (x, max(mean, untrained)),
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=colour,
            )
    ax.set_ylim(0, top * 1.15)
    ax.set_xticks(
        [r["round"] for r in rounds],
        [
            f"round {r['round']} ({r['lesions']} lesions)\nDice {r['mean_dice']:.2f}"
            + (f" (round-0 {r['untrained_mean_dice']:.2f})" if r["trained"] else "")
            for r in rounds
        ],
        fontsize=8,
    )
    ax.set_ylabel("minutes per lesion (mean; dots: lesions)")
    ax.set_title("Simulated campaign: annotation cost per lesion (labels: reduction vs manual)")
    ax.title.set_fontsize(10)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("same lesions"))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
