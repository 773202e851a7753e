"""Our FBA duals beside COBRApy's ``shadow_prices`` and ``reduced_costs``.

Three numbers describe how the optimal growth rate ``mu`` (h^-1) responds to the uptake of an
external metabolite ``x_e`` whose exchange ``EX_x_e`` (``x_e <=>``) has the lower bound ``-u``
(``u`` the uptake bound, mmol gDW^-1 h^-1):

* **COBRApy's shadow price** of ``x_e``: ``d mu / d r`` for the mass balance row
  ``S_x v = r`` (``r = 0`` in FBA). ``r > 0`` forces ``x_e`` to *accumulate*, so a
  growth-limiting nutrient has a *negative* shadow price; supplying it (``r < 0``) raises growth:
  ``d mu / d u = -shadow_price``.
* **COBRApy's reduced cost** of ``EX_x_e``: COBRApy (optlang) writes every reaction as a forward
  and a reverse variable, ``v = v_f - v_r``, and reports ``rc = rc_f - rc_r``. With the uptake at
  its bound, the reverse variable's reduced cost is ``+d mu / d u`` and the forward one's is its
  negative (the columns are opposite, neither has an objective coefficient), so
  ``reduced_cost = -2 d mu / d u``: twice the derivative, with the opposite sign.
* **Our duals** (:func:`amnlib.solvers.fast_fba`, PDHG): ``dual`` holds ``d mu / d b`` of the rows
  ``S v = b`` of the split network -- the same convention as COBRApy's shadow prices, equal to
  them -- and ``bound_dual`` the multiplier of each column's upper bound, ``d mu / d ub``. The
  uptake column ``EX_x_e_i`` (one direction only, ``0 <= v <= u``) gives ``d mu / d u``
  directly: ``bound_dual = -shadow_price = -reduced_cost / 2``, which is also what autograd
  through the solver and central finite differences return (the envelope theorem).

:func:`compare_with_cobrapy` puts all of them in one table, for the book's chapter 2 and the
tests. On textbook with its default medium (glucose 10, COBRApy 0.32): shadow price of
``glc__D_e`` -0.0917, reduced cost of ``EX_glc__D_e`` -0.1833, ``d mu / d u`` +0.0917.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from amnlib.network import MetabolicNetwork

__all__ = ["finite_difference", "compare_with_cobrapy"]


def _external_metabolite(model, exchange: str) -> str:
    rxn = model.reactions.get_by_id(exchange)
    mets = list(rxn.metabolites)
    if len(mets) != 1:
        raise ValueError(f"{exchange!r} is not a one-metabolite exchange: {rxn.reaction}")
    return mets[0].id


def finite_difference(model, exchange: str, delta: float = 0.05) -> float:
    """Central difference ``d mu / d u`` (h^-1 per mmol gDW^-1 h^-1) of COBRApy FBA for the
    uptake bound ``u = -lower_bound`` of ``exchange``, bounds changed in place and restored."""
    rxn = model.reactions.get_by_id(exchange)
    u = -rxn.lower_bound
    if u <= 0:
        raise ValueError(f"{exchange!r} has no uptake (lower bound {rxn.lower_bound})")
    lo = max(u - delta, 0.0)
    with model:
        rxn.lower_bound = -(u + delta)
        hi_g = model.slim_optimize()
        rxn.lower_bound = -lo
        lo_g = model.slim_optimize()
    return float((hi_g - lo_g) / (u + delta - lo))


def compare_with_cobrapy(
    network: MetabolicNetwork,
    exchanges: Sequence[str] = ("EX_glc__D_e", "EX_o2_e"),
    medium: Mapping[str, float] | None = None,
    delta: float = 0.05,
    max_iterations: int = 20_000,
    tol: float = 1e-7,
) -> pd.DataFrame:
    """One row per exchange of ``exchanges`` (with uptake in ``medium``, default the model's
    own medium): COBRApy's shadow price of its metabolite and reduced cost of the exchange, the
    finite-difference ``d mu / d u``, our PDHG metabolite dual and uptake-bound multiplier, and
    the two COBRApy numbers converted to ``d mu / d u`` (``-shadow price``, ``-reduced cost / 2``).

    All in h^-1 per mmol gDW^-1 h^-1. Raises ``ValueError`` for an exchange that is not in the
    medium (no uptake bound to differentiate).
    """
    from amnlib.solvers import fast_fba, fba_problem

    model = network.model.copy()
    if medium is not None:
        model.medium = dict(medium)
    med = dict(model.medium)
    missing = [e for e in exchanges if e not in med]
    if missing:
        raise ValueError(f"exchanges {missing} are not in the medium {sorted(med)}")
    sol = model.optimize()
    rep = fast_fba(network, [med], max_iterations=max_iterations, tol=tol, dtype=torch.float64)
    dual = rep.dual.detach().cpu().numpy()[0]
    bound = rep.bound_dual.detach().cpu().numpy()[0]
    rows = fba_problem(network, [med], reduce_rows=False).rows  # the rows fast_fba keeps
    row_of = {network.metabolite_ids[r]: k for k, r in enumerate(rows)}
    out = []
    for ex in exchanges:
        met = _external_metabolite(model, ex)
        sp = float(sol.shadow_prices[met])
        rc = float(sol.reduced_costs[ex])
        out.append({
            "exchange": ex,
            "metabolite": met,
            "cobrapy shadow price": sp,
            "cobrapy reduced cost": rc,
            "finite difference d mu/du": finite_difference(model, ex, delta),
            "ours: metabolite dual": float(dual[row_of[met]]) if met in row_of else np.nan,
            "ours: uptake bound multiplier": float(bound[network.index(network.uptake_id(ex))]),
            "-shadow price": -sp,
            "-reduced cost / 2": -rc / 2,
            "growth cobrapy": float(sol.objective_value),
            "growth ours": float(rep.growth[0]),
        })
    return pd.DataFrame(out).set_index("exchange")
