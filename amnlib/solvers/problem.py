"""The batched FBA linear programme and the report every solver returns.

All solvers of :mod:`amnlib.solvers` work on the unidirectional network of
:class:`~amnlib.network.MetabolicNetwork` (all split fluxes ``v >= 0``, mmol gDW^-1 h^-1; the
biomass flux is the growth rate, h^-1) and on a batch of media: tensors are ``(batch, n)``,
device and dtype follow the inputs.

The linear programme (FBA) is written once, as :class:`LPProblem`::

    maximise    c^T v                    (c = biomass indicator, optionally - eps * 1 for pFBA)
    subject to  A v = b                  (A: independent rows of the constraints below)
                lb <= v <= ub            (per medium)

* **UB** (upper bounds, paper Fig. 2B): ``A = S`` (mass balance of all metabolites, ``b = 0``),
  the medium's uptake columns ``_i`` are bounded above by the medium's uptake bounds, every other
  column by the network's ``ub``; ``lb`` keeps ATPM's 8.39.
* **EB** (exact bounds, paper Fig. 2A): the uptake fluxes are known exactly. ``A`` stacks
  ``S`` and the rows selecting the uptake columns, ``b = [0; v_in]``, which is the paper's
  ``S V = b`` with ``b = V2M V0`` written for all split columns.

``A`` must have independent rows for ``(A A^T)^-1`` (the paper brings ``S_int`` to row echelon
form); :func:`independent_rows` keeps a maximal independent set of rows (QR with pivoting).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from amnlib.network import MetabolicNetwork

__all__ = [
    "LPProblem", "MediaLike", "SolverReport", "fba_problem", "independent_rows", "uptake_matrix",
]

MediaLike = Tensor | np.ndarray | Sequence[Mapping[str, float]] | Mapping[str, float]


# --------------------------------------------------------------------------------------------
# the problem
# --------------------------------------------------------------------------------------------
@dataclass
class LPProblem:
    """A batch of FBA linear programmes ``max c^T v  s.t.  A v = b,  lb <= v <= ub``.

    Attributes
    ----------
    A : (p, n) independent constraint rows, shared by the batch.
    b : (batch, p) right-hand sides (mmol gDW^-1 h^-1).
    lb, ub : (batch, n) flux bounds (mmol gDW^-1 h^-1; ``ub`` may hold 1000 for "unbounded").
    c : (n,) objective (maximised).
    mode : "UB" or "EB".
    biomass_index : column of the growth rate.
    reaction_ids : the n split ids (for messages).
    rows : which rows of ``[S; E]`` were kept in ``A``.
    """

    A: Tensor
    b: Tensor
    lb: Tensor
    ub: Tensor
    c: Tensor
    mode: str
    biomass_index: int
    reaction_ids: list[str] = field(repr=False)
    rows: list[int] = field(default_factory=list, repr=False)

    @property
    def batch(self) -> int:
        return int(self.b.shape[0])

    @property
    def n(self) -> int:
        return int(self.A.shape[1])

    def violation(self, v: Tensor) -> Tensor:
        """(batch,) largest absolute violation of ``A v = b`` and of the bounds (mmol/gDW/h)."""
        eq = (v @ self.A.T - self.b).abs().amax(dim=1)
        box = torch.maximum(torch.relu(v - self.ub), torch.relu(self.lb - v)).amax(dim=1)
        return torch.maximum(eq, box)

    def objective(self, v: Tensor) -> Tensor:
        """(batch,) ``c^T v``."""
        return v @ self.c


def independent_rows(A: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Indices of a maximal set of linearly independent rows of ``A`` (p x n), in their
    original order (QR with column pivoting of ``A^T``)."""
    from scipy.linalg import qr

    A = np.asarray(A, dtype=float)
    if A.size == 0:
        return np.arange(0)
    _, R, piv = qr(A.T, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int((diag > tol * max(diag.max(), 1.0)).sum())
    return np.sort(piv[:rank])


def _media_tensor(
    network: MetabolicNetwork, media: MediaLike, device=None, dtype=None
) -> Tensor:
    """Uptake values ``(batch, n_in)`` ordered as ``network.in_ids`` from a tensor/array or a
    (list of) COBRApy-style medium dicts. Raises ``ValueError`` on shape, NaN or sign errors."""
    n_in = len(network.in_ids)
    if isinstance(media, Mapping):
        media = [media]
    if isinstance(media, Sequence) and not isinstance(media, (Tensor, np.ndarray)):
        if len(media) == 0:
            raise ValueError("no media given (empty list)")
        rows = np.zeros((len(media), n_in))
        pos = {e: k for k, e in enumerate(network.medium_ids)}
        for i, medium in enumerate(media):
            for ex, value in network.check_medium(medium).items():
                if ex not in pos:
                    raise ValueError(
                        f"medium {i}: exchange {ex!r} is not one of the network's medium "
                        f"exchanges ({len(pos)} ids in network.medium_ids)"
                    )
                rows[i, pos[ex]] = value
        media = rows
    x = torch.as_tensor(media, device=device)
    if dtype is not None or not x.is_floating_point():
        x = x.to(dtype or torch.get_default_dtype())
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(
            f"uptake bounds must have shape (batch, {n_in}) (columns network.in_ids), "
            f"got {tuple(x.shape)}"
        )
    bad = ~torch.isfinite(x)
    if bad.any():
        i, j = (int(t) for t in bad.nonzero()[0])
        raise ValueError(
            f"uptake bound of {network.in_ids[j]!r} in medium {i} is {float(x[i, j])}; "
            "bounds must be finite numbers >= 0"
        )
    neg = x < 0
    if neg.any():
        i, j = (int(t) for t in neg.nonzero()[0])
        raise ValueError(
            f"uptake bound of {network.in_ids[j]!r} in medium {i} is negative "
            f"({float(x[i, j])}); uptake bounds are >= 0"
        )
    return x


def fba_problem(
    network: MetabolicNetwork,
    media: MediaLike,
    mode: str = "UB",
    objective: str | Tensor | np.ndarray | None = "biomass",
    parsimony: float = 0.0,
    device=None,
    dtype=None,
    reduce_rows: bool | Sequence[int] = True,
) -> LPProblem:
    """Build the batched FBA problem of ``network`` for a batch of media.

    Parameters
    ----------
    media : ``(batch, n_in)`` tensor/array ordered as ``network.in_ids`` or a list of medium
        dicts ``{exchange_id: value}``. For ``mode="UB"`` the values are uptake upper bounds;
        for ``"EB"`` they are the exact uptake fluxes (e.g. taken from a pFBA solution).
        Exchanges of ``network.medium_ids`` not given get 0.
    mode : ``"UB"`` (upper bounds, the general FBA problem) or ``"EB"`` (exact uptakes).
    objective : ``"biomass"`` (``c`` = growth indicator), ``None`` (``c = 0``, feasibility only)
        or an ``(n,)`` vector.
    parsimony : ``eps >= 0``: maximise ``c^T v - eps * sum(v)``; a small ``eps`` (1e-4) picks
        the pFBA (least total flux) optimum among the optimal fluxes.
    device, dtype : default: those of ``media`` when it is a tensor, else CPU / float32.
    reduce_rows : keep only independent rows of ``A`` (needed by the RNN solvers for
        ``(A A^T)^-1``; PDHG does not need it, and for genome-scale models the QR costs
        minutes, so :func:`fast_fba` only drops all-zero rows). A sequence of row indices
        (``problem.rows`` of an earlier call with the same mode) skips the QR.

    Returns an :class:`LPProblem` with ``batch`` rows.
    """
    mode = mode.upper()
    if mode not in ("UB", "EB"):
        raise ValueError(f"mode must be 'UB' or 'EB', got {mode!r}")
    if isinstance(media, Tensor):
        device = device or media.device
        dtype = dtype or (media.dtype if media.is_floating_point() else None)
    dtype = dtype or torch.float32
    x = _media_tensor(network, media, device=device, dtype=dtype)
    device = x.device
    batch = x.shape[0]
    n = network.n
    in_cols = torch.as_tensor(network.indices(network.in_ids), device=device)
    lb = network.tensor("lb", device, dtype).expand(batch, n).clone()
    ub = network.tensor("ub", device, dtype).expand(batch, n).clone()
    uptake_cols = [j for j, col in enumerate(network.columns) if col.kind == "in"]
    S = np.asarray(network.S, dtype=float)
    if mode == "UB":
        # every uptake column outside the medium list is closed; medium ones get their bound
        ub[:, uptake_cols] = 0.0
        ub[:, in_cols] = x
        A_full, b_full = S, torch.zeros(batch, network.m, device=device, dtype=dtype)
    else:
        # the uptakes are fixed by the rows E v = v_in; their bounds must allow those values
        # (an uptake closed in the network's default medium has ub = 0)
        ub[:, uptake_cols] = 0.0
        ub[:, in_cols] = x
        E = np.zeros((len(uptake_cols), n))
        E[np.arange(len(uptake_cols)), uptake_cols] = 1.0
        v_in = torch.zeros(batch, n, device=device, dtype=dtype)
        v_in[:, in_cols] = x
        A_full = np.vstack([S, E])
        b_full = torch.cat(
            [torch.zeros(batch, network.m, device=device, dtype=dtype), v_in[:, uptake_cols]],
            dim=1,
        )
    if not isinstance(reduce_rows, bool):
        rows = np.asarray(reduce_rows, dtype=int)
    elif reduce_rows:
        rows = independent_rows(A_full)
    else:
        rows = np.flatnonzero(np.abs(A_full).sum(axis=1) > 0)
    A = torch.as_tensor(A_full[rows], device=device, dtype=dtype)
    b = b_full[:, torch.as_tensor(rows, device=device)]
    if objective is None:
        c = torch.zeros(n, device=device, dtype=dtype)
    elif isinstance(objective, str):
        if objective != "biomass":
            raise ValueError(f"objective must be 'biomass', None or a vector, got {objective!r}")
        c = network.tensor("c", device, dtype)
    else:
        c = torch.as_tensor(objective, device=device, dtype=dtype)
        if c.shape != (n,):
            raise ValueError(f"objective vector must have shape ({n},), got {tuple(c.shape)}")
    if parsimony < 0 or not math.isfinite(parsimony):
        raise ValueError(f"parsimony must be a finite number >= 0, got {parsimony}")
    if parsimony:
        c = c - parsimony
    return LPProblem(
        A=A, b=b, lb=lb, ub=ub, c=c, mode=mode,
        biomass_index=network.biomass_index, reaction_ids=list(network.reaction_ids),
        rows=[int(r) for r in rows],
    )


def uptake_matrix(network: MetabolicNetwork, X: np.ndarray, x_ids: Sequence[str]) -> np.ndarray:
    """Reorder uptake values ``X (batch, len(x_ids))`` (e.g. a training set's ``ts.X`` with
    ``ts.x_ids``) into ``(batch, n_in)`` columns ``network.in_ids`` (missing ones are 0)."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(x_ids):
        raise ValueError(f"X must have shape (batch, {len(x_ids)}), got {X.shape}")
    pos = {e: k for k, e in enumerate(network.in_ids)}
    cols = []
    for xid in x_ids:
        uid = network.uptake_id(xid)
        if uid not in pos:
            raise ValueError(f"{xid!r} is not one of the network's medium uptakes (in_ids)")
        cols.append(pos[uid])
    out = np.zeros((X.shape[0], len(network.in_ids)))
    out[:, cols] = X
    return out


# --------------------------------------------------------------------------------------------
# the convergence report
# --------------------------------------------------------------------------------------------
@dataclass
class SolverReport:
    """What a solver returns for a batch of media.

    Attributes
    ----------
    method : "RNN-EB", "RNN-UB", "PDHG-UB", ...
    v : (batch, n) split fluxes (mmol gDW^-1 h^-1), differentiable w.r.t. the inputs.
    growth : (batch,) biomass flux (h^-1).
    objective : (batch,) ``c^T v`` of the problem (with the parsimony term if any).
    violation : (batch,) largest violation of ``A v = b`` and of the bounds (mmol gDW^-1 h^-1).
    converged : (batch,) bool; False for media that did not meet the tolerance (infeasible
        media, e.g. without a carbon source for ATPM's 8.39, never converge).
    iterations : iterations run.
    seconds : wall time.
    dual : (batch, p) shadow prices of ``A v = b`` (d objective / d b) when the solver has them.
    bound_dual : (batch, n) d objective / d ub (>= 0) when the solver has them.
    history : ``{iteration: (batch, n) fluxes}`` snapshots taken at ``record_at``.
    infeasible : (batch,) bool, media proven infeasible (PDHG: a dual ray certifies that no
        flux vector within ``INFEASIBLE_BOX`` meets the constraints); ``None`` for solvers
        that cannot tell.
    """

    method: str
    v: Tensor
    growth: Tensor
    objective: Tensor
    violation: Tensor
    converged: Tensor
    iterations: int
    seconds: float
    dual: Tensor | None = None
    bound_dual: Tensor | None = None
    history: dict[int, Tensor] = field(default_factory=dict, repr=False)
    infeasible: Tensor | None = None

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    @property
    def status(self) -> list[str]:
        """Per medium: ``"converged"``, ``"infeasible"`` (proven) or ``"not converged"``."""
        inf = self.infeasible if self.infeasible is not None else torch.zeros_like(self.converged)
        return ["converged" if c else "infeasible" if i else "not converged"
                for c, i in zip(self.converged.tolist(), inf.tolist(), strict=True)]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (iterations, seconds, worst violation, converged count)."""
        return {
            "method": self.method,
            "iterations": int(self.iterations),
            "seconds": float(self.seconds),
            "max_violation": float(self.violation.max()),
            "converged": int(self.converged.sum()),
            "infeasible": None if self.infeasible is None else int(self.infeasible.sum()),
            "batch": int(self.converged.numel()),
        }


def _finish(
    method: str,
    problem: LPProblem,
    v: Tensor,
    converged: Tensor,
    iterations: int,
    t0: float,
    tol: float,
    **extra: Any,
) -> SolverReport:
    finite = torch.isfinite(v).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        warnings.warn(
            f"{method}: non-finite fluxes for media {bad[:10]} (diverged; reduce the step size); "
            "they are reported as not converged",
            RuntimeWarning,
            stacklevel=3,
        )
    with torch.no_grad():
        violation = problem.violation(v)
        scale = 1.0 + problem.b.abs().amax(dim=1)
        ok = converged & finite & (violation <= tol * 10 * scale)
    return SolverReport(
        method=method,
        v=v,
        growth=v[:, problem.biomass_index],
        objective=problem.objective(v),
        violation=violation,
        converged=ok,
        iterations=iterations,
        seconds=time.perf_counter() - t0,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# shared by the solvers
# --------------------------------------------------------------------------------------------
def _check_state(x: Tensor, shape: tuple[int, int], name: str, like: Tensor) -> Tensor:
    x = torch.as_tensor(x, device=like.device, dtype=like.dtype)
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


@contextmanager
def _cpu_settings(x: Tensor, threads: int | None = None):
    """While a solver runs on CPU: flush subnormal floats to zero (multipliers of inactive bounds
    decay geometrically towards 0 and subnormals make arithmetic ~10x slower) and set the
    number of threads: ``threads``, or by default one for small problems (intra-op threading
    costs more than it gains at n ~ 100)."""
    if x.device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    if threads is None:
        # up to ~1e6 elements an element-wise op takes < 1 ms on one core; a second thread
        # gains ~1.3x on a quiet machine (iJO1366, 100 media) but, on a busy one, waiting for
        # it costs 10-100x
        small = x.numel() * x.shape[-1] < 5e7 or x.numel() < 1e6
        threads = 1 if small else before
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    supported = torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
        torch.set_num_threads(before)
