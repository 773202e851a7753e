"""Compare a trained AMN with COBRApy on any medium: a static figure and an ipywidgets explorer.

:func:`compare` solves one medium both ways (the AMN's forward pass and COBRApy pFBA) and returns
the growth rates and the fluxes side by side; :func:`comparison_figure` draws that comparison
with matplotlib (the book's static fallback); :func:`explorer` wraps the same figure in sliders,
one per medium uptake, for readers running the notebook in Jupyter or Colab. Uptakes are upper
bounds in mmol gDW^-1 h^-1, growth rates in h^-1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amnlib.models import AMN
from amnlib.network import MetabolicNetwork
from amnlib.plotting import FLUX_LABEL, GROWTH_LABEL, PALETTE

__all__ = ["Comparison", "medium_vector", "compare", "comparison_figure", "widgets_live",
           "explorer"]


@dataclass
class Comparison:
    """One medium solved by an AMN and by COBRApy pFBA.

    ``medium``: uptake bounds by split id (``EX_..._i``); ``growth_amn`` / ``growth_pfba`` (h^-1;
    ``growth_pfba`` is 0 when the medium does not grow, ``status`` says why); ``fluxes``:
    DataFrame indexed by split id with columns ``amn`` and ``pfba`` (mmol gDW^-1 h^-1).
    """

    medium: dict[str, float]
    growth_amn: float
    growth_pfba: float
    status: str
    fluxes: pd.DataFrame


def medium_vector(model: AMN, medium: Mapping[str, float] | Sequence[float] | np.ndarray,
                  network: MetabolicNetwork) -> np.ndarray:
    """Uptake bounds (n_in,) in the model's input order from a medium dict (COBRApy exchange
    ids ``EX_glc__D_e`` or split ids ``EX_glc__D_e_i``; unlisted uptakes 0) or a vector."""
    if isinstance(medium, Mapping):
        x = np.zeros(model.n_in)
        pos = {u: k for k, u in enumerate(model.in_ids)}
        for key, value in medium.items():
            uid = network.uptake_id(network.exchange_id(key))
            if uid not in pos:
                raise ValueError(
                    f"{key!r} is not an input of this model; inputs: {', '.join(model.in_ids)}"
                )
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"uptake bound of {key!r} must be a number >= 0, got {value}")
            x[pos[uid]] = float(value)
        return x
    x = np.asarray(medium, dtype=float).ravel()
    if x.shape != (model.n_in,):
        raise ValueError(f"medium vector must have {model.n_in} values (model.in_ids), got "
                         f"{x.shape}")
    return x


def compare(
    model: AMN,
    network: MetabolicNetwork,
    medium: Mapping[str, float] | Sequence[float] | np.ndarray,
) -> Comparison:
    """Predict the fluxes of ``medium`` with ``model`` and solve it with COBRApy pFBA."""
    x = medium_vector(model, medium, network)
    v_amn = model.predict(x[None].astype(np.float32))[0].astype(float)
    cobra_medium = {
        network.exchange_id(u[: -len("_i")]): float(b)
        for u, b in zip(model.in_ids, x, strict=True)
        if b > 0
    }
    ref = network.solve(cobra_medium, method="pfba")
    v_ref = ref.v if ref.v is not None else np.zeros(network.n)
    fluxes = pd.DataFrame({"amn": v_amn, "pfba": v_ref}, index=list(network.reaction_ids))
    b = network.biomass_index
    return Comparison(
        medium={u: float(v) for u, v in zip(model.in_ids, x, strict=True)},
        growth_amn=float(v_amn[b]),
        growth_pfba=float(v_ref[b]) if ref.ok else 0.0,
        status=ref.status,
        fluxes=fluxes,
    )


def comparison_figure(
    model: AMN,
    network: MetabolicNetwork,
    medium: Mapping[str, float] | Sequence[float] | np.ndarray,
    top: int = 12,
    fig: plt.Figure | None = None,
) -> plt.Figure:
    """Three panels for one medium: growth rate (AMN vs pFBA), every flux (AMN against pFBA),
    and the ``top`` largest pFBA fluxes side by side. Returns the figure."""
    cmp = compare(model, network, medium)
    if fig is None:
        fig = plt.figure(figsize=(13, 3.8))
    fig.clear()
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.6, 1.2, 1.6]})
    ax1.bar(["AMN", "pFBA"], [cmp.growth_amn, cmp.growth_pfba],
            color=[PALETTE["AMN"], PALETTE["pFBA"]])
    ax1.set_ylabel(GROWTH_LABEL)
    ax1.set_title("growth rate")
    f = cmp.fluxes
    ax2.scatter(f["pfba"], f["amn"], s=12, color=PALETTE["AMN"], alpha=0.8)
    hi = float(max(f.to_numpy().max(), 1e-3))
    ax2.plot([0, hi], [0, hi], color="0.5", ls="--", lw=1, zorder=0)
    ax2.set_xlabel("pFBA " + FLUX_LABEL)
    ax2.set_ylabel("AMN " + FLUX_LABEL)
    ax2.set_title(f"all {len(f)} split fluxes")
    big = f.loc[f["pfba"].abs().sort_values(ascending=False).index[:top]]
    pos = np.arange(len(big))
    ax3.barh(pos - 0.2, big["pfba"], height=0.4, color=PALETTE["pFBA"], label="pFBA")
    ax3.barh(pos + 0.2, big["amn"], height=0.4, color=PALETTE["AMN"], label="AMN")
    ax3.set_yticks(pos, big.index, fontsize=8)
    ax3.invert_yaxis()
    ax3.set_xlabel(FLUX_LABEL)
    ax3.set_title(f"{top} largest pFBA fluxes")
    ax3.legend(frameon=False, fontsize=8)
    if cmp.status != "optimal":
        fig.suptitle(f"COBRApy status: {cmp.status}", color="C3")
    fig.tight_layout()
    return fig


def widgets_live() -> bool:
    """True when an interactive widget can work: ipywidgets is installed, the code runs in a
    Jupyter/Colab kernel, and neither fast mode (``AMNLIB_FAST``) nor ``AMNLIB_STATIC=1`` asks
    for static output (the book build and CI use the static figure)."""
    from amnlib.runtime import fast_mode

    if fast_mode() or os.environ.get("AMNLIB_STATIC", "").strip() in ("1", "true", "yes"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None:
        return False
    return "google.colab" in sys.modules or type(ip).__name__ == "ZMQInteractiveShell"


def explorer(
    model: AMN,
    network: MetabolicNetwork,
    ids: Sequence[str] | None = None,
    start: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
    max_value: float = 10.0,
    step: float = 0.5,
) -> Any:
    """An ipywidgets box: one slider per medium uptake (``ids``, default all inputs of the model,
    split or exchange ids), redrawing :func:`comparison_figure` when a slider moves.

    ``start``: initial medium (dict or vector; default every uptake at ``max_value / 2``).
    """
    import ipywidgets as w
    from IPython.display import display

    x0 = (np.full(model.n_in, max_value / 2) if start is None
          else medium_vector(model, start, network))
    shown = list(model.in_ids) if ids is None else [
        network.uptake_id(network.exchange_id(i)) for i in ids
    ]
    unknown = [i for i in shown if i not in model.in_ids]
    if unknown:
        raise ValueError(f"{unknown} are not inputs of this model")
    sliders = {
        uid: w.FloatSlider(
            value=float(x0[model.in_ids.index(uid)]), min=0.0, max=max_value, step=step,
            description=uid.removeprefix("EX_").removesuffix("_e_i"),
            continuous_update=False, layout=w.Layout(width="300px"),
        )
        for uid in shown
    }
    out = w.Output()

    def redraw(_: Any = None) -> None:
        x = x0.copy()
        for uid, s in sliders.items():
            x[model.in_ids.index(uid)] = s.value
        with out:
            out.clear_output(wait=True)
            fig = comparison_figure(model, network, x)
            display(fig)
            plt.close(fig)

    for s in sliders.values():
        s.observe(redraw, names="value")
    redraw()
    cols = list(sliders.values())
    half = (len(cols) + 1) // 2
    return w.VBox([w.HBox([w.VBox(cols[:half]), w.VBox(cols[half:])]), out])
