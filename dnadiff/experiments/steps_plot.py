"""Figures of the steps experiment: SER and TER excess against T per L, and SER against NFE."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _ser_err(pts: list[dict]) -> list[list[float]]:
    """Asymmetric error bars of SER from its Wilson interval (clipped at 0 against rounding)."""
    return [[max(0.0, r["ser"] - r["ser_lo"]) for r in pts], [max(0.0, r["ser_hi"] - r["ser"]) for r in pts]]


def _groups(rows: list[dict], source: str) -> tuple[list[str], list[str], list[int]]:
    mine = [r for r in rows if r["source"] == source]
    langs = [x for x in ("markov", "hairpin", "orf", "motifs") if any(r["language"] == x for r in mine)]
    samplers = list(dict.fromkeys(r["sampler"] for r in mine))
    lengths = sorted({r["length"] for r in mine})
    return langs, samplers, lengths


def plot_metric(rows: list[dict], source: str, metric: str, path: Path) -> Path:
    """Rows = languages, columns = samplers; a line per L (with its interval) against T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs, samplers, lengths = _groups(rows, source)
    fig, axes = plt.subplots(len(langs), len(samplers), figsize=(3.3 * len(samplers), 2.6 * len(langs)),
                             squeeze=False, sharex=True)
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(lengths)))
    handles: dict[str, object] = {}
    for i, lang in enumerate(langs):
        for j, sampler in enumerate(samplers):
            ax = axes[i, j]
            for color, length in zip(colors, lengths):
                pts = sorted((r for r in rows if r["source"] == source and r["language"] == lang
                              and r["sampler"] == sampler and r["length"] == length), key=lambda r: r["steps"])
                if metric == "ser":
                    y = [r["ser"] for r in pts]
                    err = _ser_err(pts)
                else:
                    pts = [r for r in pts if r["ter_excess"] is not None]
                    y = [r["ter_excess"] for r in pts]
                    err = [1.96 * r["ter_excess_se"] for r in pts]
                if pts:
                    handles[f"L={length}"] = ax.errorbar([r["steps"] for r in pts], y, yerr=err, color=color,
                                                         marker="o", ms=3, lw=1, capsize=2)
            ax.set_xscale("log", base=2)
            if metric == "ser":
                ax.axhline(0.01, color="grey", ls=":", lw=0.8)
                ax.set_ylim(-0.02, 1.02)
            else:
                ax.axhline(0.0, color="grey", ls=":", lw=0.8)
            if i == 0:
                ax.set_title(sampler, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{lang}\n" + ("SER" if metric == "ser" else "TER - H (nats/token)"), fontsize=8)
            if i == len(langs) - 1:
                ax.set_xlabel("steps T", fontsize=8)
            ax.tick_params(labelsize=7)
    labels = sorted(handles, key=lambda name: int(name[2:]))
    fig.legend([handles[name] for name in labels], labels, loc="upper right", fontsize=8)
    what = "sequence error rate (Wilson 95% CI)" if metric == "ser" else "token error: excess NLL over H (95% CI)"
    fig.suptitle(f"{source}: {what}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ser_vs_nfe(rows: list[dict], path: Path) -> Path | None:
    """At the largest L of each source: SER against NFE for hairpins and ORFs, every sampler, budget L/4 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for source in dict.fromkeys(r["source"] for r in rows):
        for lang in ("hairpin", "orf"):
            mine = [r for r in rows if r["source"] == source and r["language"] == lang]
            if mine:
                panels.append((source, lang, max(r["length"] for r in mine)))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (source, lang, length) in zip(axes[0], panels):
        for sampler in dict.fromkeys(r["sampler"] for r in rows):
            pts = sorted((r for r in rows if r["source"] == source and r["language"] == lang
                          and r["length"] == length and r["sampler"] == sampler), key=lambda r: r["nfe"])
            if pts:
                ax.errorbar([r["nfe"] for r in pts], [r["ser"] for r in pts],
                            yerr=_ser_err(pts),
                            marker="o", ms=3, lw=1, capsize=2, label=sampler)
        ax.axvline(length / 4, color="grey", ls="--", lw=0.8)
        ax.axhline(0.01, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{source}, {lang}, L={length}", fontsize=9)
        ax.set_xlabel("NFE per sequence (dashed: L/4)", fontsize=8)
        ax.set_ylabel("SER", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(result: dict, out: Path) -> list[Path]:
    rows = result["rows"]
    figures = []
    for source in dict.fromkeys(r["source"] for r in rows):
        figures.append(plot_metric(rows, source, "ser", out / f"ser_{source}.png"))
        figures.append(plot_metric(rows, source, "ter", out / f"ter_{source}.png"))
    nfe = plot_ser_vs_nfe(rows, out / "ser_vs_nfe.png")
    if nfe is not None:
        figures.append(nfe)
    return figures
