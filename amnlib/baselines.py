"""Baselines of growth prediction on measured media: FBA with uptake bounds, and black boxes.

A medium is a row of uptake bounds ``B`` (n_in,) (mmol gDW^-1 h^-1) of the network's uptakes
``in_ids`` (split ids ``EX_..._i``), or a row ``C`` (n_in,) of 0/1 presence (or of bounds in
units of a reference bound); growth rates are in h^-1.

* :class:`MediumFBA`: fast repeated FBA of one network over many media (warm-started dual
  simplex); :meth:`MediumFBA.growth` also returns the gradient of growth with respect to the
  uptake bounds: the reduced cost of the split uptake column ``EX_..._i``, i.e. minus COBRApy's
  shadow price of the metabolite and minus half COBRApy's reduced cost of the reversible
  exchange (:mod:`amnlib.duals`);
* out-of-the-box FBA (:func:`fba_default`: bound :data:`DEFAULT_UPTAKE` for present compounds),
  the same with one fitted scaling factor (:func:`fit_scale`), and FBA whose uptake bounds are
  fitted to growth by BFGS (:func:`optimize_uptakes`; with bounds ``b * C_j`` the chain rule adds
  the factor ``C_jk``, so each BFGS step costs one LP per medium instead of one per medium and
  parameter); :func:`fba_predictions` cross-validates all three on shared folds
  (:mod:`amnlib.validation`);
* black boxes on a feature matrix ``X`` (n, n_features): OLS (statsmodels), XGBoost, random
  forest, a dense network (:class:`DenseGrowth`), registered in :data:`BASELINES` and
  cross-validated by :func:`baseline_predictions`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from amnlib.network import MetabolicNetwork
from amnlib.validation import Fold, cross_val_predict

__all__ = [
    "DEFAULT_UPTAKE",
    "BFGS_START",
    "MediumFBA",
    "default_bounds",
    "fba_default",
    "fit_scale",
    "BFGSResult",
    "optimize_uptakes",
    "fba_predictions",
    "DenseGrowth",
    "train_growth_model",
    "predict_growth",
    "ols_predict",
    "xgboost_predict",
    "random_forest_predict",
    "ann_predict",
    "BASELINES",
    "baseline_predictions",
]

#: Out-of-the-box uptake bound of a present compound (mmol gDW^-1 h^-1).
DEFAULT_UPTAKE = 10.0
#: BFGS starting value of every optimized bound (preprint: 5; with iJO1366 and the other
#: present compounds at 10, every medium is then O2-limited and the carbon bounds get no gradient).
BFGS_START = 1.0


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


def train_growth_model(
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


def predict_growth(model: nn.Module, C: np.ndarray) -> np.ndarray:
    """Growth (batch,) (h^-1, float64) of ``model`` (eval mode, no gradient) on media ``C``
    (batch, n_in); ``model(C)`` returns growth or a tuple whose first entry is growth."""
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
    train_growth_model(model, X, y, epochs=epochs, lr=1e-2, seed=seed, weight_decay=1e-4)
    return predict_growth(model, X_test)


#: name -> ``predict(X_train, y_train, X_test, seed)`` on features such as the varied compounds'
#: presence (the paper: the 10 carbon sources).
BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "ols": ols_predict,
    "xgboost": xgboost_predict,
    "random_forest": random_forest_predict,
    "ann": ann_predict,
}


def baseline_predictions(
    X: np.ndarray, y: np.ndarray, folds: Sequence[Fold], names: Sequence[str] | None = None,
    ann_epochs: int = 600, trees: int = 200,
) -> dict[str, np.ndarray]:
    """Held-out predictions (n_seeds, n) of the black-box :data:`BASELINES` (``names``, default
    all) from the features ``X`` (n, n_features) of growth ``y`` (n,) (h^-1) on ``folds``
    (``ann_epochs``: epochs of the dense network; ``trees``: XGBoost rounds and random-forest
    trees)."""
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
    fba: MediumFBA, C: np.ndarray, y: np.ndarray, folds: Sequence[Fold],
    param_ids: Sequence[str], default: float = DEFAULT_UPTAKE, x0: float = BFGS_START,
    bounds: np.ndarray | None = None, bfgs_maxiter: int = 25, bfgs_cv_maxiter: int = 10,
    bfgs_cv_seeds: Sequence[int] | None = None, progress: bool = False,
) -> dict[str, Any]:
    """The FBA baselines of media ``C`` (n, n_in) (columns ``fba.in_ids``; 0/1 presence, or
    bounds in units of a reference bound) with measured growth ``y`` (n,) (h^-1) on ``folds``.

    ``bounds`` (n, n_in) (mmol gDW^-1 h^-1) are the out-of-the-box uptake bounds (default
    :func:`default_bounds` ``(C, default)``). Returns ``default`` (n,) their FBA growth;
    ``scaled`` (n_seeds, n) held-out predictions ``a * default`` with ``a`` fitted on each
    training fold; ``scale`` the factor fitted on all media; ``bfgs`` the :class:`BFGSResult`
    fitted on all media (:func:`optimize_uptakes` of ``param_ids``, other present uptakes at
    ``default``, start ``x0``, ``bfgs_maxiter`` iterations) and ``bfgs_full`` (n,) its growth;
    ``bfgs_cv`` (n_seeds', n) held-out predictions of BFGS refitted on the training folds of
    the repetitions ``bfgs_cv_seeds`` (default all; each fit costs ``~bfgs_cv_maxiter`` x 1.3
    LPs per training medium). ``progress``: a tqdm bar over the BFGS folds.
    """
    C = np.asarray(C, dtype=float)
    g0 = fba.growth(default_bounds(C, default) if bounds is None else bounds)
    scaled = cross_val_predict(lambda tr, te, s: fit_scale(g0[tr], y[tr]) * g0[te], folds, len(y))
    full = optimize_uptakes(fba, C, y, param_ids, default=default, x0=x0, maxiter=bfgs_maxiter)
    g_full = fba.growth(C * full.base(fba.in_ids, default=default))

    def bfgs_fold(tr: np.ndarray, te: np.ndarray, s: int) -> np.ndarray:
        res = optimize_uptakes(fba, C[tr], y[tr], param_ids, default=default, x0=x0,
                               maxiter=bfgs_cv_maxiter)  # fmt: skip
        return fba.growth(C[te] * res.base(fba.in_ids, default=default))

    cv_folds = list(folds) if bfgs_cv_seeds is None else [
        f for f in folds if f.seed in set(bfgs_cv_seeds)]  # fmt: skip
    bfgs_cv = cross_val_predict(bfgs_fold, cv_folds, len(y), progress=progress)
    return {"default": g0, "scaled": scaled, "scale": fit_scale(g0, y), "bfgs": full,
            "bfgs_full": g_full, "bfgs_cv": bfgs_cv}  # fmt: skip
