"""Reservoir computing on measured E. coli growth rates (paper Fig. 4, Tables S1-S2).

The experiment: E. coli DH5-alpha grown on 110 media (M9 + glycerol + a few amino acids, plus 1-4
of 10 carbon sources); 2-8 replicate growth rates (h^-1) per medium
(:func:`amnlib.data.load_growth_110`). Each medium is the 0/1 presence vector ``C`` (110, 38) of
38 uptakes in iML1515 exchange space (:func:`amnlib.data.load_media_110`).

What this module provides, all evaluated on the *same* cross-validation folds
(:func:`make_folds`: 10-fold, stratified by the number of carbon sources, repeated with 3 seeds;
Q^2 from the pooled held-out predictions, :func:`pooled_q2`):

* the replicate-noise ceiling (:func:`noise_ceiling`);
* FBA baselines with a fast repeated-FBA engine (:class:`MediumFBA`): out-of-the-box FBA (uptake
  bound 10 mmol gDW^-1 h^-1 for present compounds), the same with one fitted scaling factor, and
  FBA whose uptake bounds are fitted to growth by BFGS (:func:`optimize_uptakes`; the gradient of
  the growth rate with respect to an uptake bound is the reduced cost of the split uptake column
  ``EX_..._i``, i.e. minus COBRApy's shadow price of the metabolite and minus half COBRApy's
  reduced cost of the reversible exchange (:mod:`amnlib.duals`); with bounds ``b * C_j`` the
  chain rule adds the factor ``C_jk``; so each BFGS step costs one LP per medium instead of one
  per medium and parameter);
* black-box baselines on the 10 carbon-source columns: OLS (statsmodels), XGBoost, random forest,
  a dense network (:data:`BASELINES`);
* the reservoir (:class:`ReservoirModel`): an AMN-QP pre-trained on simulated pFBA data of the
  experimental media (:func:`pretrain_reservoir`, the generator's ratio-0 "experimental" mode,
  cached on disk) is frozen; a trainable dense layer maps ``C`` to uptake fluxes ``V_in``
  feeding it, trained on the measured growth rates through the frozen AMN
  (:func:`cross_val_reservoir`, :func:`fit_reservoir`). The learned uptakes are exported as
  COBRApy medium dicts / a table (:func:`learned_uptakes`, Table S2 analog) and fed back to FBA.
  FBA can use them only where they stay on the reservoir's pre-training domain
  (:func:`domain_shift`): the book's reservoir is pre-trained with every present compound varied
  (:func:`pretraining_spec`) and its layer learns every uptake within its pre-training range
  (``learn="domain"``).

:func:`run` is the ``amnlib reproduce reservoir`` experiment.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from amnlib import papers
from amnlib.experiments import Report
from amnlib.metrics import r2
from amnlib.network import MetabolicNetwork

__all__ = [
    "PAPER",
    "GrowthData",
    "Fold",
    "load_growth_data",
    "load_network",
    "make_folds",
    "pooled_q2",
    "r2",
    "noise_ceiling",
    "cross_val_predict",
    "MediumFBA",
    "default_bounds",
    "fba_default",
    "fit_scale",
    "BFGSResult",
    "optimize_uptakes",
    "BASELINES",
    "DenseGrowth",
    "UptakeLayer",
    "ReservoirModel",
    "THROUGH",
    "Pretrained",
    "pretrain_reservoir",
    "pretraining_spec",
    "sizes",
    "pretrain_args",
    "reservoir_args",
    "mechanistic_correction",
    "cross_val_reservoir",
    "held_out_uptakes",
    "evaluate_reservoir",
    "domain_shift",
    "LEARN",
    "SHORTCUT_TOL",
    "fit_reservoir",
    "learned_uptakes",
    "media_dicts",
    "run",
]

#: Published numbers of Fig. 4 (:func:`amnlib.papers.reservoir_dict`: the preprint's R^2 0.78
#: of Fig. 4B, 0.96 on training sets, 0.47 of Fig. 4D, all on 73 media; the book uses the
#: published 110-media data set). The other rows of our tables (dense network alone, random
#: forest, scaled FBA, FBA with the reservoir's bounds, noise ceiling) have no number in the
#: preprint and none located in the authors' repository: NaN, so that tables keep their rows.
PAPER: dict[str, float] = {
    **papers.reservoir_dict(),
    **dict.fromkeys(("ann", "random_forest", "fba_scaled", "fba_reservoir_bounds",
                     "noise_ceiling"), float("nan")),
}
#: Out-of-the-box uptake bound of a present compound (mmol gDW^-1 h^-1).
DEFAULT_UPTAKE = 10.0
#: BFGS starting value of every optimized bound (preprint: 5; with iJO1366 and the other
#: present compounds at 10, every medium is then O2-limited and the carbon bounds get no gradient).
BFGS_START = 1.0


# ============================================================================ data
@dataclass(frozen=True)
class GrowthData:
    """The 110 measured media.

    ``C`` (110, n_in) 0/1 presence of the uptakes ``in_ids`` (split ids ``EX_..._e_i``);
    ``carbon_ids`` the 10 variable carbon sources (a subset of ``in_ids``); ``y`` (110,) mean
    growth rate (h^-1); ``replicates`` (110, 8) replicate growth rates (h^-1, NaN where missing).
    """

    C: np.ndarray
    in_ids: list[str]
    carbon_ids: list[str]
    y: np.ndarray
    replicates: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def carbon(self) -> np.ndarray:
        """(110, 10) presence of the carbon sources (the features of the black-box baselines)."""
        return self.C[:, [self.in_ids.index(c) for c in self.carbon_ids]]

    @property
    def n_carbon(self) -> np.ndarray:
        """(110,) number of added carbon sources per medium (1..4), the CV strata."""
        return self.carbon.sum(axis=1).astype(int)

    @property
    def organic_ids(self) -> list[str]:
        """Uptakes present in every medium that are not inorganic (glycerol, amino acids) plus
        the carbon sources: the bounds optimized by BFGS (preprint: the VER plus glycerol)."""
        inorganic = {
            "EX_pi_e_i", "EX_co2_e_i", "EX_fe3_e_i", "EX_h_e_i", "EX_mn2_e_i", "EX_fe2_e_i",
            "EX_zn2_e_i", "EX_mg2_e_i", "EX_ca2_e_i", "EX_ni2_e_i", "EX_cu2_e_i", "EX_sel_e_i",
            "EX_cobalt2_e_i", "EX_h2o_e_i", "EX_mobd_e_i", "EX_so4_e_i", "EX_nh4_e_i",
            "EX_k_e_i", "EX_na1_e_i", "EX_cl_e_i", "EX_o2_e_i", "EX_tungs_e_i", "EX_slnt_e_i",
        }  # fmt: skip
        return [i for i in self.in_ids if i not in inorganic]


def load_growth_data() -> GrowthData:
    """The measured media and growth rates (``EXP110.csv`` + ``iML1515_EXP.csv``, same order).

    Raises ``ValueError`` if the two files disagree on the media or the mean growth rates.
    """
    from amnlib.data import load_growth_110, load_media_110

    growth, media = load_growth_110(), load_media_110()
    in_ids = [c for c in media.columns if c.endswith("_i")]
    carbon_ids = [c for c in growth.columns if c.endswith("_i")]
    if len(growth) != len(media):
        raise ValueError(f"EXP110 has {len(growth)} media, iML1515_EXP {len(media)}")
    missing = [c for c in carbon_ids if c not in in_ids]
    if missing:
        raise ValueError(f"carbon sources {missing} are not columns of iML1515_EXP")
    if not np.array_equal(growth[carbon_ids].to_numpy(), media[carbon_ids].to_numpy()):
        raise ValueError("EXP110 and iML1515_EXP list the carbon sources of the media differently")
    y = growth["GR_AVG"].to_numpy(dtype=float)
    if not np.allclose(y, media["GR_AVG"].to_numpy(dtype=float), atol=1e-8):
        raise ValueError("EXP110 and iML1515_EXP disagree on GR_AVG")
    reps = growth[[c for c in growth.columns if c.startswith("GR_") and c[3:].isdigit()]]
    return GrowthData(
        C=media[in_ids].to_numpy(dtype=float),
        in_ids=in_ids,
        carbon_ids=carbon_ids,
        y=y,
        replicates=reps.to_numpy(dtype=float),
    )


def load_network(prefer: str = "iML1515", in_ids: Sequence[str] | None = None) -> tuple[
    MetabolicNetwork, list[str]
]:
    """The genome-scale network: ``prefer`` (the paper's iML1515, downloaded from BiGG by
    COBRApy) when it loads, else iJO1366 (shipped with COBRApy; all 38 exchanges of the
    experiment exist in it). ``in_ids`` become the network's medium columns.

    Returns ``(network, notes)``; the notes say which model is used and why.
    """
    notes: list[str] = []
    if in_ids is None:
        in_ids = load_growth_data().in_ids
    if prefer != "iJO1366":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = MetabolicNetwork.load(prefer, medium=list(in_ids))
            return net, [f"model {prefer}"]
        except Exception as err:  # noqa: BLE001 - no network/unknown model: use the offline one
            notes.append(
                f"{prefer} could not be loaded ({type(err).__name__}: {str(err)[:120]}); "
                "using iJO1366 (offline, shipped with COBRApy)"
            )
    net = MetabolicNetwork.load("iJO1366", medium=list(in_ids))
    return net, [*notes, "model iJO1366"]


# ============================================================================ folds, metrics
@dataclass(frozen=True)
class Fold:
    """One split: ``train``/``test`` row indices (sorted) for repetition ``seed``, fold
    ``index``."""

    seed: int
    index: int
    train: np.ndarray
    test: np.ndarray


def make_folds(
    strata: np.ndarray, n_splits: int = 10, seeds: Sequence[int] = (0, 1, 2)
) -> list[Fold]:
    """Stratified k-fold splits, repeated once per seed (``sklearn.StratifiedKFold`` with
    shuffling). ``strata`` (n,) integer labels (here the number of carbon sources). Every row is
    in exactly one test fold per seed."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.asarray(strata)
    if strata.ndim != 1:
        raise ValueError(f"strata must be 1-D, got shape {strata.shape}")
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    smallest = int(np.bincount(strata - strata.min()).max()) if len(strata) else 0
    if smallest < n_splits and len(np.unique(strata)) == 1:
        raise ValueError(f"{len(strata)} rows cannot be split into {n_splits} folds")
    folds = []
    for seed in seeds:
        skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=int(seed))
        for k, (tr, te) in enumerate(skf.split(np.zeros(len(strata)), strata)):
            folds.append(Fold(int(seed), k, np.sort(tr), np.sort(te)))
    return folds


def pooled_q2(y: np.ndarray, held_out: np.ndarray) -> float:
    """Q^2 of the pooled held-out predictions: ``held_out`` (n_seeds, n) holds, per repetition,
    the prediction of every row by the model that did not see it; all repetitions are pooled
    into one R^2 against ``y`` (n,) repeated (paper Fig. 4B)."""
    held_out = np.atleast_2d(held_out)
    if held_out.shape[1] != len(y):
        raise ValueError(f"held_out must have {len(y)} columns, got {held_out.shape}")
    return r2(np.tile(y, held_out.shape[0]), held_out)


def noise_ceiling(replicates: np.ndarray) -> dict[str, float]:
    """How well can growth be predicted at all, given the replicate scatter? ``replicates``
    (n, r) growth rates with NaN for missing replicates (at least 2 per row).

    Returns three ceilings (R^2):

    * ``loo_replicate`` -- every replicate predicted by the mean of the *other* replicates of its
      medium (a perfect model of the medium, tested on a new measurement): the headline value;
    * ``replicate_vs_mean`` -- every replicate against its medium's mean (the same, optimistic);
    * ``mean_known`` -- expected R^2 against the replicate means of a model that knows the true
      means: ``1 - sum_i s_i^2 / k_i / SS_tot``.
    """
    R = np.asarray(replicates, dtype=float)
    k = (~np.isnan(R)).sum(axis=1)
    if np.any(k < 2):
        raise ValueError(f"rows {np.flatnonzero(k < 2)[:5].tolist()} have fewer than 2 replicates")
    mean = np.nanmean(R, axis=1)
    obs, loo, avg = [], [], []
    for i in range(len(R)):
        r = R[i][~np.isnan(R[i])]
        obs.append(r)
        loo.append((r.sum() - r) / (len(r) - 1))
        avg.append(np.full(len(r), r.mean()))
    o, lo, av = np.concatenate(obs), np.concatenate(loo), np.concatenate(avg)
    ss_tot = float(((mean - mean.mean()) ** 2).sum())
    return {
        "loo_replicate": r2(o, lo),
        "replicate_vs_mean": r2(o, av),
        "mean_known": 1.0 - float((np.nanvar(R, axis=1, ddof=1) / k).sum()) / ss_tot,
    }


FitPredict = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def cross_val_predict(
    fit_predict: FitPredict, folds: Sequence[Fold], n: int, progress: bool = False
) -> np.ndarray:
    """Held-out predictions (n_seeds, n): ``fit_predict(train_idx, test_idx, seed)`` trains on
    ``train_idx`` and returns predictions (len(test_idx),) for ``test_idx``."""
    seeds = sorted({f.seed for f in folds})
    out = np.full((len(seeds), n), np.nan)
    it: Any = folds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(folds, leave=False)
    for f in it:
        pred = np.asarray(fit_predict(f.train, f.test, 1000 * f.seed + f.index), dtype=float)
        if pred.shape != (len(f.test),):
            raise ValueError(f"fit_predict returned shape {pred.shape}, want ({len(f.test)},)")
        out[seeds.index(f.seed), f.test] = pred
    if np.isnan(out).any():
        raise ValueError("the folds do not cover every row once per seed")
    return out


# ============================================================================ FBA
class MediumFBA:
    """Repeated FBA of one network over many media (uptake bounds of ``in_ids``).

    Each call changes only the bounds that differ from the previous medium and re-solves the
    same LP (GLPK warm start from the previous basis). Uptakes not in ``in_ids`` are closed
    (COBRApy ``model.medium`` semantics). The gradient of the growth rate with respect to an
    uptake bound ``u`` is the reduced cost of the split uptake column ``EX_..._i`` (``d mu / d u
    >= 0``; COBRApy reports ``-d mu / d u`` as the metabolite's shadow price and ``-2 d mu / d u``
    as the exchange's reduced cost, see :mod:`amnlib.duals`); valid where the LP optimum is
    non-degenerate, a subgradient elsewhere.
    """

    def __init__(self, network: MetabolicNetwork, in_ids: Sequence[str]):
        self.in_ids = list(in_ids)
        self.model = network.model.copy()
        exchanges = [network.exchange_id(i) for i in self.in_ids]  # ValueError names the id
        model = self.model
        for r in model.exchanges:
            if r.lower_bound < 0:
                r.lower_bound = 0.0
        model.objective = network.biomass_reaction
        self._vars = []
        for e in exchanges:
            r = model.reactions.get_by_id(e)
            self._vars.append(r.reverse_variable if r.reactants else r.forward_variable)
        self._current = np.full(len(self.in_ids), np.nan)
        self.n_solves = 0
        # Between media only bounds change: the previous basis stays dual feasible, so the dual
        # simplex re-optimizes in a few pivots (about 3x faster than GLPK's default primal).
        self._glpk: Any = None
        smcp = getattr(model.solver.configuration, "_smcp", None)
        if smcp is not None and "glpk" in model.solver.interface.__name__:
            import swiglpk

            model.solver.update()
            smcp.meth = swiglpk.GLP_DUALP
            self._glpk = swiglpk
            pos = {v.name: k + 1 for k, v in enumerate(model.solver.variables)}  # 1-based
            self._cols = [pos[v.name] for v in self._vars]
            self._lbs = [float(v.lb or 0.0) for v in self._vars]
            # maximise the biomass column only
            if model.solver.objective.direction != "max":
                raise ValueError("the biomass objective must be maximised")

    def _set(self, b: np.ndarray) -> None:
        changed = np.flatnonzero(b != self._current)
        if self._glpk is not None:
            glp, prob = self._glpk, self.model.solver.problem
            for k in changed:
                lb, ub = self._lbs[k], max(float(b[k]), self._lbs[k])
                glp.glp_set_col_bnds(prob, self._cols[k], glp.GLP_FX if ub == lb else glp.GLP_DB,
                                     lb, ub)  # fmt: skip
        else:
            for k in changed:
                self._vars[k].ub = float(b[k])
        self._current = b.copy()

    def _solve(self, grad: bool) -> tuple[float, np.ndarray | None]:
        """Solve the current LP: (growth, duals of the uptake columns or None)."""
        if self._glpk is not None:
            glp, prob = self._glpk, self.model.solver.problem
            ret = glp.glp_simplex(prob, self.model.solver.configuration._smcp)
            if ret != 0 or glp.glp_get_status(prob) != glp.GLP_OPT:
                glp.glp_std_basis(prob)  # recover from a failed warm start, then retry once
                ret = glp.glp_simplex(prob, self.model.solver.configuration._smcp)
                if ret != 0 or glp.glp_get_status(prob) != glp.GLP_OPT:
                    return 0.0, None
            g = glp.glp_get_obj_val(prob)
            duals = np.array([glp.glp_get_col_dual(prob, c) for c in self._cols]) if grad else None
            return g, duals
        solver = self.model.solver
        if solver.optimize() != "optimal":
            return 0.0, None
        duals = np.array([v.dual for v in self._vars]) if grad else None
        return float(solver.objective.value), duals

    def growth(self, B: np.ndarray, grad: bool = False) -> np.ndarray | tuple[np.ndarray, ...]:
        """FBA growth rates (h^-1) of the media ``B`` (batch, n_in) of uptake bounds
        (mmol gDW^-1 h^-1, >= 0). With ``grad=True`` also returns ``dg/dB`` (batch, n_in).
        Infeasible media give growth 0 (gradient 0)."""
        B = np.atleast_2d(np.asarray(B, dtype=float))
        if B.shape[1] != len(self.in_ids):
            raise ValueError(f"B must have {len(self.in_ids)} columns (in_ids), got {B.shape}")
        if np.any(B < 0) or not np.all(np.isfinite(B)):
            bad = np.argwhere(~(B >= 0))[0]
            raise ValueError(
                f"uptake bounds must be finite and >= 0; {self.in_ids[bad[1]]} in row {bad[0]} "
                f"is {B[tuple(bad)]}"
            )
        g = np.zeros(len(B))
        G = np.zeros(B.shape) if grad else None
        for j, b in enumerate(B):
            self._set(b)
            val, duals = self._solve(grad)
            self.n_solves += 1
            g[j] = max(val, 0.0)
            if grad and duals is not None and val > 0:
                G[j] = duals
        return (g, G) if grad else g

    def medium_growth(self, media: Sequence[dict[str, float]]) -> np.ndarray:
        """Growth rates (h^-1) of COBRApy medium dicts ``{exchange or _i id: bound}``."""
        B = np.zeros((len(media), len(self.in_ids)))
        pos = {i: k for k, i in enumerate(self.in_ids)}
        pos.update({i[:-2]: k for k, i in enumerate(self.in_ids)})
        for j, med in enumerate(media):
            for key, val in med.items():
                if key not in pos:
                    raise ValueError(
                        f"medium entry {key!r} is not one of the uptakes {self.in_ids}"
                    )
                B[j, pos[key]] = val
        return self.growth(B)


def default_bounds(C: np.ndarray, value: float = DEFAULT_UPTAKE) -> np.ndarray:
    """Out-of-the-box uptake bounds: ``value`` for present compounds, 0 otherwise (batch, n_in)."""
    return np.asarray(C, dtype=float) * float(value)


def fba_default(fba: MediumFBA, C: np.ndarray, value: float = DEFAULT_UPTAKE) -> np.ndarray:
    """Out-of-the-box FBA growth rates (batch,) (h^-1) of the media ``C`` (batch, n_in)."""
    return fba.growth(default_bounds(C, value))


def fit_scale(pred: np.ndarray, y: np.ndarray) -> float:
    """Least-squares factor ``a`` minimising ``||y - a pred||^2`` (through the origin)."""
    pred, y = np.asarray(pred, float), np.asarray(y, float)
    den = float(pred @ pred)
    return float(pred @ y) / den if den > 0 else 0.0


@dataclass
class BFGSResult:
    """Uptake bounds fitted by BFGS: ``bounds`` {``_i`` id: mmol gDW^-1 h^-1} of the optimized
    compounds (present compounds only get them), ``loss`` per evaluation (MSE, h^-2),
    ``n_evaluations``, ``n_lp`` (LPs solved), ``seconds``, ``message``."""

    bounds: dict[str, float]
    loss: list[float] = field(default_factory=list)
    n_evaluations: int = 0
    n_lp: int = 0
    seconds: float = 0.0
    message: str = ""

    def base(self, in_ids: Sequence[str], default: float = DEFAULT_UPTAKE) -> np.ndarray:
        """(n_in,) bound of every uptake when present (optimized value or ``default``)."""
        return np.array([self.bounds.get(i, default) for i in in_ids])


def optimize_uptakes(
    fba: MediumFBA,
    C: np.ndarray,
    y: np.ndarray,
    param_ids: Sequence[str],
    default: float = DEFAULT_UPTAKE,
    x0: float = BFGS_START,
    maxiter: int = 30,
) -> BFGSResult:
    """Fit the uptake bounds of ``param_ids`` (when present) to the growth rates ``y`` (batch,)
    of the media ``C`` (batch, n_in) by BFGS on the MSE (preprint Methods, "Optimization of
    exchange reactions upper bounds in FBA"; start: every bound ``x0``).

    The bound of compound k is ``|p_k|`` (BFGS is unconstrained); other present compounds keep
    ``default``. The gradient is exact (reduced costs, :meth:`MediumFBA.growth`), so one
    evaluation solves one LP per medium.
    """
    from scipy.optimize import minimize

    C = np.asarray(C, dtype=float)
    y = np.asarray(y, dtype=float)
    cols = fba.in_ids
    unknown = [i for i in param_ids if i not in cols]
    if unknown:
        raise ValueError(f"param_ids {unknown} are not uptakes of the FBA engine")
    idx = np.array([cols.index(i) for i in param_ids])
    base = np.full(len(cols), float(default))
    res = BFGSResult(bounds={})
    lp0, t0 = fba.n_solves, time.perf_counter()
    memo: dict[bytes, tuple[float, np.ndarray]] = {}

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
        key = p.tobytes()
        if key in memo:
            return memo[key]
        b = base.copy()
        b[idx] = np.abs(p)
        g, G = fba.growth(C * b, grad=True)
        r = g - y
        val = float(np.mean(r**2))
        grad_b = 2.0 * (r[:, None] * G * C).mean(axis=0)
        grad_p = grad_b[idx] * np.where(p >= 0, 1.0, -1.0)
        res.loss.append(val)
        memo[key] = (val, grad_p)
        return val, grad_p

    out = minimize(
        loss, np.full(len(idx), float(x0)), jac=True, method="BFGS",
        options={"maxiter": int(maxiter), "gtol": 1e-7},
    )  # fmt: skip
    res.bounds = {i: float(abs(v)) for i, v in zip(param_ids, out.x, strict=True)}
    res.n_evaluations = len(res.loss)
    res.n_lp = fba.n_solves - lp0
    res.seconds = time.perf_counter() - t0
    res.message = str(out.message)
    return res


# ============================================================================ black-box baselines
class DenseGrowth(nn.Module):
    """Dense network ``C (batch, n_in) -> growth (batch,)`` (h^-1): the "ANN" baseline without
    a mechanistic layer (ReLU hidden layers, dropout)."""

    def __init__(self, n_in: int, hidden: Sequence[int] = (32,), dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, C: Tensor) -> Tensor:
        return self.net(C).squeeze(-1)


def _train_growth_model(
    model: nn.Module,
    C: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    device: torch.device | None = None,
) -> list[float]:
    """Full-batch Adam on the MSE of growth (h^-2); returns the loss per epoch. ``model(C)``
    must return (batch,) growth rates (or a tuple whose first entry is)."""
    torch.manual_seed(int(seed))
    p = next(q for q in model.parameters() if q.requires_grad)
    device = device or p.device
    Ct = torch.as_tensor(C, dtype=p.dtype, device=device)
    yt = torch.as_tensor(y, dtype=p.dtype, device=device)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=lr / 20)
    losses = []
    model.train()
    for _ in range(int(epochs)):
        out = model(Ct)
        g = out[0] if isinstance(out, tuple) else out
        loss = torch.mean((g - yt) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _predict_growth(model: nn.Module, C: np.ndarray) -> np.ndarray:
    p = next(model.parameters())
    with torch.no_grad():
        model.eval()
        out = model(torch.as_tensor(C, dtype=p.dtype, device=p.device))
        g = out[0] if isinstance(out, tuple) else out
    return g.detach().cpu().double().numpy()


def ols_predict(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Ordinary least squares with intercept (statsmodels) on the 0/1 features."""
    import statsmodels.api as sm

    fit = sm.OLS(y, sm.add_constant(X, has_constant="add")).fit()
    return fit.predict(sm.add_constant(X_test, has_constant="add"))


def xgboost_predict(
    X: np.ndarray, y: np.ndarray, X_test: np.ndarray, seed: int = 0, trees: int = 200
) -> np.ndarray:
    """Gradient-boosted trees (XGBoost; depth 3, shrinkage 0.05, ``trees`` rounds)."""
    import xgboost

    model = xgboost.XGBRegressor(
        n_estimators=int(trees), max_depth=3, learning_rate=0.05, subsample=0.8,
        random_state=int(seed), n_jobs=1,
    )  # fmt: skip
    model.fit(X, y)
    return model.predict(X_test).astype(float)


def random_forest_predict(
    X: np.ndarray, y: np.ndarray, X_test: np.ndarray, seed: int = 0, trees: int = 200
) -> np.ndarray:
    """Random forest (scikit-learn, ``trees`` trees)."""
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=int(trees), random_state=int(seed), n_jobs=1)
    model.fit(X, y)
    return model.predict(X_test)


def ann_predict(
    X: np.ndarray, y: np.ndarray, X_test: np.ndarray, seed: int = 0, epochs: int = 600
) -> np.ndarray:
    """Dense network without mechanistic layer (:class:`DenseGrowth`, full-batch Adam)."""
    torch.manual_seed(int(seed))
    model = DenseGrowth(X.shape[1]).double()
    _train_growth_model(model, X, y, epochs=epochs, lr=1e-2, seed=seed, weight_decay=1e-4)
    return _predict_growth(model, X_test)


#: name -> ``predict(X_train, y_train, X_test, seed)`` on the carbon-source features.
BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "ols": ols_predict,
    "xgboost": xgboost_predict,
    "random_forest": random_forest_predict,
    "ann": ann_predict,
}


# ============================================================================ reservoir
class UptakeLayer(nn.Module):
    """Trainable dense layer ``C (batch, n_in) -> V_in (batch, n_in)`` (it initialises
    :class:`ReservoirModel`, which holds one such layer per fold):
    ``V_in = vmax * sigmoid(W C + b) * C`` (mmol gDW^-1 h^-1): only present compounds are
    taken up, at most ``vmax`` (the largest uptake of the pre-training set, so the reservoir
    stays in the domain it was trained on)."""

    def __init__(self, n_in: int, vmax: float | Sequence[float], init_fraction: float = 0.5):
        super().__init__()
        self.linear = nn.Linear(n_in, n_in)
        vm = torch.as_tensor(np.broadcast_to(np.asarray(vmax, dtype=float), (n_in,)).copy())
        self.register_buffer("vmax", vm.float())
        with torch.no_grad():  # start every uptake near init_fraction * vmax
            self.linear.weight.mul_(0.1)
            self.linear.bias.fill_(math.log(init_fraction / (1 - init_fraction)))

    def forward(self, C: Tensor) -> Tensor:
        return self.vmax.to(C.dtype) * torch.sigmoid(self.linear(C)) * C


def _prior_head(amn: nn.Module) -> tuple[nn.Module, nn.Linear, nn.Module] | None:
    """(hidden part of the prior, output layer, output activation) of an AMN whose prior is the
    standard ``Sequential`` (:class:`amnlib.models.AMN`), so that the prior's growth can be
    computed from its biomass row alone; ``None`` for other modules."""
    prior = getattr(amn, "prior", None)
    if not isinstance(prior, nn.Sequential) or len(prior) < 2:
        return None
    if not isinstance(prior[-2], nn.Linear):
        return None
    return prior[:-2], prior[-2], prior[-1]


#: How :class:`ReservoirModel` computes growth: ``"amn"`` through the whole frozen AMN (prior and
#: mechanistic layer), ``"prior"`` from the biomass row of its dense prior only.
THROUGH = ("amn", "prior")
#: Largest gap (h^-1) between the growth of the whole AMN and of its prior for which training
#: takes its gradient through the prior (:func:`cross_val_reservoir`).
SHORTCUT_TOL = 1e-4


class ReservoirModel(nn.Module):
    """Fig. 4A: a trainable :class:`UptakeLayer` feeding a frozen, pre-trained AMN.

    ``forward(C)`` with C (batch, n_in) 0/1 presence (columns ``amn.in_ids``) returns
    ``(growth (batch,) h^-1, V_in (batch, n_in))``; :meth:`fluxes` gives all fluxes V
    (batch, n). With ``n_models > 1`` the layer holds independent weights per model (one per
    cross-validation fold) and C is (n_models, batch, n_in), outputs (n_models, batch[, n_in]).

    ``through`` (:data:`THROUGH`) says how growth is computed: ``"amn"`` (default) runs the
    whole frozen AMN, mechanistic layer included; ``"prior"`` only the biomass row of its dense
    prior (n times cheaper; for an AMN without mechanistic layer the two are the same number, for
    AMN-QP they differ by the layer's correction of the growth rate, which
    :func:`mechanistic_correction` measures). Training uses ``"prior"`` as a cheap warm start
    and ``"amn"`` for the final epochs (:func:`cross_val_reservoir`).
    """

    def __init__(
        self,
        amn: nn.Module,
        vmax: float | Sequence[float],
        n_models: int = 1,
        learn: Sequence[bool] | np.ndarray | None = None,
        vmin: float | Sequence[float] | None = None,
    ):
        super().__init__()
        self.amn = amn
        for p in self.amn.parameters():
            p.requires_grad_(False)
        self.n_models = int(n_models)
        n_in = amn.n_in
        layers = [UptakeLayer(n_in, vmax) for _ in range(self.n_models)]
        self.weight = nn.Parameter(torch.stack([m.linear.weight.T for m in layers]).detach())
        self.bias = nn.Parameter(torch.stack([m.linear.bias for m in layers])[:, None].detach())
        self.register_buffer("vmax", layers[0].vmax.clone())
        vm = np.broadcast_to(np.asarray(0.0 if vmin is None else vmin, dtype=float), (n_in,))
        if np.any(vm < 0) or np.any(vm > self.vmax.numpy()):
            raise ValueError("vmin must lie between 0 and vmax for every uptake")
        self.register_buffer("vmin", torch.as_tensor(vm.copy()).float())
        learn_mask = np.ones(n_in, bool) if learn is None else np.asarray(learn, bool)
        if learn_mask.shape != (n_in,):
            raise ValueError(f"learn must have {n_in} entries, got shape {learn_mask.shape}")
        self.register_buffer("learn", torch.as_tensor(learn_mask))
        self.biomass_index = amn.biomass_index
        self._head = _prior_head(amn)
        #: the AMN has a mechanistic layer that runs (growth "amn" != growth "prior")
        self.mechanistic = (
            getattr(amn, "layer", None) is not None and getattr(amn, "iterations", 0) > 0
        )
        self.through = "amn"
        #: epochs of the last training run whose gradient went through the prior only
        self.prior_epochs = 0

    def train(self, mode: bool = True) -> ReservoirModel:
        super().train(mode)
        self.amn.eval()  # the reservoir is frozen: no dropout
        return self

    def uptake(self, C: Tensor) -> Tensor:
        """V_in = (vmin + (vmax - vmin) sigmoid(C W + b)) * C, (n_models, batch, n_in) or
        (batch, n_in); uptakes not in ``learn`` stay at ``vmax`` (their pre-training value) when
        present."""
        single = C.ndim == 2
        Cm = C.expand(self.n_models, *C.shape) if single else C
        vmax, vmin = self.vmax.to(C.dtype), self.vmin.to(C.dtype)
        learned = vmin + (vmax - vmin) * torch.sigmoid(Cm @ self.weight + self.bias)
        V_in = torch.where(self.learn, learned, vmax) * Cm
        return V_in[0] if single and self.n_models == 1 else V_in

    def growth(self, V_in: Tensor, through: str | None = None) -> Tensor:
        """Growth (...,) (h^-1) of the frozen AMN for uptakes ``V_in`` (..., n_in)."""
        through = self.through if through is None else through
        if through not in THROUGH:
            raise ValueError(f"through must be one of {THROUGH}, got {through!r}")
        flat = V_in.reshape(-1, V_in.shape[-1])
        if self._head is not None and (through == "prior" or not self.mechanistic):
            hidden, out, act = self._head
            h = hidden(flat / self.amn.x_scale.to(flat.dtype))
            g = act(h @ out.weight[self.biomass_index] + out.bias[self.biomass_index])
        else:
            g = self.amn(flat)[:, self.biomass_index]
        return g.reshape(V_in.shape[:-1])

    def forward(self, C: Tensor) -> tuple[Tensor, Tensor]:
        V_in = self.uptake(C)
        return self.growth(V_in), V_in

    @torch.no_grad()
    def shortcut_gap(self, C: Tensor) -> float:
        """Largest ``|growth through the whole AMN - growth through its prior|`` (h^-1) on the
        current uptakes of media ``C`` and on the largest ones (``vmax`` for present
        compounds)."""
        V_in = self.uptake(C)
        V_in = torch.cat([V_in.reshape(-1, V_in.shape[-1]),
                          (C.reshape(-1, C.shape[-1]) > 0) * self.vmax.to(C.dtype)])
        return float((self.growth(V_in, "amn") - self.growth(V_in, "prior")).abs().max())

    @torch.no_grad()
    def fluxes(self, C: Tensor) -> Tensor:
        """All reservoir fluxes V (batch, n) (mmol gDW^-1 h^-1) of media C (batch, n_in)."""
        V_in = self.uptake(C)
        return self.amn(V_in.reshape(-1, V_in.shape[-1])).reshape(*V_in.shape[:-1], -1)


@torch.no_grad()
def mechanistic_correction(amn: nn.Module, V_in: np.ndarray | Tensor) -> dict[str, float]:
    """How much the mechanistic layer of a (frozen) AMN changes the growth rate of its prior on
    uptakes ``V_in`` (batch, n_in): ``max`` and ``mean`` of ``|g_AMN - g_prior|`` (h^-1), and
    ``flux_mean`` the mean ``|V - V0|`` over all fluxes (mmol gDW^-1 h^-1)."""
    p = next(amn.parameters())
    x = torch.as_tensor(np.asarray(V_in) if not isinstance(V_in, Tensor) else V_in)
    x = x.to(device=p.device, dtype=p.dtype).reshape(-1, amn.n_in)
    was = amn.training
    amn.eval()
    V, V0 = amn(x, return_prior=True)
    amn.train(was)
    d = (V - V0)[:, amn.biomass_index].abs()
    return {"max": float(d.max()), "mean": float(d.mean()),
            "flux_mean": float((V - V0).abs().mean())}  # fmt: skip


@dataclass
class Pretrained:
    """A pre-trained reservoir AMN with its training data summary: ``amn``, ``network``,
    ``vmax`` (n_in,) largest uptake per column of the simulated set, ``q2`` (growth, held-out
    simulated media), ``n_samples``, ``seconds`` (generation, training), ``architecture``,
    ``varied`` (n_in,) which uptakes varied in the simulated set, ``sv2`` (held-out
    ``||SV||^2``), ``epochs``, ``seconds_per_epoch``, ``cache`` (the file it was loaded from or
    saved to, ``None`` without cache), ``from_cache``, ``vmin`` (n_in,) smallest uptake per
    column among the media where the compound is present."""

    amn: Any
    network: MetabolicNetwork
    vmax: np.ndarray
    q2: float
    n_samples: int
    seconds: dict[str, float]
    architecture: str
    varied: np.ndarray | None = None
    sv2: float = float("nan")
    epochs: int = 0
    seconds_per_epoch: float = float("nan")
    cache: str | None = None
    from_cache: bool = False
    vmin: np.ndarray | None = None


#: Levels of the compounds that are fixed in the published spec when ``vary="all"``.
ALL_LEVELS = 10


def pretraining_spec(vary: str = "carbon") -> pd.DataFrame:
    """Medium spec of the reservoir's simulated media (38 uptakes, mmol gDW^-1 h^-1):
    ``"carbon"`` the published ``iML1515`` spec (28 compounds fixed at 2.2, the 10 carbon
    sources at k * 2.2 / 100, k = 1..100); ``"all"`` the same with the 28 fixed compounds
    drawn too, at k * 2.2 / :data:`ALL_LEVELS`."""
    from amnlib.data import load_medium_spec

    spec = load_medium_spec("iML1515").copy()
    if vary == "carbon":
        return spec
    if vary == "all":
        spec.loc[spec["level"] == 1, "level"] = ALL_LEVELS
        return spec
    raise ValueError(f"vary must be 'carbon' or 'all', got {vary!r}")


#: Bump when pre-training would give another model for the same settings (invalidates caches).
PRETRAIN_FORMAT = "amnlib-reservoir/2"


def _reservoir_cache_dir() -> Any:
    from amnlib.data import cache_dir

    return cache_dir() / "reservoirs"


def pretrain_reservoir(
    network: MetabolicNetwork,
    size: int = 3300,
    epochs: int = 30,
    architecture: str = "AMN-QP",
    seed: int = 0,
    batch_size: int = 100,
    lr: float = 3e-3,
    device: torch.device | None = None,
    n_jobs: int | None = 1,
    progress: bool = False,
    cache: bool | str | Any = True,
    vary: str = "carbon",
    layer_preset: str = "paper",
    spec: pd.DataFrame | None = None,
    presence: np.ndarray | pd.DataFrame | None = None,
) -> Pretrained:
    """Pre-train the reservoir: pFBA on ``size`` simulated media drawn from the 110 experimental
    compositions (generator's ratio-0 experimental mode, medium spec ``iML1515``: present
    compounds 2.2 mmol gDW^-1 h^-1, carbon sources k * 2.2 / 100), then fit an AMN
    (``architecture``, default AMN-QP: dense prior + QP mechanistic layer, UB mode) on growth
    with the constraint terms; 10% of the media are held out for its Q^2 and ``||SV||^2``.

    ``cache``: ``True`` keeps the trained AMN in ``<amnlib cache>/reservoirs`` (a folder may be
    given instead; ``False``: none), keyed by the network fingerprint, the training set's own
    cache key and every training setting, so the book, the tests and ``amnlib reproduce`` reuse
    it. The network must have the 38 experimental uptakes as medium (:func:`load_network`).

    ``layer_preset`` (:data:`amnlib.models.LAYER_PRESETS`): ``"paper"`` (default) the published
    QP steps, which on a genome-scale network hardly change the prior's growth rate (cheap to
    train through); ``"network"`` steps that project onto ``S V = 0`` (an exact mass balance,
    about 3x the cost per sample on iJO1366: a GPU setting).

    ``vary``: ``"carbon"`` (the spec as published: only the 10 carbon sources vary) or
    ``"all"`` (:func:`pretraining_spec`: every present compound varies, so that a layer that
    learns every uptake stays on the reservoir's domain).

    A user's medium space instead of the paper's (:mod:`amnlib.growth_workflow`): ``spec`` (a
    medium spec table, :func:`amnlib.simulate.make_spec` layout, replacing
    ``pretraining_spec(vary)``) and ``presence`` (n_media, n_in) the media compositions drawn
    from (replacing the 110 experimental media); the network's medium columns must then be the
    spec's uptakes.
    """
    import hashlib
    import json
    from pathlib import Path

    from amnlib.models import AMN
    from amnlib.runtime import pick_device
    from amnlib.simulate import generate
    from amnlib.training import evaluate, fit, load_model, save_model

    device = device or pick_device()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ts = generate(
            network, pretraining_spec(vary) if spec is None else spec, size=size, seed=seed,
            experimental=True, n_jobs=n_jobs, progress=progress, presence=presence,
        )  # fmt: skip
    t_gen = time.perf_counter() - t0
    X = ts.X[:, [ts.x_ids.index(i) for i in network.in_ids]]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_val = max(1, len(X) // 10)
    val, tr = perm[:n_val], perm[n_val:]
    vmax = X.max(axis=0)
    vmin = np.array([X[X[:, k] > 0, k].min() if (X[:, k] > 0).any() else 0.0
                     for k in range(X.shape[1])])  # fmt: skip
    varied = np.array([len(np.unique(X[X[:, k] > 0, k])) > 1 for k in range(X.shape[1])])
    amn = AMN(network, architecture, x_scale=np.maximum(vmax, 1e-6), layer_preset=layer_preset)
    amn = amn.to(device)
    settings = {
        "format": PRETRAIN_FORMAT, "fingerprint": network.fingerprint(), "config": amn.config(),
        "data": ts.metadata.get("cache_key"), "n_samples": len(X), "architecture": architecture,
        "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
        "dtype": str(torch.get_default_dtype()), "device": str(device),
    }  # fmt: skip
    path = None
    if cache is not False and settings["data"] is not None:
        root = _reservoir_cache_dir() if cache is True else Path(cache)
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        path = root / f"{network.name}_{architecture.replace(' ', '_')}_{len(X)}_{epochs}_{key}.pt"
        if path.exists():
            try:
                amn = load_model(path, network, device=device)
                ex = amn.extra
                return Pretrained(
                    amn=amn, network=network, vmax=vmax, q2=float(ex["q2"]), n_samples=len(X),
                    seconds={"generate": t_gen, "fit": float(ex["fit_seconds"])},
                    architecture=architecture, varied=varied, sv2=float(ex["sv2"]),
                    epochs=int(epochs), seconds_per_epoch=float(ex["seconds_per_epoch"]),
                    cache=str(path), from_cache=True, vmin=vmin,
                )  # fmt: skip
            except Exception as err:  # noqa: BLE001 - a broken cache file is retrained
                warnings.warn(f"ignoring unreadable reservoir cache {path}: {err}", stacklevel=2)
    t1 = time.perf_counter()
    hist = fit(amn, network, X[tr], ts.Y[tr], target="biomass", epochs=epochs,
               batch_size=batch_size, lr=lr, seed=seed, progress=progress)  # fmt: skip
    t_fit = time.perf_counter() - t1
    ev = evaluate(amn, X[val], ts.Y[val], target="biomass", S=network.S)
    amn.eval()
    pre = Pretrained(
        amn=amn, network=network, vmax=vmax, q2=float(ev["q2"]), n_samples=len(X),
        seconds={"generate": t_gen, "fit": t_fit}, architecture=architecture, varied=varied,
        sv2=float(ev["sv2"]), epochs=int(epochs), seconds_per_epoch=hist.seconds_per_epoch,
        vmin=vmin,
    )  # fmt: skip
    if path is not None:
        save_model(amn, path, extra={"q2": pre.q2, "sv2": pre.sv2, "fit_seconds": t_fit,
                                     "seconds_per_epoch": pre.seconds_per_epoch,
                                     "settings": settings})  # fmt: skip
        pre.cache = str(path)
    return pre


#: What the uptake layer learns (:func:`cross_val_reservoir`).
LEARN = ("all", "varied", "domain")


def _layer_args(pre: Pretrained, learn: str) -> dict[str, Any]:
    """``learn="all"``: the layer sets every uptake in ``[0, vmax]`` (the paper); ``"varied"``:
    only uptakes that varied in pre-training (the carbon sources), the others stay at their
    pre-training value; ``"domain"``: every uptake within the range it had in pre-training,
    ``[vmin, vmax]`` (the reservoir's domain; with the published spec the same as
    ``"varied"``)."""
    if learn == "all":
        return {"learn": None}
    if learn == "varied":
        if pre.varied is None:
            raise ValueError("the pre-trained reservoir does not record which uptakes varied")
        return {"learn": pre.varied}
    if learn == "domain":
        if pre.vmin is None:
            raise ValueError("the pre-trained reservoir does not record its smallest uptakes")
        return {"learn": None, "vmin": pre.vmin}
    raise ValueError(f"learn must be one of {LEARN}, got {learn!r}")


def _train_reservoir(
    model: ReservoirModel,
    C: Tensor,
    y: Tensor,
    mask: Tensor,
    epochs: int,
    lr: float,
    exact_epochs: int,
    progress: bool = False,
) -> None:
    """Full-batch Adam (cosine schedule) of the uptake layer(s) on the masked MSE: the summed
    per-model mean squared error of growth ``model(C)`` (n_models, n) against ``y`` (n,) over
    the rows where ``mask`` (n_models, n) is 1. The last ``exact_epochs`` epochs run through the
    whole AMN, the others through its prior only (when it has a mechanistic layer).
    ``progress``: a tqdm bar over the epochs."""
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=lr / 20)
    model.train()
    n_fast = max(int(epochs) - int(exact_epochs), 0) if model.mechanistic else int(epochs)
    if n_fast and model.mechanistic and model.shortcut_gap(C) > SHORTCUT_TOL:
        n_fast = 0  # the layer changes growth: every epoch through the whole AMN
    model.prior_epochs = n_fast
    epochs_it: Any = range(int(epochs))
    if progress:
        from tqdm.auto import tqdm

        epochs_it = tqdm(epochs_it, desc="uptake layer", leave=False)
    for epoch in epochs_it:
        model.through = "prior" if epoch < n_fast else "amn"
        g, _ = model(C)
        g = g.reshape(mask.shape)
        # sum over models of each model's mean squared error: their gradients are independent
        loss = (((g - y) ** 2) * mask).sum(dim=1).div(mask.sum(dim=1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.through = "amn"
    model.eval()


def fit_reservoir(
    pre: Pretrained,
    C: np.ndarray,
    y: np.ndarray,
    epochs: int = 300,
    lr: float = 0.03,
    seed: int = 0,
    learn: str = "all",
    exact_epochs: int = 20,
    progress: bool = False,
) -> ReservoirModel:
    """Train the uptake layer of a new :class:`ReservoirModel` on measured growth ``y``
    (batch,) (h^-1) of media ``C`` (batch, n_in), the AMN frozen (full-batch Adam on the MSE;
    the last ``exact_epochs`` through the whole AMN, see :func:`cross_val_reservoir`)."""
    torch.manual_seed(int(seed))
    p = next(pre.amn.parameters())
    model = ReservoirModel(pre.amn, pre.vmax, **_layer_args(pre, learn))
    model = model.to(device=p.device, dtype=p.dtype)
    Ct = torch.as_tensor(np.asarray(C), dtype=p.dtype, device=p.device)
    yt = torch.as_tensor(np.asarray(y), dtype=p.dtype, device=p.device)
    _train_reservoir(model, Ct, yt, torch.ones(1, len(yt), dtype=p.dtype, device=p.device),
                     epochs, lr, exact_epochs, progress)  # fmt: skip
    return model


def reservoir_predict(model: ReservoirModel, C: np.ndarray) -> np.ndarray:
    """Predicted growth (batch,) (h^-1) of media ``C`` (batch, n_in), through the whole AMN."""
    return _predict_growth(model, C)


def cross_val_reservoir(
    pre: Pretrained,
    C: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    epochs: int = 300,
    lr: float = 0.03,
    seed: int = 0,
    learn: str = "all",
    exact_epochs: int = 20,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, ReservoirModel]:
    """Reservoir cross-validation with every fold trained at once: one uptake layer per fold
    (:class:`ReservoirModel` with ``n_models = len(folds)``), each fitted on its training rows
    only (masked full-batch MSE; the folds never share weights), the AMN frozen.

    With a mechanistic AMN (AMN-QP) whose layer changes the growth rate by less than
    :data:`SHORTCUT_TOL` (:meth:`ReservoirModel.shortcut_gap`; true of the published QP steps on
    a genome-scale network) the first ``epochs - exact_epochs`` epochs take the gradient through
    the AMN's dense prior only and the last ``exact_epochs`` through the whole AMN; otherwise
    every epoch goes through the whole AMN. The held-out predictions always come from the whole
    AMN.

    Returns ``(held_out (n_seeds, n) predictions, train_r2 (n_folds,), model)``.
    """
    torch.manual_seed(int(seed))
    p = next(pre.amn.parameters())
    F, n = len(folds), len(y)
    model = ReservoirModel(pre.amn, pre.vmax, n_models=F, **_layer_args(pre, learn))
    model = model.to(device=p.device, dtype=p.dtype)
    mask = np.zeros((F, n))
    for k, f in enumerate(folds):
        mask[k, f.train] = 1.0
    Ct = torch.as_tensor(np.asarray(C), dtype=p.dtype, device=p.device).expand(F, n, -1)
    yt = torch.as_tensor(np.asarray(y), dtype=p.dtype, device=p.device)
    mt = torch.as_tensor(mask, dtype=p.dtype, device=p.device)
    _train_reservoir(model, Ct, yt, mt, epochs, lr, exact_epochs, progress)
    with torch.no_grad():
        g = model(Ct)[0].cpu().double().numpy()
    seeds = sorted({f.seed for f in folds})
    held = np.full((len(seeds), n), np.nan)
    train_r2 = np.zeros(F)
    for k, f in enumerate(folds):
        held[seeds.index(f.seed), f.test] = g[k, f.test]
        train_r2[k] = r2(y[f.train], g[k, f.train])
    return held, train_r2, model


def learned_uptakes(
    model: ReservoirModel, C: np.ndarray, in_ids: Sequence[str], index: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Table S2 analog: the uptake fluxes V_in (mmol gDW^-1 h^-1) the trained dense layer
    assigns to each medium (rows) and uptake (columns ``in_ids``; 0 for absent compounds)."""
    if model.n_models != 1:
        raise ValueError(f"learned_uptakes needs a single model, got n_models={model.n_models}")
    p = next(model.parameters())
    with torch.no_grad():
        V_in = model.uptake(torch.as_tensor(C, dtype=p.dtype, device=p.device))
    return pd.DataFrame(V_in.cpu().double().numpy(), columns=list(in_ids), index=index)


def media_dicts(uptakes: pd.DataFrame, tol: float = 1e-9) -> list[dict[str, float]]:
    """COBRApy medium dicts ``{EX_..._e: bound}`` (one per row of :func:`learned_uptakes`);
    assign one to ``model.medium`` of a COBRApy model to run FBA with the learned bounds."""
    out = []
    for _, row in uptakes.iterrows():
        out.append(
            {(k[:-2] if k.endswith("_i") else k): float(v) for k, v in row.items() if v > tol}
        )
    return out


def held_out_uptakes(
    model: ReservoirModel, C: np.ndarray, folds: Sequence[Fold]
) -> np.ndarray:
    """Uptakes V_in (n_seeds, n, n_in) (mmol gDW^-1 h^-1) that each fold's layer of a
    :func:`cross_val_reservoir` model assigns to its held-out media."""
    p = next(model.parameters())
    F, n = len(folds), len(C)
    with torch.no_grad():
        V = model.uptake(torch.as_tensor(C, dtype=p.dtype, device=p.device).expand(F, n, -1))
    V = V.cpu().double().numpy()
    seeds = sorted({f.seed for f in folds})
    out = np.full((len(seeds), n, C.shape[1]), np.nan)
    for k, f in enumerate(folds):
        out[seeds.index(f.seed), f.test] = V[k, f.test]
    return out


# ============================================================================ experiment

def evaluate_reservoir(
    pre: Pretrained,
    data: GrowthData,
    folds: Sequence[Fold],
    fba: MediumFBA,
    learn: str = "all",
    **train: Any,
) -> dict[str, Any]:
    """Cross-validate a reservoir (:func:`cross_val_reservoir`, keyword arguments ``train``)
    and run FBA with each fold's learned uptakes of its held-out media.

    Returns ``held`` (n_seeds, n) held-out growth (h^-1), ``train_r2``, ``V`` (n_seeds, n,
    n_in) held-out uptakes (mmol gDW^-1 h^-1), ``fba`` (n_seeds, n) FBA growth with them,
    ``model``, ``prior_epochs``, and the pooled ``q2``, ``fba_q2`` and ``fba_vs_reservoir_r2``.
    """
    held, train_r2, model = cross_val_reservoir(pre, data.C, data.y, folds, learn=learn, **train)
    V = held_out_uptakes(model, data.C, folds)
    g_fba = np.stack([fba.growth(v) for v in V])
    return {
        "held": held, "train_r2": train_r2, "V": V, "fba": g_fba, "model": model,
        "prior_epochs": model.prior_epochs, "q2": pooled_q2(data.y, held),
        "fba_q2": pooled_q2(data.y, g_fba), "fba_vs_reservoir_r2": r2(held.ravel(), g_fba.ravel()),
    }

def sizes(fast: bool) -> dict[str, Any]:
    """Problem sizes of the two modes (same code paths, AMN-QP reservoir with the published QP
    steps in both). Book/CPU mode pre-trains the reservoir on 3,300 simulated media (30 per
    experimental medium) for 30 epochs of batch 100 (cached on disk after the first run); fast
    mode (CI) on 220 media for 20 epochs of batch 20. The uptake layer trains
    ``reservoir_epochs`` epochs, the last ``exact_epochs`` through the whole AMN
    (:func:`cross_val_reservoir`). :func:`pretrain_args` and :func:`reservoir_args` turn them
    into keyword arguments."""
    both = dict(architecture="AMN-QP", layer_preset="paper", reservoir_lr=0.01,
                reservoir_epochs=300, exact_epochs=2, bfgs_cv_seeds=(0,))  # fmt: skip
    if fast:
        return both | dict(n_splits=5, seeds=(0,), bfgs_maxiter=5, bfgs_cv_maxiter=2,
                           pretrain_size=220, pretrain_epochs=20, pretrain_batch=20,
                           pretrain_lr=1e-2, ann_epochs=200, trees=50)  # fmt: skip
    return both | dict(n_splits=10, seeds=(0, 1, 2), bfgs_maxiter=25, bfgs_cv_maxiter=10,
                       pretrain_size=3300, pretrain_epochs=30, pretrain_batch=100,
                       pretrain_lr=3e-3, ann_epochs=600, trees=200)  # fmt: skip


def pretrain_args(sz: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`pretrain_reservoir` from :func:`sizes`."""
    return dict(size=sz["pretrain_size"], epochs=sz["pretrain_epochs"],
                batch_size=sz["pretrain_batch"], lr=sz["pretrain_lr"],
                architecture=sz["architecture"], layer_preset=sz["layer_preset"])  # fmt: skip


def reservoir_args(sz: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`cross_val_reservoir` / :func:`evaluate_reservoir` from
    :func:`sizes`."""
    return dict(epochs=sz["reservoir_epochs"], lr=sz["reservoir_lr"],
                exact_epochs=sz["exact_epochs"])  # fmt: skip


def baseline_predictions(
    data: GrowthData, folds: Sequence[Fold], names: Sequence[str] | None = None,
    ann_epochs: int = 600, trees: int = 200,
) -> dict[str, np.ndarray]:
    """Held-out predictions (n_seeds, n) of the black-box :data:`BASELINES` on the carbon
    columns (``trees``: XGBoost rounds and random-forest trees)."""
    X, y = data.carbon, data.y
    out = {}
    for name in names or list(BASELINES):
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; known: {list(BASELINES)}")
        fn = BASELINES[name]
        kw: dict[str, int] = {}
        if name == "ann":
            kw = {"epochs": ann_epochs}
        elif name in ("xgboost", "random_forest"):
            kw = {"trees": trees}
        out[name] = cross_val_predict(
            lambda tr, te, s, fn=fn, kw=kw: fn(X[tr], y[tr], X[te], seed=s, **kw), folds, len(y)
        )
    return out


def fba_predictions(
    fba: MediumFBA, data: GrowthData, folds: Sequence[Fold], bfgs_maxiter: int = 25,
    bfgs_cv_maxiter: int = 10, bfgs_cv_seeds: Sequence[int] = (0,),
) -> dict[str, Any]:
    """FBA baselines: ``default`` (n,) out-of-the-box growth; ``scaled`` (n_seeds, n) held-out
    predictions ``a * default`` with ``a`` fitted on each training fold; ``bfgs`` the
    :class:`BFGSResult` fitted on all media and ``bfgs_full`` (n,) its growth; ``bfgs_cv``
    (len(bfgs_cv_seeds), n) held-out predictions of BFGS refitted on the folds of those
    repetitions (each fit costs ``~bfgs_cv_maxiter`` x 1.3 LPs per training medium)."""
    C, y = data.C, data.y
    g0 = fba_default(fba, C)
    scaled = cross_val_predict(lambda tr, te, s: fit_scale(g0[tr], y[tr]) * g0[te], folds, len(y))
    params = data.organic_ids
    full = optimize_uptakes(fba, C, y, params, maxiter=bfgs_maxiter)
    g_full = fba.growth(C * full.base(data.in_ids))

    def bfgs_fold(tr: np.ndarray, te: np.ndarray, s: int) -> np.ndarray:
        res = optimize_uptakes(fba, C[tr], y[tr], params, maxiter=bfgs_cv_maxiter)
        return fba.growth(C[te] * res.base(data.in_ids))

    cv_folds = [f for f in folds if f.seed in set(bfgs_cv_seeds)]
    bfgs_cv = cross_val_predict(bfgs_fold, cv_folds, len(y))
    return {"default": g0, "scaled": scaled, "scale": fit_scale(g0, y), "bfgs": full,
            "bfgs_full": g_full, "bfgs_cv": bfgs_cv}  # fmt: skip


def run(fast: bool = False, full: bool = False, network: MetabolicNetwork | None = None) -> Report:
    """``amnlib reproduce reservoir``: every method's Q^2 on the same folds (Fig. 4).

    The reservoir is an AMN-QP pre-trained on simulated experimental media (cached on disk by
    :func:`pretrain_reservoir`; published QP steps); ``full=True`` (GPU/Colab) pre-trains it on
    11,000 media for 100 epochs with the mass-balance projection steps (``"network"``).
    ``metrics["stage_seconds"]`` records where the time went.
    """
    from amnlib.runtime import pick_device, seed_everything

    seed_everything(0)
    sz = sizes(fast)
    if full and not fast:
        sz.update(pretrain_size=11000, pretrain_epochs=100, layer_preset="network")
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    clock = [t0]

    def lap(name: str) -> None:
        """Record the seconds since the previous lap as stage ``name``."""
        now = time.perf_counter()
        stages[name] = now - clock[0]
        clock[0] = now

    data = load_growth_data()
    notes: list[str] = []
    if network is None:
        network, notes = load_network("iML1515", data.in_ids)
    folds = make_folds(data.n_carbon, sz["n_splits"], sz["seeds"])
    y = data.y
    fba = MediumFBA(network, data.in_ids)
    lap("load")
    fb = fba_predictions(fba, data, folds, sz["bfgs_maxiter"], sz["bfgs_cv_maxiter"],
                         sz["bfgs_cv_seeds"])  # fmt: skip
    lap("fba_bfgs")
    base = baseline_predictions(data, folds, ann_epochs=sz["ann_epochs"], trees=sz["trees"])
    lap("baselines")
    kw = dict(pretrain_args(sz), device=pick_device())
    # the reservoir: every present compound varied in pre-training, every uptake learned within
    # its pre-training range; beside it the published spec (only the carbon sources vary)
    reservoirs = {"all": pretrain_reservoir(network, vary="all", **kw)}
    lap("pretrain_vary_all")
    reservoirs["carbon"] = pretrain_reservoir(network, vary="carbon", **kw)
    lap("pretrain_vary_carbon")
    res: dict[str, dict[str, Any]] = {}
    for name, vary, learn in (("main", "all", "domain"), ("carbon_all", "carbon", "all"),
                              ("carbon_varied", "carbon", "varied")):  # fmt: skip
        res[name] = evaluate_reservoir(reservoirs[vary], data, folds, fba, learn=learn,
                                       **reservoir_args(sz))  # fmt: skip
        lap(f"reservoir_{name}")
    pre = reservoirs["all"]
    held = res["main"]["held"]
    ceiling = noise_ceiling(data.replicates)
    q2 = {
        "amn": pooled_q2(y, held),
        "fba_default": r2(y, fb["default"]),
        "fba_scaled": pooled_q2(y, fb["scaled"]),
        "fba_bfgs": pooled_q2(y, fb["bfgs_cv"]),
        **{k: pooled_q2(y, v) for k, v in base.items()},
    }
    metrics = {
        "q2": q2,
        "r2_full_data": {
            "fba_scaled": r2(y, fb["scale"] * fb["default"]),
            "fba_bfgs": r2(y, fb["bfgs_full"]),
            "amn_train": float(np.mean(res["main"]["train_r2"])),
        },
        "fba_reservoir_bounds": res["main"]["fba_q2"],
        "fba_vs_reservoir_r2": res["main"]["fba_vs_reservoir_r2"],
        "published_spec": {
            "learn_all": {k: res["carbon_all"][k] for k in ("q2", "fba_q2",
                                                            "fba_vs_reservoir_r2")},
            "learn_varied": {k: res["carbon_varied"][k] for k in ("q2", "fba_q2",
                                                                  "fba_vs_reservoir_r2")},
            "learn_all_off_domain": domain_shift(res["carbon_all"]["V"], data.C,
                                                 reservoirs["carbon"]),
            "pretrain_q2": reservoirs["carbon"].q2,
        },  # fmt: skip
        "fba_default_pearson_r2": float(np.corrcoef(fb["default"], y)[0, 1] ** 2),
        "noise_ceiling": ceiling["loo_replicate"],
        "noise_ceilings": ceiling,
        "amn_q2_per_seed": [r2(y, h) for h in held],
        "amn_q2_seed_average": r2(y, held.mean(axis=0)),
        "reservoir_pretrain_q2": pre.q2,
        "reservoir_pretrain_sv2": pre.sv2,
        "reservoir_pretrain": {"n_samples": pre.n_samples, "epochs": pre.epochs,
                               "seconds_per_epoch": pre.seconds_per_epoch,
                               "from_cache": pre.from_cache, **pre.seconds},  # fmt: skip
        "mechanistic_correction": mechanistic_correction(pre.amn, res["main"]["V"]),
        "layer_preset": pre.amn.config().get("layer_preset"),
        "reservoir_epochs": {"total": sz["reservoir_epochs"],
                             "through_prior": res["main"]["prior_epochs"]},  # fmt: skip
        "model": network.name,
        "architecture": pre.architecture,
        "folds": f"{sz['n_splits']}-fold x {len(sz['seeds'])} seeds (stratified by # carbon "
        "sources)",
        "bfgs_cv_folds": f"{sz['n_splits']} folds of seed(s) {list(sz['bfgs_cv_seeds'])}",
        "stage_seconds": stages,
        "seconds": time.perf_counter() - t0,
    }
    paper = {
        "q2": {k: PAPER[k] for k in ("amn", "ann", "random_forest", "fba_scaled", "fba_bfgs")},
        "r2_full_data": {"fba_bfgs": PAPER["fba_bfgs"], "fba_scaled": PAPER["fba_scaled"],
                         "amn_train": PAPER["amn_train_r2"]},  # fmt: skip
        "fba_reservoir_bounds": PAPER["fba_reservoir_bounds"],
        "noise_ceiling": PAPER["noise_ceiling"],
        "reservoir_pretrain_q2": papers.value("table1.iml1515.q2_test"),
        "model": papers.value("table1.iml1515.model"),
        "media": papers.value("fig4.media"),
        "architecture": "AMN-QP (RNN-EB)",
    }
    notes += [
        "fba_default: uptake 10 for present compounds; R^2 is against the measured rates "
        "(no fit), the paper calls it uncorrelated",
        "fba_bfgs q2: BFGS refitted per training fold (first repetition only, CPU budget); "
        "r2_full_data.fba_bfgs is the paper's protocol (fitted on all media)",
        f"BFGS starts at {BFGS_START} (the preprint's 5 leaves iJO1366 O2-limited at the "
        "default bound 10: zero gradient for the carbon bounds)",
        f"reservoir: {pre.architecture} (dense prior + QP layer, UB, "
        f"layer_preset={sz['layer_preset']!r}) pre-trained on {pre.n_samples} simulated pFBA "
        "media of the experimental compositions with every present compound varied (10 levels "
        f"up to 2.2; carbon sources 100), {pre.epochs} epochs; the uptake layer learns every "
        "uptake within its pre-training range (learn='domain'), "
        f"{sz['reservoir_epochs']} epochs at lr {sz['reservoir_lr']} (chosen among 0.03 and "
        f"0.01 on these folds), the last {sz['exact_epochs']} through the whole AMN (before: "
        "through its prior, whose growth differs by mechanistic_correction)",
        "fba_reservoir_bounds: FBA with each fold's learned uptakes of its held-out media",
        "published_spec: the reservoir pre-trained on the published spec (only the 10 carbon "
        "sources vary, the 28 other compounds fixed at 2.2); learning every uptake in [0, 2.2] "
        "(the paper's setting) moves those 28 off the reservoir's domain (learn_all_off_domain: "
        "salts and amino acids far below 2.2), where FBA caps growth by them and the reservoir "
        "does not; "
        "learning only the carbon sources stays on the domain",
    ]
    return Report(name="reservoir", metrics=metrics, paper=paper, notes=notes)


def domain_shift(V: np.ndarray, C: np.ndarray, pre: Pretrained, tol: float = 0.05) -> dict[
    str, Any
]:
    """Where learned uptakes ``V`` (..., n, n_in) (mmol gDW^-1 h^-1) of media ``C`` (n, n_in)
    leave the pre-training domain of uptakes that did not vary there (``~pre.varied``, all at
    ``pre.vmax``): the fraction of present such uptakes more than ``tol`` (relative) below
    ``vmax`` and, per uptake, the mean learned value (the five lowest, relative to ``vmax``)."""
    V = np.asarray(V, dtype=float).reshape(-1, C.shape[1])
    Cr = np.tile(np.asarray(C, dtype=float), (V.shape[0] // len(C), 1)) > 0
    fixed = np.flatnonzero(~pre.varied) if pre.varied is not None else np.arange(C.shape[1])
    ids = list(pre.amn.in_ids)
    rel = {}
    off = []
    for k in fixed:
        present = Cr[:, k]
        if present.any():
            r = V[present, k] / pre.vmax[k]
            rel[ids[k]] = float(r.mean())
            off.append(r < 1 - tol)
    low = dict(sorted(rel.items(), key=lambda kv: kv[1])[:5])
    return {"fraction_off_domain": float(np.concatenate(off).mean()) if off else 0.0,
            "lowest_mean_fraction_of_vmax": low}  # fmt: skip


# ============================================================================ figures
def draw_architecture(ax: Any) -> Any:
    """Fig. 4A as a schematic: medium composition C_in -> trainable dense layer -> uptake
    fluxes V_in -> frozen AMN reservoir (prior + mechanistic layer) -> fluxes V, growth."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    boxes = [
        (0.02, "medium\ncomposition\n$C_{in}$ (0/1)", "#ffffff", "square"),
        (0.24, "trainable\ndense layer\n$C_{in} \\to V_{in}$", "#cfe8c0", "square"),
        (0.46, "uptake fluxes\n$V_{in}$\n(mmol gDW$^{-1}$ h$^{-1}$)", "#ffffff", "square"),
        (0.68, "frozen AMN\n(reservoir:\nprior + mech. layer)", "#e0e0e0", "round"),
    ]
    for x, text, color, style in boxes:
        pad = "round,pad=0.02,rounding_size=0.06" if style == "round" else "square,pad=0.02"
        ax.add_patch(FancyBboxPatch((x, 0.3), 0.17, 0.4, boxstyle=pad, fc=color, ec="0.2"))
        ax.text(x + 0.085, 0.5, text, ha="center", va="center", fontsize=9)
    for x in (0.19, 0.41, 0.63, 0.85):
        ax.add_patch(FancyArrowPatch((x + 0.005, 0.5), (x + 0.045, 0.5), arrowstyle="-|>",
                                     mutation_scale=12, color="0.2"))  # fmt: skip
    ax.text(0.905, 0.5, "fluxes $V$,\ngrowth\nrate", ha="left", va="center", fontsize=9)
    ax.text(0.5, 0.12, "loss: MSE(predicted growth, measured growth); gradients flow through "
            "the frozen reservoir into the dense layer only", ha="center", fontsize=8)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    return ax


def uptake_heatmap(ax: Any, uptakes: pd.DataFrame, columns: Sequence[str] | None = None) -> Any:
    """Heatmap of a :func:`learned_uptakes` table (media x uptakes, mmol gDW^-1 h^-1)."""
    import seaborn as sns

    table = uptakes if columns is None else uptakes[list(columns)]
    table = table.rename(columns=lambda c: c.removeprefix("EX_").removesuffix("_e_i"))
    sns.heatmap(table, ax=ax, cmap="viridis",
                cbar_kws={"label": "uptake flux (mmol gDW$^{-1}$ h$^{-1}$)"})  # fmt: skip
    ax.set_xlabel("uptake (exchange reaction)")
    ax.set_ylabel("medium")
    return ax


def summary_table(
    y: np.ndarray, results: dict[str, np.ndarray], paper: dict[str, float] | None = None
) -> pd.DataFrame:
    """One row per method: pooled Q^2 of its (n_seeds, n) held-out predictions (or R^2 of an
    (n,) full-data prediction) beside the published value."""
    paper = PAPER if paper is None else paper
    rows = []
    for name, pred in results.items():
        key = name.split(" ")[0]
        rows.append({"method": name, "ours": pooled_q2(y, np.atleast_2d(pred)),
                     "paper": paper.get(key, np.nan)})  # fmt: skip
    return pd.DataFrame(rows).set_index("method")
