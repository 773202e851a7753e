"""Figures shared by the notebooks: one seaborn style, labelled axes with units."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from amnlib.metrics import r2 as r2_score

#: Colours of the methods, used consistently across chapters.
PALETTE = {
    "COBRApy": "#333333",
    "pFBA": "#333333",
    "RNN-W": "#1b9e77",
    "EB": "#d95f02",
    "UB": "#7570b3",
    "QP": "#d95f02",
    "LP": "#7570b3",
    "fast": "#e7298a",
    "AMN": "#66a61e",
    "ANN": "#a6761d",
    "FBA": "#666666",
    "PINN": "#1f78b4",
    "MLP": "#a6761d",
    "CRNN": "#e6ab02",
}

GROWTH_LABEL = "growth rate (h$^{-1}$)"
FLUX_LABEL = "flux (mmol gDW$^{-1}$ h$^{-1}$)"


def set_style() -> None:
    """The book's plotting style (call once at the top of a notebook).

    In a Jupyter kernel, figures are also recorded as pixel-doubled PNGs (200 dpi, shown at
    100 dpi) so that they stay sharp on the website; a warning is raised when the kernel runs a
    non-interactive backend such as ``MPLBACKEND=Agg``, with which ``plt.show()`` records nothing.
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "axes.titleweight": "bold"})
    _inline_figures()


def _inline_figures() -> None:
    """Record figures as retina PNGs in a Jupyter kernel; warn when they cannot be recorded."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with matplotlib-inline / ipykernel
        return
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")
    backend = plt.get_backend().lower()
    if "inline" not in backend and "ipympl" not in backend and "widget" not in backend:
        warnings.warn(
            f"matplotlib backend {backend!r} in a Jupyter kernel: plt.show() records no figure "
            "(unset MPLBACKEND before starting Jupyter)", RuntimeWarning, stacklevel=3)


def parity(
    ax: plt.Axes,
    truth: np.ndarray,
    predicted: np.ndarray,
    *,
    label: str | None = None,
    color: str | None = None,
    xlabel: str = "reference " + GROWTH_LABEL,
    ylabel: str = "predicted " + GROWTH_LABEL,
    show_r2: bool = True,
    size: float = 14,
) -> plt.Axes:
    """Predicted against reference values with the identity line and R^2 in the legend;
    ``size``: marker area (points^2; larger for a handful of points)."""
    truth = np.asarray(truth, dtype=float).ravel()
    predicted = np.asarray(predicted, dtype=float).ravel()
    text = label or ""
    if show_r2:
        text = f"{text} (R$^2$ = {r2_score(truth, predicted):.3f})".strip()
    ax.scatter(truth, predicted, s=size, alpha=0.7, color=color, label=text or None)
    lo = float(min(truth.min(), predicted.min()))
    hi = float(max(truth.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", zorder=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if text:
        ax.legend(frameon=False)
    return ax



def parity_figure(measured, predicted, title: str, unit: str = "fitness (relative to WT)"):
    """A stand-alone Figure (not registered with pyplot, so nothing is shown or leaked) with
    :func:`parity` of ``predicted`` against ``measured``; ``unit`` names both axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = parity(fig.add_subplot(), measured, predicted, xlabel=f"measured {unit}",
                ylabel=f"predicted {unit}", show_r2=False)
    ax.set_title(title)
    return fig


def curves(
    ax: plt.Axes,
    history: dict[str, Sequence[float]],
    *,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    logy: bool = True,
) -> plt.Axes:
    """Training curves: one line per named series."""
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name, color=PALETTE.get(name))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    return ax
