"""Unidirectional metabolic networks built from COBRApy models.

AMNs work on fluxes that are all non-negative (paper, Methods "Making metabolic networks suitable
for neural computations"). :class:`MetabolicNetwork` splits a ``cobra.Model`` so that

* a reversible internal reaction ``R`` becomes ``R_for`` (forward) and ``R_rev`` (backward);
* every boundary reaction ``EX`` (exchange, demand, sink) becomes ``EX_i`` (inflow, uptake into the
  model) and ``EX_o`` (outflow), even when it is one-sided;
* an irreversible internal reaction keeps its id (a purely backward one becomes ``R_rev``).

All split fluxes are >= 0. Lower bounds of irreversible reactions (e.g. ``ATPM`` = 8.39 in
E. coli core) are kept in :attr:`MetabolicNetwork.lb`; every other lower bound is 0.

Matrices (numpy float64; :meth:`MetabolicNetwork.tensor` gives torch tensors):

* ``S``  (m x n): stoichiometry of the split network, ``S @ v_split = 0`` at steady state;
* ``V2M`` (m x n): production coefficients, ``V2M = max(S, 0)`` (Fig. 1C);
* ``M2V`` (n x m): consumption coefficients, ``M2V = max(-S, 0).T`` (Fig. 1C);
* ``S_int`` (m x n): ``S`` with boundary columns and the rows of boundary metabolites zeroed
  (Fig. S2); ``S_ext`` (m x n): the boundary columns of ``S`` only;
* ``P_in`` (n_in x n): selects the inflow (``_i``) columns of the medium exchanges;
* ``P_out`` (n_out x n): selects the measured columns (biomass by default);
* ``c`` (n,): objective vector (1 at the biomass column); ``ub`` (n,): upper bounds.

Fluxes are in mmol gDW^-1 h^-1, the biomass flux (growth rate) in h^-1.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

import cobra
import numpy as np
import pandas as pd

SUFFIX_FOR = "_for"
SUFFIX_REV = "_rev"
SUFFIX_IN = "_i"
SUFFIX_OUT = "_o"
SUFFIXES = (SUFFIX_FOR, SUFFIX_REV, SUFFIX_IN, SUFFIX_OUT)

#: Uptake bound given to exchanges of a medium that a user switches "fully on".
DEFAULT_UPTAKE = 1000.0
#: Growth rates below this (h^-1) count as "no growth" (paper, training-set generation).
GROWTH_THRESHOLD = 1e-3
#: Flux values below this are set to 0 in reference solutions.
FLUX_ZERO = 1e-8


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""


@dataclass(frozen=True)
class SplitColumn:
    """One column of the split network: which original reaction and with which sign.

    ``sign = +1`` means the split flux equals the original flux's positive part, ``-1`` its
    negative part (for boundary reactions the sign is chosen so that ``_i`` is uptake).
    """

    id: str
    reaction: str
    sign: int
    kind: str  # "internal", "for", "rev", "in", "out"


@dataclass
class FluxResult:
    """A reference FBA/pFBA solve.

    Attributes
    ----------
    status : "optimal", "no_growth" (growth < threshold) or the solver's status
        ("infeasible", ...).
    growth : growth rate (h^-1); 0.0 when not optimal.
    v : split flux vector (n,) in mmol/gDW/h, or ``None`` when not optimal.
    net : COBRApy's net fluxes (pd.Series over the original reaction ids), or ``None``.
    """

    status: str
    growth: float
    v: np.ndarray | None = None
    net: pd.Series | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "optimal"


class MetabolicNetwork:
    """A COBRApy model made unidirectional, with its matrices and reference solvers.

    Parameters
    ----------
    model : a ``cobra.Model`` (copied: later changes to it do not affect the network).
    biomass : id of the biomass reaction; by default the reaction of the model's objective.
    medium : ids of the medium exchanges (COBRApy ``model.medium`` keys, or split ``_i`` ids)
        whose uptake columns ``P_in`` selects; by default every boundary reaction of the model.
    measured : split ids selected by ``P_out``; by default the biomass column.

    Raises
    ------
    ValueError : when the model has no objective reaction and ``biomass`` is not given, or an id
        is unknown.
    """

    def __init__(
        self,
        model: cobra.Model,
        biomass: str | None = None,
        medium: Sequence[str] | None = None,
        measured: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(model, cobra.Model):
            raise TypeError(f"expected a cobra.Model, got {type(model).__name__}")
        self.model = model.copy()
        self.name = model.id or "model"
        self.biomass_reaction = self._find_biomass(biomass)
        self._build()
        self.medium_ids = self._medium_ids(medium)
        self.in_ids = [self.uptake_id(e) for e in self.medium_ids]
        self.measured_ids = list(measured) if measured is not None else [self.biomass_id]
        for mid in self.measured_ids:
            self.index(mid)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def load(cls, name: str | Path | cobra.Model, **kwargs) -> MetabolicNetwork:
        """Build from a model name (``textbook``, ``e_coli_core``, ``iJO1366``, ``iML1515``),
        an SBML/JSON path, or a ``cobra.Model``."""
        if isinstance(name, cobra.Model):
            return cls(name, **kwargs)
        from amnlib.data import load_model

        return cls(load_model(name), **kwargs)

    # ----------------------------------------------------------------- building
    def _find_biomass(self, biomass: str | None) -> str:
        ids = [r.id for r in self.model.reactions]
        if biomass is not None:
            if biomass not in self.model.reactions:
                raise ValueError(
                    f"biomass reaction {biomass!r} is not in model {self.name!r}."
                    + _suggest(biomass, ids)
                )
            return biomass
        coefs = {
            r.id: r.objective_coefficient
            for r in self.model.reactions
            if r.objective_coefficient != 0
        }
        if not coefs:
            raise ValueError(
                f"model {self.name!r} has no objective reaction: pass biomass=<reaction id> "
                "(usually the biomass reaction, e.g. 'BIOMASS_Ecoli_core_w_GAM')."
            )
        if len(coefs) > 1:
            raise ValueError(
                f"model {self.name!r} has several objective reactions {sorted(coefs)}: "
                "pass biomass=<reaction id>."
            )
        return next(iter(coefs))

    def _build(self) -> None:
        model = self.model
        boundary = {r.id for r in model.boundary}
        cols: list[SplitColumn] = []
        ub: list[float] = []
        lb: list[float] = []
        for r in model.reactions:
            lo, hi = r.bounds
            if r.id in boundary:
                # uptake direction: negative flux for "A <=>", positive for "<=> A".
                up_sign = -1 if any(c < 0 for c in r.metabolites.values()) else 1
                up_bound = max(-lo, 0.0) if up_sign < 0 else max(hi, 0.0)
                out_bound = max(hi, 0.0) if up_sign < 0 else max(-lo, 0.0)
                cols.append(SplitColumn(r.id + SUFFIX_IN, r.id, up_sign, "in"))
                cols.append(SplitColumn(r.id + SUFFIX_OUT, r.id, -up_sign, "out"))
                ub += [up_bound, out_bound]
                lb += [0.0, 0.0]
            elif lo < 0 < hi:
                cols.append(SplitColumn(r.id + SUFFIX_FOR, r.id, 1, "for"))
                cols.append(SplitColumn(r.id + SUFFIX_REV, r.id, -1, "rev"))
                ub += [hi, -lo]
                lb += [0.0, 0.0]
            elif hi <= 0 and lo < 0:
                cols.append(SplitColumn(r.id + SUFFIX_REV, r.id, -1, "rev"))
                ub.append(-lo)
                lb.append(max(-hi, 0.0))
            else:
                cols.append(SplitColumn(r.id, r.id, 1, "internal"))
                ub.append(hi)
                lb.append(max(lo, 0.0))
        self.columns = cols
        self.reaction_ids = [c.id for c in cols]
        self._index = {c.id: j for j, c in enumerate(cols)}
        self.metabolite_ids = [m.id for m in model.metabolites]
        m_index = {m: i for i, m in enumerate(self.metabolite_ids)}
        S = np.zeros((len(self.metabolite_ids), len(cols)))
        rxn_cols: dict[str, list[tuple[int, int]]] = {}
        for j, c in enumerate(cols):
            rxn = model.reactions.get_by_id(c.reaction)
            for met, coef in rxn.metabolites.items():
                S[m_index[met.id], j] = c.sign * coef
            rxn_cols.setdefault(c.reaction, []).append((j, c.sign))
        self._rxn_cols = rxn_cols
        self.S = S
        self.ub = np.asarray(ub, dtype=float)
        self.lb = np.asarray(lb, dtype=float)
        self.boundary_mask = np.array([c.kind in ("in", "out") for c in cols])
        self.boundary_metabolites = sorted(
            {m.id for r in model.boundary for m in r.metabolites}
        )
        self.original_ids = [r.id for r in model.reactions]

    def _medium_ids(self, medium: Sequence[str] | None) -> list[str]:
        if medium is None:
            return [r.id for r in self.model.boundary]
        return [self.exchange_id(e) for e in medium]

    # ----------------------------------------------------------------- ids
    @property
    def n(self) -> int:
        """Number of split reactions (fluxes)."""
        return len(self.columns)

    @property
    def m(self) -> int:
        """Number of metabolites."""
        return len(self.metabolite_ids)

    @property
    def biomass_id(self) -> str:
        """Split id of the biomass flux."""
        return self._rxn_cols_ids(self.biomass_reaction)[0]

    @property
    def biomass_index(self) -> int:
        return self._index[self.biomass_id]

    def _rxn_cols_ids(self, reaction: str) -> list[str]:
        return [self.columns[j].id for j, _ in self._rxn_cols[reaction]]

    def index(self, split_id: str) -> int:
        """Column index of a split reaction id (``ValueError`` naming close ids if unknown)."""
        try:
            return self._index[split_id]
        except KeyError:
            raise ValueError(
                f"{split_id!r} is not a reaction of the split network {self.name!r}."
                + _suggest(split_id, self._index)
            ) from None

    def indices(self, split_ids: Iterable[str]) -> list[int]:
        return [self.index(s) for s in split_ids]

    def exchange_id(self, name: str) -> str:
        """Normalise an exchange name (``EX_glc__D_e`` or ``EX_glc__D_e_i``) to the model's
        boundary reaction id."""
        boundary = {r.id for r in self.model.boundary}
        if name in boundary:
            return name
        if name.endswith(SUFFIX_IN) and name[: -len(SUFFIX_IN)] in boundary:
            return name[: -len(SUFFIX_IN)]
        raise ValueError(
            f"{name!r} is not an exchange (boundary) reaction of model {self.name!r}."
            + _suggest(name, boundary | {b + SUFFIX_IN for b in boundary})
        )

    def uptake_id(self, exchange: str) -> str:
        """Split id of the inflow column of an exchange (``EX_glc__D_e`` -> ``EX_glc__D_e_i``)."""
        return self.exchange_id(exchange) + SUFFIX_IN

    # ----------------------------------------------------------------- matrices
    @property
    def V2M(self) -> np.ndarray:
        """(m, n) metabolite production coefficients."""
        return np.clip(self.S, 0, None)

    @property
    def M2V(self) -> np.ndarray:
        """(n, m) metabolite consumption coefficients."""
        return np.clip(-self.S, 0, None).T

    @property
    def S_int(self) -> np.ndarray:
        """(m, n) S with boundary columns and boundary-metabolite rows zeroed (Fig. S2)."""
        out = self.S.copy()
        out[:, self.boundary_mask] = 0.0
        rows = [self.metabolite_ids.index(mid) for mid in self.boundary_metabolites]
        out[rows, :] = 0.0
        return out

    @property
    def S_ext(self) -> np.ndarray:
        """(m, n) the boundary columns of S only (other columns zero)."""
        out = np.zeros_like(self.S)
        out[:, self.boundary_mask] = self.S[:, self.boundary_mask]
        return out

    def selection(self, split_ids: Sequence[str]) -> np.ndarray:
        """(len(split_ids), n) 0/1 matrix selecting the given columns."""
        P = np.zeros((len(split_ids), self.n))
        P[np.arange(len(split_ids)), self.indices(split_ids)] = 1.0
        return P

    @property
    def P_in(self) -> np.ndarray:
        """(n_in, n) selects the inflow columns of the medium exchanges (``self.in_ids``)."""
        return self.selection(self.in_ids)

    @property
    def P_out(self) -> np.ndarray:
        """(n_out, n) selects the measured columns (``self.measured_ids``)."""
        return self.selection(self.measured_ids)

    @property
    def c(self) -> np.ndarray:
        """(n,) objective vector: 1 at the biomass column."""
        c = np.zeros(self.n)
        c[self.biomass_index] = 1.0
        return c

    def tensor(self, name: str, device=None, dtype=None):
        """A matrix or vector of this network (``"S"``, ``"V2M"``, ``"P_in"``, ``"ub"``...) as a
        torch tensor on ``device`` (default CPU) with ``dtype`` (default float32)."""
        import torch

        value = getattr(self, name)
        return torch.as_tensor(
            np.asarray(value, dtype=float), dtype=dtype or torch.float32, device=device
        )

    def fingerprint(self) -> str:
        """sha256 of the split ids, metabolite ids and S: identifies the network a trained
        model belongs to."""
        h = hashlib.sha256()
        h.update("\n".join(self.reaction_ids).encode())
        h.update("\n".join(self.metabolite_ids).encode())
        h.update(np.ascontiguousarray(np.round(self.S, 9)).tobytes())
        return h.hexdigest()

    # ----------------------------------------------------------------- lift / fold
    def lift(self, net: Mapping[str, float] | pd.Series) -> np.ndarray:
        """Split a net flux vector of the original model (COBRApy ``solution.fluxes``) into
        the unidirectional (n,) vector."""
        net = pd.Series(net, dtype=float)
        missing = set(self.original_ids) - set(net.index)
        if missing:
            raise ValueError(f"net fluxes lack reactions {sorted(missing)[:5]}...")
        v = np.zeros(self.n)
        for rid, cols in self._rxn_cols.items():
            x = float(net[rid])
            for j, sign in cols:
                v[j] = max(sign * x, 0.0)
        return v

    def fold(self, v: np.ndarray) -> pd.Series:
        """Fold split fluxes (n,) or (batch, n) back to the original model's net fluxes
        (pd.Series, or DataFrame with one row per batch entry)."""
        v = np.asarray(v, dtype=float)
        if v.shape[-1] != self.n:
            raise ValueError(f"expected {self.n} split fluxes, got shape {v.shape}")
        F = np.zeros((self.n, len(self.original_ids)))
        pos = {rid: k for k, rid in enumerate(self.original_ids)}
        for rid, cols in self._rxn_cols.items():
            for j, sign in cols:
                F[j, pos[rid]] = sign
        out = v @ F
        if out.ndim == 1:
            return pd.Series(out, index=self.original_ids)
        return pd.DataFrame(out, columns=self.original_ids)

    # ----------------------------------------------------------------- media and solves
    def check_medium(self, medium: Mapping[str, float]) -> dict[str, float]:
        """Validate a medium ``{exchange_id: uptake upper bound}`` (mmol/gDW/h).

        Keys may be COBRApy exchange ids or split ``_i`` ids. Returns the medium with COBRApy
        ids. Raises ``ValueError`` naming an unknown id, a negative or non-finite bound.
        """
        out: dict[str, float] = {}
        for key, value in dict(medium).items():
            rid = self.exchange_id(key)
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"medium bound for {key!r} is not a number: {value!r}") from None
            if not math.isfinite(x):
                raise ValueError(f"medium bound for {key!r} is not finite: {value!r}")
            if x < 0:
                raise ValueError(
                    f"medium bound for {key!r} is negative ({x}); uptake bounds are >= 0 "
                    "(COBRApy's model.medium convention)"
                )
            out[rid] = x
        return out

    def medium_from_vector(self, x: Sequence[float]) -> dict[str, float]:
        """Medium dict from uptake bounds ordered as ``self.medium_ids`` (zeros dropped)."""
        x = np.asarray(x, dtype=float)
        if x.shape != (len(self.medium_ids),):
            raise ValueError(f"expected {len(self.medium_ids)} uptake bounds, got {x.shape}")
        return {e: float(b) for e, b in zip(self.medium_ids, x, strict=True) if b > 0}

    def solve(self, medium: Mapping[str, float] | None = None, method: str = "pfba") -> FluxResult:
        """Reference solve with COBRApy (the model's solver, GLPK by default).

        Parameters
        ----------
        medium : ``{exchange_id: uptake bound}``; exchanges not listed get uptake 0 (COBRApy's
            ``model.medium`` semantics). ``None`` keeps the model's own medium.
        method : ``"fba"`` (maximise biomass) or ``"pfba"`` (then minimise total flux).

        Returns a :class:`FluxResult`; an infeasible medium or one that does not grow gives a
        result with ``status`` "infeasible"/"no_growth", never an exception from the solver.
        """
        if method not in ("fba", "pfba"):
            raise ValueError(f"method must be 'fba' or 'pfba', got {method!r}")
        with self.model as model:
            if medium is not None:
                model.medium = self.check_medium(medium)
            return self._solve_current(model, method)

    def _solve_current(self, model: cobra.Model, method: str) -> FluxResult:
        model.objective = self.biomass_reaction
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # status is reported in the result
            sol = model.optimize()
        if sol.status != "optimal":
            return FluxResult(status=str(sol.status), growth=0.0)
        growth = float(sol.objective_value)
        if growth < GROWTH_THRESHOLD:
            return FluxResult(status="no_growth", growth=growth)
        if method == "pfba":
            try:
                sol = cobra.flux_analysis.pfba(model, fraction_of_optimum=1.0)
            except cobra.exceptions.OptimizationError as err:
                return FluxResult(status=f"pfba_failed: {err}", growth=growth)
        net = sol.fluxes.copy()
        v = self.lift(net)
        v[v < FLUX_ZERO] = 0.0
        return FluxResult(status="optimal", growth=float(net[self.biomass_reaction]), v=v, net=net)

    def __repr__(self) -> str:
        return (
            f"MetabolicNetwork({self.name!r}: {self.n} split fluxes from "
            f"{len(self.original_ids)} reactions, {self.m} metabolites, "
            f"{len(self.medium_ids)} medium exchanges, biomass {self.biomass_id!r})"
        )
