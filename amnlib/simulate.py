"""pFBA training-set generation (paper, Methods "Generation of training sets with COBRApy").

A training set pairs media with the fluxes that COBRApy's (parsimonious) FBA computes for them:

* ``X`` (size, n_in): uptake upper bounds (mmol/gDW/h) of the medium exchanges of a *medium
  specification* (``amnlib.data.load_medium_spec``: one row per ``_i`` id with ``level``,
  ``max_value`` and ``ratio_drawing``);
* ``Y`` (size, n): split fluxes (mmol/gDW/h, growth in h^-1) ordered as
  :attr:`amnlib.network.MetabolicNetwork.reaction_ids`;
* ``growth`` (size,): the biomass flux (h^-1).

Drawing rules (the paper's reference code, as specified for amnlib):

* a *fixed* uptake (``level == 1``) always gets ``max_value``;
* the number of switched-on *variable* uptakes (``level > 1``) is ``Binomial(n_variable,
  ratio)``, at least one; the switched-on ones are chosen uniformly without replacement;
* a switched-on uptake gets ``max_value * k / level`` with ``k`` uniform in ``1..level``;
* a medium whose growth is below ``GROWTH_THRESHOLD`` (1e-3 h^-1) is redrawn, at most
  ``max_tries`` times (then the sample is reported in :attr:`TrainingSet.failures`);
* fluxes below ``FLUX_ZERO`` (1e-8) are set to 0.

The reference code draws ``k`` in ``1..level-1`` and scales by ``max_value / (level - 1)``; we
follow the specification above (``level`` steps up to ``max_value``).

In *experimental* mode (``experimental=True``, ratio 0) the media come from the 110
experimental media (:func:`amnlib.data.load_media_110`): every compound present in a medium gets
its fixed value or, for a variable compound (carbon source), a level drawn as above; each medium
gives ``samples_per_medium`` samples.

Speed: each worker keeps one COBRApy model and solves FBA, then pFBA (growth fixed at its
optimum, minimise an auxiliary variable equal to the total flux) on the same optlang problem:
between samples only the exchange bounds and three objective coefficients change and the
simplex warm-starts from the previous optimum (about 20x more samples per CPU-second than a
plain COBRApy ``pfba`` loop on E. coli core and on iJO1366: ``benchmarks/results/simulate.json``).

Reproducibility: sample ``i`` draws from ``SeedSequence(seed, spawn_key=(i,))`` and samples are
solved in fixed blocks of ``BLOCK_SIZE`` that each start from the same stored basis (with a
fresh factorization), so the data do not depend on the number of workers or on the backend
(bit-identical with GLPK). pFBA optima can be degenerate: another solver may return another
flux vector with the same growth and the same total flux.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cobra
import numpy as np
import pandas as pd

from amnlib.network import (
    FLUX_ZERO,
    GROWTH_THRESHOLD,
    SUFFIX_IN,
    MetabolicNetwork,
)

#: Samples solved one after the other from the same starting basis (fixed: part of the data's
#: identity, like the seed).
BLOCK_SIZE = 32
#: Draws tried for one sample before it is reported as a failure.
MAX_TRIES = 100
#: With ``n_jobs=None``, work estimated below this (seconds, from the first block) runs in
#: this process: starting worker processes would take longer.
AUTO_SERIAL_SECONDS = 8.0
#: Bump when the generated data would change for the same arguments (invalidates caches).
FORMAT_VERSION = 1
METHODS = ("pfba", "fba")

__all__ = [
    "BLOCK_SIZE",
    "MAX_TRIES",
    "MediumSpec",
    "TrainingSet",
    "draw_media",
    "essential_exchanges",
    "generate",
    "make_spec",
    "model_checksum",
]


# =============================================================================== specs
@dataclass(frozen=True)
class MediumSpec:
    """A validated medium specification as arrays (column order = ``ids``).

    ``ids``: split uptake ids (``EX_glc__D_e_i``); ``level`` (n_in,) int >= 1; ``max_value``
    (n_in,) mmol/gDW/h; ``ratio``: Binomial probability of switching a variable uptake on.
    """

    ids: tuple[str, ...]
    level: np.ndarray
    max_value: np.ndarray
    ratio: float

    @property
    def variable(self) -> np.ndarray:
        """Indices of the variable uptakes (``level > 1``)."""
        return np.flatnonzero(self.level > 1)

    @property
    def fixed(self) -> np.ndarray:
        """Indices of the fixed uptakes (``level == 1``)."""
        return np.flatnonzero(self.level <= 1)

    def records(self) -> dict[str, Any]:
        """JSON-able description (goes into metadata and the cache key)."""
        return {
            "ids": list(self.ids),
            "level": [int(v) for v in self.level],
            "max_value": [float(v) for v in self.max_value],
            "ratio": float(self.ratio),
        }

    @classmethod
    def parse(cls, spec: str | pd.DataFrame | MediumSpec, ratio: float | None = None) -> MediumSpec:
        """Build from a spec name (``"e_coli_core"``, ``"iML1515"``), a DataFrame indexed by
        ``_i`` ids with columns ``level``, ``max_value`` (and ``ratio_drawing``), or a spec.
        ``ratio`` overrides the spec's ``ratio_drawing``."""
        if isinstance(spec, MediumSpec):
            out = spec
        else:
            if isinstance(spec, str):
                from amnlib.data import load_medium_spec

                spec = load_medium_spec(spec)
            if not isinstance(spec, pd.DataFrame):
                raise TypeError(
                    f"spec must be a name, a DataFrame or a MediumSpec, got {type(spec).__name__}"
                )
            for col in ("level", "max_value"):
                if col not in spec.columns:
                    raise ValueError(
                        f"medium spec lacks column {col!r} (has {list(spec.columns)}); expected "
                        "columns level, max_value, ratio_drawing indexed by '_i' uptake ids"
                    )
            ids = tuple(str(i) for i in spec.index)
            if len(set(ids)) != len(ids):
                dup = sorted({i for i in ids if ids.count(i) > 1})
                raise ValueError(f"medium spec lists uptakes twice: {dup}")
            level = np.asarray(spec["level"], dtype=float)
            max_value = np.asarray(spec["max_value"], dtype=float)
            r = 0.0
            if "ratio_drawing" in spec.columns:
                vals = pd.to_numeric(spec["ratio_drawing"], errors="coerce").dropna()
                r = float(vals.iloc[0]) if len(vals) else 0.0
            for uid, lv, mv in zip(ids, level, max_value, strict=True):
                if not (math.isfinite(lv) and lv >= 1 and float(lv).is_integer()):
                    raise ValueError(f"level of {uid!r} must be an integer >= 1, got {lv}")
                if not (math.isfinite(mv) and mv >= 0):
                    raise ValueError(f"max_value of {uid!r} must be finite and >= 0, got {mv}")
            out = cls(ids, level.astype(int), max_value, r)
        if ratio is not None:
            out = cls(out.ids, out.level, out.max_value, float(ratio))
        if not 0.0 <= out.ratio <= 1.0:
            raise ValueError(f"ratio_drawing must be in [0, 1], got {out.ratio}")
        return out


def make_spec(
    network: MetabolicNetwork | str | cobra.Model,
    variable: Sequence[str],
    levels: int = 5,
    max_value: float = 10.0,
    ratio: float = 0.5,
    fixed: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """A medium specification for a new model (the table ``load_medium_spec`` returns).

    Fixed uptakes: ``fixed`` (``{exchange: bound}``), by default the model's essential exchanges
    (:func:`essential_exchanges`) at 1000 mmol/gDW/h as in the paper. ``variable`` exchanges get
    ``levels`` levels up to ``max_value``. Returns a DataFrame indexed by ``_i`` ids with columns
    ``level``, ``max_value``, ``ratio_drawing``.
    """
    net = _as_network(network)
    if fixed is None:
        fixed = {e: 1000.0 for e in essential_exchanges(net)}
    rows: dict[str, tuple[int, float]] = {}
    for ex, bound in fixed.items():
        rows[net.uptake_id(ex)] = (1, float(bound))
    for ex in variable:
        uid = net.uptake_id(ex)
        if uid in rows:
            raise ValueError(f"{ex!r} is both fixed and variable")
        rows[uid] = (int(levels), float(max_value))
    df = pd.DataFrame(
        {
            "level": [v[0] for v in rows.values()],
            "max_value": [v[1] for v in rows.values()],
            "ratio_drawing": float(ratio),
        },
        index=pd.Index(list(rows), name="exchange"),
    )
    MediumSpec.parse(df)  # validate
    return df


# =============================================================================== drawing
def _sample_rng(seed: int, i: int) -> np.random.Generator:
    """Generator of sample ``i`` (independent of how samples are split among workers)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(i),)))


def _draw(spec: MediumSpec, rng: np.random.Generator, present: np.ndarray | None) -> np.ndarray:
    """One medium: (n_in,) uptake bounds. ``present`` (n_in,) 0/1 selects the compounds of an
    experimental medium (then every present variable uptake is drawn)."""
    x = np.zeros(len(spec.ids))
    fixed, var = spec.fixed, spec.variable
    if present is None:
        x[fixed] = spec.max_value[fixed]
        if len(var):
            k = int(rng.binomial(len(var), spec.ratio))
            k = max(k, 1)
            on = rng.choice(var, size=k, replace=False)
            steps = rng.integers(1, spec.level[on] + 1)
            x[on] = spec.max_value[on] * steps / spec.level[on]
    else:
        mask = np.asarray(present, dtype=float) > 0
        fx = fixed[mask[fixed]]
        x[fx] = spec.max_value[fx]
        on = var[mask[var]]
        if len(on):
            steps = rng.integers(1, spec.level[on] + 1)
            x[on] = spec.max_value[on] * steps / spec.level[on]
    return x


def _experimental_media(spec: MediumSpec, presence: Any = None) -> np.ndarray:
    """(n_media, n_in) 0/1 presence of each spec uptake in the experimental media: the 110 paper
    media, or ``presence`` (a user's compositions, :func:`_check_presence`)."""
    if presence is not None:
        return _check_presence(spec, presence)
    from amnlib.data import load_media_110

    media = load_media_110()
    missing = [u for u in spec.ids if u not in media.columns]
    if missing:
        raise ValueError(
            f"experimental media (iML1515 exchange space) lack the spec's uptakes {missing[:5]}; "
            "use spec='iML1515' with iJO1366/iML1515"
        )
    return media[list(spec.ids)].to_numpy(dtype=float)


def _check_presence(spec: MediumSpec, presence: Any) -> np.ndarray:
    """``presence`` as a (n_media, n_in) 0/1 array in the spec's column order: an array with the
    spec's columns, or a DataFrame whose columns are the spec's ``_i`` ids (any order; values
    > 0 count as present). ``ValueError`` for a wrong shape, missing columns, NaN or negative
    values, or no medium."""
    if isinstance(presence, pd.DataFrame):
        missing = [u for u in spec.ids if u not in presence.columns]
        if missing:
            raise ValueError(f"presence lacks the spec's uptakes {missing[:5]}")
        presence = presence[list(spec.ids)].to_numpy(dtype=float)
    P = np.asarray(presence, dtype=float)
    if P.ndim != 2 or P.shape[1] != len(spec.ids) or len(P) == 0:
        raise ValueError(f"presence must be (n_media >= 1, {len(spec.ids)}) (the spec's uptakes), "
                         f"got shape {P.shape}")
    if not np.all(np.isfinite(P)) or np.any(P < 0):
        raise ValueError("presence values must be finite and >= 0 (0 absent, > 0 present)")
    return (P > 0).astype(float)


def _medium_rows(size: int, n_media: int, samples_per_medium: int | None) -> np.ndarray:
    if samples_per_medium is not None and samples_per_medium < 1:
        raise ValueError(f"samples_per_medium must be >= 1, got {samples_per_medium}")
    spm = samples_per_medium or max(1, math.ceil(size / n_media))
    return (np.arange(size) // spm) % n_media


def draw_media(
    spec: str | pd.DataFrame | MediumSpec = "e_coli_core",
    size: int = 50,
    seed: int = 0,
    ratio: float | None = None,
    experimental: bool = False,
    samples_per_medium: int | None = None,
    presence: Any = None,
) -> pd.DataFrame:
    """Draw ``size`` media without solving them (the first draw of each sample of
    :func:`generate` with the same arguments).

    Returns a DataFrame (size, n_in) of uptake bounds (mmol/gDW/h), columns = the spec's ``_i``
    ids.
    """
    sp = MediumSpec.parse(spec, ratio)
    size = _check_size(size)
    rows = present = None
    if presence is not None and not experimental:
        raise ValueError("presence (a user's media compositions) needs experimental=True")
    if experimental:
        present = _experimental_media(sp, presence)
        rows = _medium_rows(size, len(present), samples_per_medium)
    X = np.zeros((size, len(sp.ids)))
    for i in range(size):
        X[i] = _draw(sp, _sample_rng(seed, i), None if rows is None else present[rows[i]])
    return pd.DataFrame(X, columns=list(sp.ids))


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    return int(size)


# =============================================================================== solving
class _Solver:
    """One COBRApy model reused for many media: FBA then pFBA on the same optlang problem.

    pFBA minimises ``t``, an auxiliary variable constrained to the sum of all forward and
    reverse variables, with the biomass flux fixed at its optimum; switching between the two
    objectives then changes three coefficients. Only the uptake bounds of the exchanges change
    between samples and the simplex warm-starts from the previous solution. With GLPK the
    simplex is called directly (optlang's full ``optimize`` is the fallback) and each block of
    samples starts from the same stored basis (the optimum of the model's own medium).
    """

    def __init__(
        self,
        model: cobra.Model,
        biomass: str,
        timeout: float | None = None,
        pristine: bytes | None = None,
    ):
        self.model = model
        self._timeout = timeout
        self._glpk = "glpk" in model.solver.interface.__name__
        # other solvers restart blocks from a rebuilt problem: keep the untouched model
        self._pristine = None if self._glpk else (pristine or pickle.dumps(model))
        rxns = list(model.reactions)
        self.biomass = model.reactions.get_by_id(biomass)
        solver = model.solver
        model.objective = self.biomass
        self.obj = solver.objective
        fwd = [r.forward_variable for r in rxns]
        rev = [r.reverse_variable for r in rxns]
        total = solver.interface.Variable("amnlib_pfba_total", lb=0)
        link = solver.interface.Constraint(0, lb=0, ub=0, name="amnlib_pfba_total_link")
        solver.add([total, link])
        solver.update()
        link.set_linear_coefficients({**{v: 1.0 for v in fwd + rev}, total: -1.0})
        self.total = total
        bf, br = self.biomass.forward_variable, self.biomass.reverse_variable
        self.fba_coefs = {bf: 1.0, br: -1.0, total: 0.0}
        self.pfba_coefs = {bf: 0.0, br: 0.0, total: 1.0}
        pos = {v.name: k for k, v in enumerate(solver.variables)}
        self.i_fwd = np.array([pos[v.name] for v in fwd])
        self.i_rev = np.array([pos[v.name] for v in rev])
        self.exchanges = list(model.exchanges)
        self.current = np.full(len(self.exchanges), np.nan)
        # uptake = reverse variable of "A <=>", forward variable of "<=> A"
        self._uptake_var = [
            r.reverse_variable if r.reactants else r.forward_variable for r in self.exchanges
        ]
        self._uptake_lb = [float(v.lb or 0.0) for v in self._uptake_var]
        self._uptake_col = [pos[v.name] + 1 for v in self._uptake_var]  # GLPK is 1-based
        if timeout is not None:  # optlang's GLPK interface takes whole seconds
            solver.configuration.timeout = (
                max(1, math.ceil(timeout)) if self._glpk else float(timeout)
            )
        self._basis: tuple[list[int], list[int]] | None = None

    # ----------------------------------------------------------------- basis
    def _store_basis(self) -> None:
        import swiglpk as glp

        prob = self.model.solver.problem
        glp.glp_std_basis(prob)
        self.solve("pfba", fast=False)  # the model's own medium, from the standard basis
        rows = [glp.glp_get_row_stat(prob, i) for i in range(1, glp.glp_get_num_rows(prob) + 1)]
        cols = [glp.glp_get_col_stat(prob, j) for j in range(1, glp.glp_get_num_cols(prob) + 1)]
        self._basis = (rows, cols)

    def reset(self) -> None:
        """Back to the stored starting basis (deterministic block starts)."""
        if not self._glpk:  # other solvers: rebuild the problem from the pristine model
            self.__init__(
                pickle.loads(self._pristine), self.biomass.id, self._timeout, self._pristine
            )
            return
        import swiglpk as glp

        if self._basis is None:
            self._store_basis()
        prob = self.model.solver.problem
        rows, cols = self._basis
        for i, st in enumerate(rows, 1):
            glp.glp_set_row_stat(prob, i, st)
        for j, st in enumerate(cols, 1):
            glp.glp_set_col_stat(prob, j, st)
        # a fresh factorization: GLPK would otherwise reuse the updated one of the last solve,
        # whose rounding depends on the samples solved before (i.e. on the worker's history)
        glp.glp_factorize(prob)

    # ----------------------------------------------------------------- solving
    def set_medium(self, bounds: np.ndarray) -> None:
        """Uptake bounds (n_exchanges,) in the order of ``model.exchanges`` (COBRApy's
        ``model.medium`` semantics: the bound of the uptake direction). Sets the bounds of the
        uptake variables directly (the worker's private model is not kept in sync at the
        COBRApy level)."""
        changed = np.flatnonzero(~(bounds == self.current))
        if len(changed) == 0:
            return
        if self._glpk:
            import swiglpk as glp

            prob = self.model.solver.problem
            for k in changed:
                b = float(bounds[k])
                lb = self._uptake_lb[k]
                kind = glp.GLP_FX if b == lb else glp.GLP_DB
                glp.glp_set_col_bnds(prob, self._uptake_col[k], kind, lb, max(b, lb))
        else:
            for k in changed:
                var = self._uptake_var[k]
                var.ub = max(float(bounds[k]), self._uptake_lb[k])
        self.current = bounds.copy()

    def _net(self) -> np.ndarray:
        solver = self.model.solver
        vals = np.asarray(
            solver._get_primal_values()
            if hasattr(solver, "_get_primal_values")
            else list(solver.primal_values.values()),
            dtype=float,
        )
        return vals[self.i_fwd] - vals[self.i_rev]

    def _optimize(self, fast: bool) -> tuple[str, float]:
        solver = self.model.solver
        if self._glpk and fast:
            import swiglpk as glp

            status = solver._run_glp_simplex()
            if status == "optimal":
                return status, float(glp.glp_get_obj_val(solver.problem))
        status = solver.optimize()
        return str(status), float(self.obj.value) if status == "optimal" else 0.0

    def solve(self, method: str, fast: bool = True) -> tuple[str, float, np.ndarray | None]:
        """Solve the current medium: (status, growth h^-1, net fluxes (n_reactions,) or None)."""
        self.obj.set_linear_coefficients(self.fba_coefs)
        self.obj.direction = "max"
        status, growth = self._optimize(fast)
        if status != "optimal":
            return status, 0.0, None
        if growth < GROWTH_THRESHOLD or method == "fba":
            return "optimal", growth, self._net()
        var = self.biomass.forward_variable
        lb0 = var.lb
        try:
            self.obj.set_linear_coefficients(self.pfba_coefs)
            self.obj.direction = "min"
            for relax in (0.0, 1e-9, 1e-7):
                var.lb = growth * (1.0 - relax)
                status, _ = self._optimize(fast)
                if status == "optimal":
                    break
            if status != "optimal":
                return f"pfba_{status}", growth, None
            return "optimal", growth, self._net()
        finally:
            var.lb = lb0


@dataclass
class _Job:
    """Everything a worker needs (picklable)."""

    model_bytes: bytes
    key: str
    biomass: str
    spec: MediumSpec
    spec_ex: np.ndarray  # (n_in,) index of each spec uptake among model.exchanges
    n_ex: int
    seed: int
    method: str
    max_tries: int
    timeout: float | None
    present: np.ndarray | None  # (n_media, n_in) experimental presence
    rows: np.ndarray | None  # (size,) experimental medium of each sample


_WORKER_CACHE: dict[str, _Solver] = {}


def _solver_for(job: _Job) -> _Solver:
    solver = _WORKER_CACHE.get(job.key)
    if solver is None:
        _WORKER_CACHE.clear()
        model = pickle.loads(job.model_bytes)
        solver = _Solver(model, job.biomass, job.timeout)
        _WORKER_CACHE[job.key] = solver
    return solver


def _empty_block(job: _Job, start: int, stop: int) -> dict[str, Any]:
    """The result record of samples ``start..stop-1`` before any is solved."""
    n = stop - start
    return {
        "start": start,
        "X": np.zeros((n, len(job.spec.ids))),
        "net": None,
        "growth": np.zeros(n),
        "tries": np.zeros(n, dtype=int),
        "ok": np.zeros(n, dtype=bool),
        "failures": [],
        "seconds": 0.0,
    }


def _run_block(job: _Job, start: int, stop: int) -> dict[str, Any]:
    """Solve samples ``start..stop-1``; never raises (errors become failures)."""
    n = stop - start
    out = _empty_block(job, start, stop)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        solver = _solver_for(job)
        solver.reset()
        net = np.zeros((n, len(solver.i_fwd)))
        out["setup_seconds"] = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - reported per sample below
        for i in range(start, stop):
            out["failures"].append({"index": i, "tries": 0, "reason": f"worker setup: {err!r}"})
        return out
    bounds = np.zeros(job.n_ex)
    for k, i in enumerate(range(start, stop)):
        rng = _sample_rng(job.seed, i)
        present = None if job.rows is None else job.present[job.rows[i]]
        reason = ""
        for attempt in range(1, job.max_tries + 1):
            x = _draw(job.spec, rng, present)
            out["X"][k] = x
            out["tries"][k] = attempt
            try:
                bounds[:] = 0.0
                bounds[job.spec_ex] = x
                solver.set_medium(bounds)
                status, growth, v = solver.solve(job.method)
            except Exception as err:  # noqa: BLE001 - a solver error is a failed sample
                status, growth, v = f"error: {err!r}", 0.0, None
            if status == "optimal" and growth >= GROWTH_THRESHOLD:
                net[k] = v
                out["growth"][k] = growth
                out["ok"][k] = True
                break
            reason = status if status != "optimal" else f"no growth ({growth:.3g} h^-1)"
            if "time_limit" in status or "error" in status:
                break  # do not keep hammering a solver that times out or breaks
        else:
            reason = f"{reason}; gave up after {job.max_tries} draws"
        if not out["ok"][k]:
            out["failures"].append({"index": i, "tries": int(out["tries"][k]), "reason": reason})
    out["net"] = net
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    return out


# =============================================================================== data set
@dataclass
class TrainingSet:
    """Media and their (p)FBA fluxes.

    Attributes
    ----------
    X : (size, n_in) uptake bounds (mmol/gDW/h), columns ``x_ids`` (the spec's ``_i`` ids).
    Y : (size, n) split fluxes (mmol/gDW/h; biomass h^-1), columns ``y_ids``
        (= ``network.reaction_ids``).
    growth : (size,) growth rate (h^-1).
    x_ids, y_ids : column ids.
    metadata : model id and checksum, COBRApy/optlang/solver versions, spec, seed, size,
        method, timings, number of redraws and failures.
    failures : samples that could not be solved (``{"index", "tries", "reason"}``); they are
        absent from X/Y/growth (``sample_index`` says which samples the rows are).
    tries : (size,) draws used per sample (1 = the first medium grew).
    sample_index : (size,) index of each row among the requested samples.
    medium_index : (size,) row of the experimental medium (experimental mode) or ``None``.
    """

    X: np.ndarray
    Y: np.ndarray
    growth: np.ndarray
    x_ids: list[str]
    y_ids: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    tries: np.ndarray | None = None
    sample_index: np.ndarray | None = None
    medium_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        md = self.metadata
        return (
            f"TrainingSet({len(self)} samples of {md.get('model', '?')!r}, "
            f"method={md.get('method', '?')!r}, X {self.X.shape}, Y {self.Y.shape}, "
            f"{len(self.failures)} failures)"
        )

    @property
    def media(self) -> list[dict[str, float]]:
        """COBRApy medium dicts ``{exchange_id: uptake bound}`` (zeros left out)."""
        ex = [i[: -len(SUFFIX_IN)] if i.endswith(SUFFIX_IN) else i for i in self.x_ids]
        return [{e: float(b) for e, b in zip(ex, row, strict=True) if b > 0} for row in self.X]

    def subset(self, rows: Sequence[int] | np.ndarray | slice) -> TrainingSet:
        """The rows ``rows`` (indices, boolean mask or slice) as a new set (same metadata,
        failures kept)."""
        idx = np.arange(len(self))[rows]

        def pick(a):
            return None if a is None else a[idx]

        return TrainingSet(
            X=self.X[idx],
            Y=self.Y[idx],
            growth=self.growth[idx],
            x_ids=list(self.x_ids),
            y_ids=list(self.y_ids),
            metadata=dict(self.metadata),
            failures=list(self.failures),
            tries=pick(self.tries),
            sample_index=pick(self.sample_index),
            medium_index=pick(self.medium_index),
        )

    def tensors(self, device=None, dtype=None):
        """``(X, Y)`` as torch tensors, (size, n_in) and (size, n), on ``device`` (default
        CPU) with ``dtype`` (default float32)."""
        import torch

        dtype = dtype or torch.float32
        return (
            torch.as_tensor(self.X, dtype=dtype, device=device),
            torch.as_tensor(self.Y, dtype=dtype, device=device),
        )

    def frame(self, which: str = "Y") -> pd.DataFrame:
        """``X`` or ``Y`` as a DataFrame with named columns."""
        if which == "X":
            return pd.DataFrame(self.X, columns=self.x_ids)
        if which == "Y":
            return pd.DataFrame(self.Y, columns=self.y_ids)
        raise ValueError(f"which must be 'X' or 'Y', got {which!r}")

    def check(self, network: MetabolicNetwork) -> dict[str, float]:
        """Constraint violations against ``network``: ``max_abs_Sy`` (max |S y|),
        ``max_bound_violation`` (y above its bound, uptakes above X, or below lb) and
        ``min_growth`` (h^-1)."""
        if list(network.reaction_ids) != list(self.y_ids):
            raise ValueError("network's reaction ids differ from the training set's y_ids")
        Y = self.Y
        ub = np.broadcast_to(network.ub, Y.shape).copy()
        cols = network.indices(self.x_ids)
        ub[:, cols] = self.X
        in_cols = [j for j, c in enumerate(network.columns) if c.kind == "in"]
        other_in = sorted(set(in_cols) - set(cols))
        ub[:, other_in] = 0.0  # unlisted exchanges have uptake 0
        viol = np.maximum(Y - ub, 0).max(initial=0.0)
        viol = max(viol, np.maximum(network.lb - Y, 0).max(initial=0.0))
        return {
            "max_abs_Sy": float(np.abs(Y @ network.S.T).max(initial=0.0)),
            "max_bound_violation": float(viol),
            "min_growth": float(self.growth.min(initial=np.inf)),
        }

    # --------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz: arrays + metadata JSON) and a readable ``path.json`` sidecar,
        atomically (temporary files renamed into place). Returns the npz path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.metadata)
        meta["failures"] = self.failures
        meta_json = json.dumps(meta, indent=1, default=_json_default)
        arrays = {
            "X": self.X,
            "Y": self.Y,
            "growth": self.growth,
            "x_ids": np.array(self.x_ids),
            "y_ids": np.array(self.y_ids),
            "metadata": np.array(meta_json),
            "tries": np.zeros(0, int) if self.tries is None else self.tries,
            "sample_index": np.zeros(0, int) if self.sample_index is None else self.sample_index,
            "medium_index": np.zeros(0, int) if self.medium_index is None else self.medium_index,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        tmp.replace(path)
        side = path.with_suffix(".json")
        tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
        tmp.write_text(meta_json)
        tmp.replace(side)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainingSet:
        """Read a set written by :meth:`save`."""
        path = Path(path)
        if not path.exists() and path.with_name(path.name + ".npz").exists():
            path = path.with_name(path.name + ".npz")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            failures = meta.pop("failures", [])
            mi = z["medium_index"]
            return cls(
                X=z["X"],
                Y=z["Y"],
                growth=z["growth"],
                x_ids=[str(s) for s in z["x_ids"]],
                y_ids=[str(s) for s in z["y_ids"]],
                metadata=meta,
                failures=failures,
                tries=z["tries"] if len(z["tries"]) else None,
                sample_index=z["sample_index"] if len(z["sample_index"]) else None,
                medium_index=mi if len(mi) else None,
            )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# =============================================================================== helpers
_NETWORKS: dict[str, MetabolicNetwork] = {}


def _as_network(network: MetabolicNetwork | str | Path | cobra.Model) -> MetabolicNetwork:
    """A network from a network, a model name (built once per process), a path or a model."""
    if isinstance(network, MetabolicNetwork):
        return network
    if isinstance(network, str) and not Path(network).suffix:
        if network not in _NETWORKS:
            _NETWORKS[network] = MetabolicNetwork.load(network)
        return _NETWORKS[network]
    return MetabolicNetwork.load(network)


def model_checksum(network: MetabolicNetwork) -> str:
    """sha256 of the split network (ids, S) and its bounds: identifies the model a training
    set was generated with."""
    h = hashlib.sha256()
    h.update(network.fingerprint().encode())
    h.update(np.ascontiguousarray(np.round(network.lb, 9)).tobytes())
    h.update(np.ascontiguousarray(np.round(np.minimum(network.ub, 1e9), 9)).tobytes())
    h.update(network.biomass_reaction.encode())
    return h.hexdigest()


def _solver_versions(model: cobra.Model) -> dict[str, str]:
    import optlang

    out = {"cobra": cobra.__version__, "optlang": optlang.__version__}
    iface = model.solver.interface.__name__
    out["solver"] = iface.rsplit(".", 1)[-1].replace("_interface", "")
    if out["solver"] == "glpk":
        try:
            import swiglpk

            out["solver_version"] = str(swiglpk.glp_version())
        except Exception:  # noqa: BLE001
            pass
    return out


def _default_cache_dir() -> Path:
    from amnlib.data import cache_dir

    return cache_dir() / "training_sets"


def _n_workers(n_jobs: int | None) -> int:
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return cpus
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return int(n_jobs)


def essential_exchanges(
    network: MetabolicNetwork | str | cobra.Model,
    bound: float = 1000.0,
    threshold: float = GROWTH_THRESHOLD,
) -> list[str]:
    """Exchanges whose uptake the model needs: with every other exchange open at ``bound``
    (mmol/gDW/h) and this one closed, FBA growth is below ``threshold`` (h^-1) or infeasible.

    Returns COBRApy exchange ids (``EX_nh4_e``) in model order.
    """
    net = _as_network(network)
    model = net.model.copy()
    solver = _Solver(model, net.biomass_reaction)
    full = np.full(len(solver.exchanges), float(bound))
    solver.set_medium(full)
    status, growth, _ = solver.solve("fba")
    if status != "optimal" or growth < threshold:
        raise ValueError(
            f"model {net.name!r} does not grow even with every exchange open at {bound} "
            f"(status {status}, growth {growth:.3g} h^-1)"
        )
    out = []
    for k, r in enumerate(solver.exchanges):
        b = full.copy()
        b[k] = 0.0
        solver.set_medium(b)
        status, growth, _ = solver.solve("fba")
        if status != "optimal" or growth < threshold:
            out.append(r.id)
    return out


# =============================================================================== generate
def generate(
    network_or_name: MetabolicNetwork | str | Path | cobra.Model,
    spec: str | pd.DataFrame | MediumSpec = "e_coli_core",
    size: int = 50,
    seed: int = 0,
    method: str = "pfba",
    n_jobs: int | None = None,
    cache_dir: str | Path | None | bool = None,
    backend: str = "loky",
    experimental: bool = False,
    samples_per_medium: int | None = None,
    progress: bool = True,
    ratio: float | None = None,
    max_tries: int = MAX_TRIES,
    timeout: float | None = None,
    client: Any = None,
    presence: Any = None,
) -> TrainingSet:
    """Draw ``size`` media from ``spec`` and solve each with COBRApy (p)FBA.

    Parameters
    ----------
    network_or_name : a :class:`MetabolicNetwork`, a model name (``"textbook"``,
        ``"iJO1366"``), a path or a ``cobra.Model``.
    spec : medium specification name (``"e_coli_core"``, ``"iML1515"``) or DataFrame
        (see :func:`amnlib.data.load_medium_spec`, :func:`make_spec`).
    size : number of samples (rows of X/Y when none fails).
    seed : the data set's seed; sample ``i`` uses ``SeedSequence(seed, spawn_key=(i,))``.
    method : ``"pfba"`` (default, the paper's) or ``"fba"``.
    n_jobs : worker processes (``None``: all cores, but a job whose first block says it will
        finish within ``AUTO_SERIAL_SECONDS`` stays in this process; 1: serial in this
        process). The data do not depend on it.
    cache_dir : folder of cached sets (``None``: ``<amnlib cache>/training_sets``; ``False``:
        no cache). The same model checksum, solver, spec, seed, size, method and mode load from
        there; sets with failures are not cached.
    backend : ``"loky"`` (joblib processes) or ``"dask"`` (a ``dask.distributed`` client:
        ``client``, else the current one, else a temporary ``LocalCluster`` of ``n_jobs``
        processes).
    experimental : draw media from the 110 experimental media (ratio 0; ``samples_per_medium``
        samples each, default ``ceil(size / n_media)``).
    presence : with ``experimental``, a user's media compositions instead of the 110 paper
        media: (n_media, n_in) 0/1 presence of the spec's uptakes (array in the spec's order, or
        a DataFrame with the spec's ``_i`` ids as columns). Part of the cache identity.
    progress : show a tqdm progress bar.
    ratio : override the spec's ``ratio_drawing``.
    max_tries : draws per sample before it is reported as a failure.
    timeout : solver time limit per LP (seconds; GLPK rounds up to whole seconds); a sample
        that hits it is a failure (``reason`` "time_limit").

    Returns a :class:`TrainingSet`. Failed samples are listed in ``failures`` (and a
    ``RuntimeWarning`` says how many); they are never dropped silently.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if backend not in ("loky", "dask"):
        raise ValueError(f"backend must be 'loky' or 'dask', got {backend!r}")
    size = _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    net = _as_network(network_or_name)
    sp = MediumSpec.parse(spec, 0.0 if experimental and ratio is None else ratio)
    spec_ex_ids = [net.exchange_id(u) for u in sp.ids]  # ValueError names unknown ids
    exchanges = [r.id for r in net.model.exchanges]
    not_exchange = [e for e in spec_ex_ids if e not in exchanges]
    if not_exchange:
        raise ValueError(
            f"spec uptakes {not_exchange[:5]} are boundary reactions of {net.name!r} but not "
            "exchanges (COBRApy's model.medium only sets exchanges)"
        )
    spec_ex = np.array([exchanges.index(e) for e in spec_ex_ids], dtype=int)
    present = rows = None
    if presence is not None and not experimental:
        raise ValueError("presence (a user's media compositions) needs experimental=True")
    if experimental:
        present = _experimental_media(sp, presence)
        rows = _medium_rows(size, len(present), samples_per_medium)
        samples_per_medium = samples_per_medium or max(1, math.ceil(size / len(present)))

    checksum = model_checksum(net)
    identity = {
        "format": FORMAT_VERSION,
        "model_checksum": checksum,
        "solver": net.model.solver.interface.__name__,
        "spec": sp.records(),
        "seed": int(seed),
        "size": size,
        "method": method,
        "experimental": bool(experimental),
        "samples_per_medium": samples_per_medium if experimental else None,
        "max_tries": int(max_tries),
        "block_size": BLOCK_SIZE,
    }
    if presence is not None:  # absent for the paper media: their cache keys are unchanged
        identity["presence"] = hashlib.sha256(np.ascontiguousarray(present).tobytes()).hexdigest()
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    cache_path = None
    if cache_dir is not False:
        root = _default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)
        cache_path = root / f"{net.name}_{method}_{size}_{seed}_{key}.npz"
        if cache_path.exists():
            try:
                ts = TrainingSet.load(cache_path)
                ts.metadata["from_cache"] = str(cache_path)
                return ts
            except Exception as err:  # noqa: BLE001 - a broken cache file is regenerated
                warnings.warn(f"ignoring unreadable cache {cache_path}: {err}", stacklevel=2)

    job = _Job(
        model_bytes=pickle.dumps(net.model),
        key=f"{checksum}:{net.model.solver.interface.__name__}:{timeout}",
        biomass=net.biomass_reaction,
        spec=sp,
        spec_ex=spec_ex,
        n_ex=len(exchanges),
        seed=int(seed),
        method=method,
        max_tries=int(max_tries),
        timeout=timeout,
        present=present,
        rows=rows,
    )
    blocks = [(s, min(s + BLOCK_SIZE, size)) for s in range(0, size, BLOCK_SIZE)]
    workers = _n_workers(n_jobs)
    t0 = time.perf_counter()
    results, how = _execute(
        job, blocks, workers, backend, progress, size, client, auto=n_jobs is None
    )
    wall = time.perf_counter() - t0

    results.sort(key=lambda r: r["start"])
    Xall = np.vstack([r["X"] for r in results]) if results else np.zeros((0, len(sp.ids)))
    ok = np.concatenate([r["ok"] for r in results]) if results else np.zeros(0, bool)
    tries = np.concatenate([r["tries"] for r in results]) if results else np.zeros(0, int)
    growth = np.concatenate([r["growth"] for r in results]) if results else np.zeros(0)
    failures = [f for r in results for f in r["failures"]]
    n_orig = len(net.original_ids)
    # a block that failed during setup has no fluxes: zeros keep the rows aligned
    netf = np.vstack(
        [np.zeros((0, n_orig))]
        + [r["net"] if r["net"] is not None else np.zeros((len(r["ok"]), n_orig))
           for r in results]
    )
    Y = _lift(net, netf[ok])
    Y[Y < FLUX_ZERO] = 0.0
    idx = np.flatnonzero(ok)
    metadata: dict[str, Any] = {
        "model": net.name,
        "model_checksum": checksum,
        "biomass": net.biomass_reaction,
        **_solver_versions(net.model),
        "spec": sp.records(),
        "seed": int(seed),
        "size": size,
        "n_samples": int(ok.sum()),
        "method": method,
        "experimental": bool(experimental),
        "samples_per_medium": samples_per_medium if experimental else None,
        "max_tries": int(max_tries),
        "block_size": BLOCK_SIZE,
        "backend": how,
        "n_jobs": workers,
        "seconds": wall,
        "solver_seconds": float(sum(r["seconds"] for r in results)),
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in results)),
        "redraws": int((tries[ok] - 1).sum()) if len(tries) else 0,
        "n_failures": len(failures),
        "cache_key": key,
        "amnlib_format": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ts = TrainingSet(
        X=Xall[ok],
        Y=Y,
        growth=growth[ok],
        x_ids=list(sp.ids),
        y_ids=list(net.reaction_ids),
        metadata=metadata,
        failures=failures,
        tries=tries[ok],
        sample_index=idx,
        medium_index=None if rows is None else rows[ok],
    )
    if failures:
        warnings.warn(
            f"{len(failures)} of {size} samples failed (e.g. sample {failures[0]['index']}: "
            f"{failures[0]['reason']}); see TrainingSet.failures",
            RuntimeWarning,
            stacklevel=2,
        )
    if cache_path is not None and not failures:
        ts.save(cache_path)
    return ts


def _lift(net: MetabolicNetwork, netf: np.ndarray) -> np.ndarray:
    """Net fluxes (batch, n_reactions) -> split fluxes (batch, n)."""
    pos = {rid: k for k, rid in enumerate(net.original_ids)}
    src = np.array([pos[c.reaction] for c in net.columns])
    sign = np.array([c.sign for c in net.columns], dtype=float)
    return np.maximum(netf[:, src] * sign, 0.0)


def _execute(
    job: _Job,
    blocks: list[tuple[int, int]],
    workers: int,
    backend: str,
    progress: bool,
    size: int,
    client: Any,
    auto: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """Run the blocks; returns (results, how) with how = "serial", "loky" or "dask".

    ``auto`` (``n_jobs=None``): the first block runs here; when the rest would take less than
    ``AUTO_SERIAL_SECONDS`` serially, no worker processes are started (same data either way).
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=size, disable=not progress, desc=f"{job.method} samples", unit="sample")
    results: list[dict[str, Any]] = []
    how = "serial"
    try:
        if backend == "dask":
            how = "dask"
            results = _execute_dask(job, blocks, workers, bar, client)
            return results, how
        if auto and workers > 1 and len(blocks) > 1:
            first = _run_block(job, *blocks[0])
            results.append(first)
            bar.update(len(first["ok"]))
            per_block = first["seconds"] - first.get("setup_seconds", 0.0)
            if per_block * (len(blocks) - 1) < AUTO_SERIAL_SECONDS:
                workers = 1
            blocks = blocks[1:]
        if workers <= 1 or len(blocks) <= 1:
            for s, e in blocks:
                results.append(_run_block(job, s, e))
                bar.update(e - s)
        else:
            how = "loky"
            import joblib
            from joblib import Parallel, delayed

            # "generator_unordered" needs joblib >= 1.4 (pyproject allows 1.3)
            major, minor = (int(p) for p in joblib.__version__.split(".")[:2])
            order = "generator_unordered" if (major, minor) >= (1, 4) else "generator"
            par = Parallel(n_jobs=workers, backend="loky", return_as=order)
            try:
                for r in par(delayed(_run_block)(job, s, e) for s, e in blocks):
                    results.append(r)
                    bar.update(len(r["ok"]))
            except Exception as err:  # noqa: BLE001 - e.g. a worker process died
                done = {r["start"] for r in results}
                for s, e in blocks:
                    if s not in done:
                        results.append(_failed_block(job, s, e, f"loky worker: {err!r}"))
    finally:
        bar.close()
    return results, how


def _execute_dask(job, blocks, workers, bar, client) -> list[dict[str, Any]]:
    from dask.distributed import Client, LocalCluster, as_completed

    own = None
    if client is None:
        try:
            from dask.distributed import get_client

            client = get_client()
        except ValueError:
            cluster = LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None
            )
            client = own = Client(cluster)
    try:
        job_f = client.scatter(job, broadcast=True)
        futures = [client.submit(_run_block, job_f, s, e, pure=False) for s, e in blocks]
        results = []
        for fut in as_completed(futures):
            try:
                r = fut.result()
            except Exception as err:  # noqa: BLE001 - a lost worker: report its samples
                s, e = blocks[futures.index(fut)]
                r = _failed_block(job, s, e, f"dask worker: {err!r}")
            results.append(r)
            bar.update(len(r["ok"]))
        return results
    finally:
        if own is not None:
            cluster = own.cluster
            own.close()
            cluster.close()


def _failed_block(job: _Job, start: int, stop: int, reason: str) -> dict[str, Any]:
    """A block whose worker failed as a whole: every sample reported with ``reason``."""
    out = _empty_block(job, start, stop)
    out["failures"] = [{"index": i, "tries": 0, "reason": reason} for i in range(start, stop)]
    return out

