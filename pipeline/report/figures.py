"""The report's figures: one function per figure, each taking aggregated numbers (pipeline.report.data)
and returning a matplotlib Figure, or None when there is nothing to draw.

Figures are made on matplotlib's Agg canvas directly, never through pyplot: no display, no
global figure registry to leak from a long-lived process, and safe to call from any thread.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pageray.pipeline.datamodel import Status

OK_COLOR, BAD_COLOR, CUT_COLOR, NEUTRAL = "#2e7d32", "#c62828", "#ef6c00", "#1565c0"


def _figure(width: float = 8.0, height: float = 3.6, **subplots) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots)


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def status_figure(counts: pd.Series) -> Figure | None:
    if counts.empty:
        return None
    fig, ax = _figure(height=max(1.6, 0.45 * len(counts) + 1.0))
    labels = list(counts.index)[::-1]
    values = counts.to_numpy()[::-1]
    bars = ax.barh(labels, values, color=[OK_COLOR if s == Status.OK else BAD_COLOR for s in labels])
    total = counts.sum()
    ax.bar_label(bars, labels=[f"{v} ({v / total:.0%})" for v in values], padding=3)
    ax.set_xlabel("pages")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, values.max() * 1.25)
    ax.set_title("Pages by status")
    return fig


def throughput_figure(rates: pd.DataFrame, bin_s: float) -> Figure | None:
    if rates.empty:
        return None
    fig, (rate_ax, total_ax) = _figure(height=4.2, ncols=2)
    for name, series in rates.groupby("series", sort=True):
        t = series["t_s"].to_numpy()
        rate = series["pages_per_s"].to_numpy()
        rate_ax.step(np.append(t, t[-1] + bin_s), np.append(rate, rate[-1]), where="post", label=name)
        total_ax.step(np.append(t, t[-1] + bin_s), np.append(0, np.cumsum(rate * bin_s)), where="post", label=name)
    rate_ax.set_title(f"Pages/s per worker ({bin_s:g} s bins)")
    rate_ax.set_xlabel("seconds since the run started")
    rate_ax.set_ylabel("pages/s")
    total_ax.set_title("Pages done per worker")
    total_ax.set_xlabel("seconds since the run started")
    total_ax.set_ylabel("pages")
    total_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if rates["series"].nunique() <= 12:
        total_ax.legend(fontsize="small", loc="upper left")
    return fig


def confidence_figure(confidence: np.ndarray) -> Figure | None:
    if len(confidence) == 0:
        return None
    fig, ax = _figure()
    ax.hist(confidence, bins=np.linspace(0, 1, 41), color=NEUTRAL)
    ax.axvline(float(np.median(confidence)), color="black", linestyle="--",
               label=f"median {np.median(confidence):.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (geometric mean probability of the chosen tokens)")
    ax.set_ylabel("ok pages")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Confidence of ok pages")
    ax.legend()
    return fig


def fields_figure(stats: pd.DataFrame) -> Figure | None:
    if stats is None or stats.empty or not stats["places"].any():
        return None
    fig, ax = _figure(height=max(2.0, 0.32 * len(stats) + 1.2))
    y = np.arange(len(stats))[::-1]
    fill = ax.barh(y + 0.2, stats["fill_rate"].fillna(0), height=0.4, color=NEUTRAL, label="filled")
    grounded = stats["grounding_rate"]
    ax.barh(y - 0.2, grounded.fillna(0), height=0.4, color=OK_COLOR, label="grounded (of checked values)")
    ax.bar_label(fill, labels=[f"{v:.0%}" if v == v else "" for v in stats["fill_rate"]], padding=2,
                 fontsize="x-small")
    ax.set_yticks(y, stats.index, fontsize="small")
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("share")
    ax.set_title("Fill rate and grounding rate per field")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")  # beside the bars, never over them
    return fig


def tokens_figure(tokens: pd.DataFrame, truncation: pd.DataFrame, budget: int | None) -> Figure | None:
    """Left: output tokens per page, truncated pages stacked on the others; right: truncated
    share per status. `tokens` has output_tokens and truncated."""
    if tokens.empty:
        return None
    fig, (hist_ax, cut_ax) = _figure(height=3.8, ncols=2, width_ratios=[3, 2])
    counts = pd.to_numeric(tokens["output_tokens"]).to_numpy(dtype=float)
    cut = tokens["truncated"].fillna(False).astype(bool).to_numpy()
    top = max(float(counts.max()), float(budget or 0), 1.0)
    bins = np.linspace(0, top * 1.02, 31)
    hist_ax.hist([counts[~cut], counts[cut]], bins=bins, stacked=True, color=[NEUTRAL, CUT_COLOR],
                 label=["complete", "truncated"])
    if budget:
        hist_ax.axvline(budget, color="black", linestyle="--", label=f"budget {budget}")
    hist_ax.set_xlabel("output tokens")
    hist_ax.set_ylabel("pages")
    hist_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist_ax.set_title("Output tokens per page")
    hist_ax.legend(fontsize="small")
    shares = truncation["share"]
    bars = cut_ax.bar(list(shares.index), shares.to_numpy(), color=CUT_COLOR, width=0.5)
    cut_ax.set_xlim(-0.75, len(shares) - 0.25)
    cut_ax.bar_label(bars, labels=[f"{t}/{n}" for t, n in zip(truncation["truncated"], truncation["rows"])])
    cut_ax.set_ylim(0, 1.15)
    cut_ax.set_ylabel("share truncated")
    cut_ax.set_title("Truncated pages by status")
    cut_ax.tick_params(axis="x", labelsize="small")
    return fig


def eval_figure(scores: dict) -> Figure | None:
    """Per field of `pageray eval`'s scores: normalised accuracy and F1 (a score not defined for a
    field, as F1 with nothing labeled or predicted, is left out, not drawn as 0)."""
    fields = scores.get("fields") or {}
    if not fields:
        return None
    names = list(fields)
    fig, ax = _figure(height=max(2.0, 0.32 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    norm = [fields[n]["normalized"] for n in names]
    f1 = [fields[n]["f1"] for n in names]
    ax.barh(y + 0.2, [v if v is not None else 0 for v in norm], height=0.4, color=NEUTRAL, label="normalised match")
    ax.barh(y - 0.2, [v if v is not None else 0 for v in f1], height=0.4, color=OK_COLOR, label="F1")
    ax.set_yticks(y, names, fontsize="small")
    ax.set_xlim(0, 1.05)
    ax.set_title("Scores against the labels, per field")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return fig
