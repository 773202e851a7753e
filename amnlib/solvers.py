"""Differentiable LP/QP solvers for flux balance analysis (paper Fig. 2, Methods "Solving LP/QP
with RNN methods"), batched over media.

Every solver here works on the unidirectional network of :class:`~amnlib.network.MetabolicNetwork`
(all split fluxes ``v >= 0``, mmol gDW^-1 h^-1; the biomass flux is the growth rate, h^-1) and on a
batch of media: tensors are ``(batch, n)``, device and dtype follow the inputs.

The linear programme (FBA) is written once, as :class:`LPProblem`::

    maximise    c^T v                    (c = biomass indicator, optionally - eps * 1 for pFBA)
    subject to  A v = b                  (A: independent rows of the constraints below)
                lb <= v <= ub            (per medium)

* **RNN-UB** (upper bounds, paper Fig. 2B): ``A = S`` (mass balance of all metabolites, ``b = 0``),
  the medium's uptake columns ``_i`` are bounded above by the medium's uptake bounds, every other
  column by the network's ``ub``; ``lb`` keeps ATPM's 8.39.
* **RNN-EB** (exact bounds, paper Fig. 2A): the uptake fluxes are known exactly. ``A`` stacks
  ``S`` and the rows selecting the uptake columns, ``b = [0; v_in]``, which is the paper's
  ``S V = b`` with ``b = V2M V0`` written for all split columns.

``A`` must have independent rows for ``(A A^T)^-1`` (the paper brings ``S_int`` to row echelon
form); :func:`independent_rows` keeps a maximal independent set of rows (QR with pivoting).

Three solvers share that problem:

* :func:`solve_rnn` -- the recurrent (projection) neural network of Yang et al. (2014), used by the
  published code for both EB and UB: with ``Q = A^T (A A^T)^-1``, ``P = Q A`` and the bounds
  written as ``G v <= h`` (``G = [I; -I]``, ``h = [ub; -lb]``) it iterates, for
  ``min c'^T v`` with ``c' = -k c``::

      R  = ReLU(y + G v - h)
      dv = -(I - P)(G^T R + c') - Q (A v - b)
      dy = (R - y) / 2
      v <- v + dt dv,   y <- y + dt dy

  with the paper's steps (``dt = 3e-4`` for EB, ``5e-2`` for UB), objective scale ``k = 100``,
  and ``dt *= 0.7`` every 10^4 iterations when the objective stopped improving. Because ``G`` is
  a box, ``G^T R`` is element-wise and one iteration costs a single ``(batch, n) x (n, n)``
  product. (The preprint cites Ghasabi-Oskoei & Mahdavi-Amiri (2006) for EB; like the published
  code we solve EB with the Yang dynamics, ``G`` holding the positivity rows.)
* :func:`solve_pdhg` -- beyond the paper: restarted (Halpern) primal-dual hybrid gradient
  (PDLP-style) with Pock-Chambolle diagonal preconditioning, adaptive restarts and primal-weight
  updates, after exact presolve, twin merging and lumping of linear pathways
  (:mod:`amnlib.lumping`). It reaches < 1% growth error in a few thousand iterations instead of
  >= 4 x 10^5 on E. coli core and solves genome-scale models (iJO1366, salmonella); on a CPU
  it is slower than a tuned COBRApy loop (``benchmarks/results/solvers.json``).
* :class:`QPLayer` and :class:`LPLayer` -- the variants used inside AMNs (published AMN-QP and
  AMN-LP): a few steps of gradient descent with momentum on the constraint losses, and the Yang
  dynamics with a learnable step, both starting from a trainable initial guess ``V0``; ``c = 0``
  by default, or a biomass objective.

All solvers are plain torch code: gradients flow through the iterations (autograd), so the growth
rate returned is differentiable with respect to the uptake bounds.
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
from torch import Tensor, nn

from amnlib import papers as _papers
from amnlib.lumping import lump as lump_rows
from amnlib.network import MetabolicNetwork

__all__ = [
    "LPProblem",
    "SolverReport",
    "fba_problem",
    "independent_rows",
    "solve_rnn",
    "solve_pdhg",
    "presolve",
    "twin_columns",
    "reduction_sizes",
    "rnn_eb",
    "rnn_ub",
    "fast_fba",
    "QPLayer",
    "LPLayer",
    "PAPER_DT",
    "run",
]

#: Preprint step sizes of the recurrent solvers, step decay (dt *= PAPER_DECAY every
#: PAPER_DECAY_EVERY iterations without progress), the published code's objective scale
#: (c' = -k c): sources in amnlib.papers.
PAPER_DT = {"EB": _papers.value("fig2.dt_eb"), "UB": _papers.value("fig2.dt_ub")}
PAPER_DECAY = _papers.value("fig2.decay")
PAPER_DECAY_EVERY = _papers.value("fig2.decay_every")
PAPER_K = _papers.value("fig2.objective_scale")
#: Absolute floor (objective units, h^-1) of PDHG's relative objective tolerance, in float64.
OBJECTIVE_FLOOR = 0.01
#: The same in float32: near zero growth its round-off (fluxes ~100 x 1e-7 per row) cannot
#: reach tol x 0.01 = 1e-5, so zero-growth media (an essential reaction knocked out) never
#: stopped; 0.1 allows 1e-4 h^-1 there and ~0.3% of a growth rate of 0.1 h^-1.
OBJECTIVE_FLOOR_FLOAT32 = 0.1
#: PDHG's default iteration cap: ITERATIONS_PER_SIZE x (rows + columns) of the reduced problem,
#: at least MIN_ITERATIONS (every medium stops as soon as it meets the tolerance).
ITERATIONS_PER_SIZE = 100
MIN_ITERATIONS = 10_000
#: Flux magnitude (mmol gDW^-1 h^-1) beyond which a medium counts as infeasible: a dual ray
#: proving that no flux vector with |v| <= INFEASIBLE_BOX meets the constraints certifies it.
INFEASIBLE_BOX = 1e4
#: Iterations the preprint needs for a satisfactory flux R^2 on E. coli core (Fig. 2D).
PAPER_ITERATIONS = _papers.value("fig2.iterations_needed")

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
# RNN-EB / RNN-UB: the Yang et al. (2014) dynamics
# --------------------------------------------------------------------------------------------
def _projector(A: Tensor) -> tuple[Tensor, Tensor]:
    """``Q = A^T (A A^T)^-1`` (n x p) and ``P = Q A`` (n x n), computed in float64 (the
    pseudo-inverse, should ``A`` still have dependent rows)."""
    A64 = A.detach().to(torch.float64)
    Q = torch.linalg.pinv(A64)
    P = Q @ A64
    return Q.to(A.dtype), P.to(A.dtype)


def solve_rnn(
    problem: LPProblem,
    iterations: int = PAPER_ITERATIONS,
    dt: float | None = None,
    k: float = PAPER_K,
    decay: float = PAPER_DECAY,
    decay_every: int = PAPER_DECAY_EVERY,
    v0: Tensor | None = None,
    y0: Tensor | None = None,
    record_at: Sequence[int] = (),
    tol: float = 1e-3,
) -> SolverReport:
    """RNN-EB / RNN-UB: integrate the Yang et al. (2014) projection network (module docstring).

    Parameters
    ----------
    problem : from :func:`fba_problem` (its ``mode`` picks the paper's step).
    iterations : number of updates (paper: >= 4 x 10^5 on E. coli core).
    dt : step; default ``PAPER_DT[problem.mode]`` (3e-4 EB, 5e-2 UB).
    k : objective scale (published code: 100), ``c' = -k c``.
    decay, decay_every : every ``decay_every`` iterations, media whose objective did not
        improve get ``dt *= decay`` (paper: 0.7 every 10^4).
    v0 : (batch, n) initial fluxes (default 0); y0 : (batch, 2n) initial bound multipliers.
    record_at : iterations at which to store a snapshot of the fluxes in ``history``.
    tol : a medium counts as converged when its constraint violation is below
        ``10 tol (1 + max|b|)`` and its objective changed by less than ``tol`` (relative) over
        the last ``decay_every`` iterations.

    Returns a :class:`SolverReport` (``bound_dual`` = the multipliers of the upper bounds / k).
    Gradients flow through every iteration: keep ``iterations`` small when inputs require grad.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    t0 = time.perf_counter()
    A, b, lb, ub = problem.A, problem.b, problem.lb, problem.ub
    batch, n = lb.shape
    dt0 = PAPER_DT[problem.mode] if dt is None else float(dt)
    if not dt0 > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    Q, P = _projector(A)
    q = b @ Q.T  # (batch, n): Q b
    cp = -k * problem.c  # minimise c'^T v
    v = torch.zeros_like(lb) if v0 is None else _check_state(v0, (batch, n), "v0", lb)
    y = (
        torch.zeros(batch, 2 * n, device=lb.device, dtype=lb.dtype)
        if y0 is None
        else _check_state(y0, (batch, 2 * n), "y0", lb)
    )
    h = torch.cat([ub, -lb], dim=1)
    step = torch.full((batch, 1), dt0, device=lb.device, dtype=lb.dtype)
    best = torch.full((batch,), -math.inf, device=lb.device, dtype=lb.dtype)
    change = torch.full((batch,), math.inf, device=lb.device, dtype=lb.dtype)
    record = {int(r) for r in record_at if 0 <= int(r) <= iterations}
    history: dict[int, Tensor] = {}
    stops = set(record) | {iterations}
    if decay_every:
        stops |= set(range(decay_every, iterations + 1, decay_every))
    done = 0
    for stop in sorted(stops):
        if stop > done:
            with _cpu_settings(v):
                v, y = _yang_steps(v, y, P, q, h, cp, step, stop - done)
            done = stop
        if done in record:
            history[done] = v.detach().clone()
        if decay_every and done and done % decay_every == 0:
            with torch.no_grad():
                obj = v @ problem.c
                change = (obj - best).abs() / (1e-6 + obj.abs())
                stalled = obj <= best
                step = torch.where(stalled[:, None], step * decay, step)
                best = torch.maximum(best, obj)
    yu = y[:, :n]
    converged = change <= tol
    return _finish(
        f"RNN-{problem.mode}", problem, v, converged, iterations, t0, tol,
        bound_dual=(yu / k).detach(), history=history,
    )


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


def _yang_steps_py(
    v: Tensor, y: Tensor, P: Tensor, q: Tensor, h: Tensor, cp: Tensor, step: Tensor, n_steps: int
) -> tuple[Tensor, Tensor]:
    """``n_steps`` Euler steps of the Yang dynamics with ``G = [I; -I]`` (TorchScript loop)."""
    n = v.shape[1]
    for _ in range(n_steps):
        r = torch.relu(y + torch.cat([v, -v], 1) - h)
        g = r[:, :n] - r[:, n:] + cp
        v = v + step * torch.addmm(q - g, g - v, P)  # -(I - P) g - (P v - Q b)
        y = y + (0.5 * step) * (r - y)
    return v, y


with warnings.catch_warnings():  # TorchScript removes the Python overhead of the long loop
    warnings.simplefilter("ignore", DeprecationWarning)
    _yang_steps = torch.jit.script(_yang_steps_py)


def _check_state(x: Tensor, shape: tuple[int, int], name: str, like: Tensor) -> Tensor:
    x = torch.as_tensor(x, device=like.device, dtype=like.dtype)
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


# --------------------------------------------------------------------------------------------
# beyond the paper: restarted, preconditioned PDHG
# --------------------------------------------------------------------------------------------
def _equilibrate(A: Tensor, ruiz_iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Diagonal scalings ``(d_row (p,), d_col (n,))`` so that ``diag(d_row) A diag(d_col)`` is
    well conditioned: Ruiz equilibration (infinity norms) then Pock-Chambolle (alpha = 1)."""
    M = A.detach().to(torch.float64).abs()
    dr = torch.ones(M.shape[0], dtype=M.dtype, device=M.device)
    dc = torch.ones(M.shape[1], dtype=M.dtype, device=M.device)
    def norm_or_one(t: Tensor) -> Tensor:  # an empty row or column keeps scale 1
        return torch.where(t > 0, t, torch.ones_like(t))

    for _ in range(ruiz_iterations):
        cur = dr[:, None] * M * dc[None, :]
        dr = dr / norm_or_one(cur.amax(dim=1)).sqrt()
        dc = dc / norm_or_one(cur.amax(dim=0)).sqrt()
    cur = dr[:, None] * M * dc[None, :]
    dr = dr / norm_or_one(cur.sum(dim=1)).sqrt()
    dc = dc / norm_or_one(cur.sum(dim=0)).sqrt()
    return dr, dc


def _spectral_norm(M: Tensor, iterations: int = 300) -> float:
    """Largest singular value of ``M`` by power iteration on ``M^T M`` (1% safety margin)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(M.shape[1], 1, dtype=M.dtype, generator=gen).to(M.device)
    MT = M.t().to_sparse_csr() if M.layout == torch.sparse_csr else M.T
    sigma = 0.0
    for _ in range(iterations):
        z = MT @ (M @ z)
        nz = float(z.norm())
        if nz == 0:
            return 1.0
        z = z / nz
        sigma = math.sqrt(nz)
    return 1.01 * sigma


def presolve(problem: LPProblem) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows of ``problem`` that can carry non-zero values, shared by the batch.

    Exact reductions only (numpy, no LP solved):

    * a column with ``lb = ub = 0`` in every medium (an uptake outside the media) is fixed at 0;
    * a row with ``b = 0`` whose remaining columns all have coefficients of one sign and
      ``lb = 0`` (a dead-end metabolite: only produced, or only consumed) forces those
      columns to 0, and the row goes;
    * rows left without columns (and ``b = 0``) go;

    repeated until nothing changes. Returns ``(cols, rows)``: sorted indices to keep.
    """
    A = problem.A.detach().cpu().numpy()
    lb = problem.lb.detach().cpu().numpy()
    ub = problem.ub.detach().cpu().numpy()
    b_zero = (problem.b.detach().cpu().numpy() == 0).all(axis=0)  # (p,)
    lb_zero = (lb == 0).all(axis=0)  # (n,)
    col = ~(lb_zero & (ub <= 0).all(axis=0))
    row = np.ones(A.shape[0], dtype=bool)
    pos, neg = A > 0, A < 0
    while True:
        has_pos = (pos & col).any(axis=1)
        has_neg = (neg & col).any(axis=1)
        pinned = ((pos | neg) & col & ~lb_zero).any(axis=1)  # a column forced above 0
        free = b_zero & row
        dead = free & (has_pos ^ has_neg) & ~pinned
        empty = free & ~has_pos & ~has_neg
        if not (dead | empty).any():
            break
        col &= ~((pos | neg)[dead].any(axis=0))
        row &= ~(dead | empty)
    return np.flatnonzero(col), np.flatnonzero(row)


def _halpern_block(
    x: Tensor, y: Tensor, x0: Tensor, y0: Tensor, count: Tensor, steps: int,
    tau: Tensor, sigma: Tensor, cs: Tensor, bs: Tensor, ls: Tensor, us: Tensor,
    col_a: Any, col_at: Any, reflection: float, record: set[int],
) -> tuple[Any, ...]:
    """``steps`` reflected Halpern PDHG iterations on ``(batch, n)`` / ``(batch, p)`` states,
    run in column layout ``(n, batch)`` where the sparse products need no transposes (about
    twice as fast at genome scale). Returns ``x, y`` (Halpern iterates), ``xT, yT`` (last PDHG
    step) and ``x_prev, y_prev`` (the iterates before it), all ``(batch, .)``, and
    ``{k: xT}`` (detached) for the steps ``k`` (1-based) listed in ``record``."""
    t = [z.T.contiguous() for z in (x, y, x0, y0, bs, ls, us)]
    xc, yc, x0c, y0c, bsc, lsc, usc = t
    tau_c, sigma_c, csc = tau.T, sigma.T, cs[:, None]
    xn = yn = xp = yp = xc
    snaps: dict[int, Tensor] = {}
    for k in range(steps):
        lam = ((count + k + 1) / (count + k + 2)).T  # (1, batch)
        xn = torch.clamp(torch.addcmul(xc, tau_c, col_at(yc) - csc), lsc, usc)
        xe = torch.lerp(xc, xn, 2.0)  # 2 x+ - x
        yn = torch.addcmul(yc, sigma_c, bsc - col_a(xe))
        if reflection == 1.0:
            xr, yr = xe, torch.lerp(yc, yn, 2.0)
        else:
            xr, yr = torch.lerp(xc, xn, 1.0 + reflection), torch.lerp(yc, yn, 1.0 + reflection)
        xp, yp = xc, yc
        xc, yc = torch.lerp(x0c, xr, lam), torch.lerp(y0c, yr, lam)
        if k + 1 in record:
            snaps[k + 1] = xn.T.detach().clone()
    return xc.T, yc.T, xn.T, yn.T, xp.T, yp.T, snaps


def solve_pdhg(
    problem: LPProblem,
    max_iterations: int | None = None,
    tol: float = 1e-3,
    check_every: int = 64,
    v0: Tensor | None = None,
    record_at: Sequence[int] = (),
    primal_weight: float | None = None,
    infinite_bound: float = 1000.0,
    scheme: str = "halpern",
    reflection: float = 1.0,
    sparse: bool | None = None,
    compact: bool = True,
    reduce: bool = True,
    artificial_restart: float = 0.2,
    lump: bool = True,
    threads: int | None = None,
    ruiz_iterations: int = 4,
    nonconverged: str = "nan",
) -> SolverReport:
    """Restarted primal-dual hybrid gradient with diagonal preconditioning (PDLP-style).

    Solves ``min c'^T v`` (``c' = -c``) s.t. ``A v = b``, ``lb <= v <= ub`` for the batch, each
    medium with its own primal weight and restarts:

    * preconditioning: ``ruiz_iterations`` sweeps of Ruiz equilibration of ``A`` then
      Pock-Chambolle (alpha = 1). PDLP runs 10; the default 4 (none: neither iJO1366's nor
      salmonella's own medium converged in 100,000 iterations; 4: 44,000 and 73,000);
    * iteration: ``x+ = proj_box(x - tau (c' - A^T y))``, ``y+ = y + sigma (b - A (2 x+ - x))``,
      ``tau = eta / w``, ``sigma = eta w``, ``eta = 0.95 / ||A||_2``;
    * every ``check_every`` iterations the KKT error (primal residual and duality gap, weighted
      by ``w``) of the current and of the averaged iterate is measured; a medium restarts from
      the better one on sufficient (0.2), necessary-without-progress (0.8) or artificial
      (``artificial_restart`` = 20% of the iterations so far; PDLP's 36% needs 23% more
      iterations on iJO1366, 20,500 vs 16,600 for 100 media) decay, and its primal weight
      ``w`` moves towards ``||dy|| / ||dx||`` (geometric mean with the old one);
    * a medium stops when ``||A v - b|| <= tol (1 + ||b||)``, the dual residual (reduced
      costs of the wrong sign on unbounded sides) ``<= tol (1 + ||c||)`` and both parts of the
      duality gap, the objective shift ``|y^T (A v - b)|`` and the complementarity slack of
      the bounds, are ``<= tol (floor + |primal| + |dual|)`` (floor 0.01 in float64, 0.1 in
      float32); the shift is summed without cancellation, ``sum_i |y_i (A v - b)_i|``. (The
      gap alone, with PDLP's floor of 1, let 1%-wrong growth rates of ~0.15 h^-1 through on
      iJO1366.) The dual residual stays an absolute test: at tol 1e-3 a knocked-out textbook
      variant stopped 2.7% below its optimum (reduced costs of the wrong sign on unbounded
      sides times the fluxes there; testing that product relative to the objective stopped
      iJO1366's own medium from converging in 100,000 iterations), so ask for tol 1e-4 when
      every medium must be within 1%.

    Media that meet the tolerance leave the batch (``compact=True``), so the stragglers run on
    a smaller batch. Returns a :class:`SolverReport` with ``dual`` (shadow prices of
    ``A v = b``, d growth / d b)
    and ``bound_dual`` (d growth / d ub). Infeasible media never meet the tolerance and come
    back with ``converged = False``. Gradients flow through the iterations (autograd).

    ``reduce=True`` first removes the columns and rows :func:`presolve` proves to be zero
    (uptakes outside the media, dead-end metabolites) and merges split twins
    (:func:`twin_columns`) into free variables: on iJO1366 3,524 -> 3,006 -> 2,359 columns.
    Without the merge, PDHG drifts along the zero-cost futile pairs ``v_for = v_rev = t``.
    ``lump=True`` then lumps linear pathways (:func:`amnlib.lumping.lump`: doubleton rows,
    singleton rows, free column singletons): iJO1366 goes from 1,615 x 2,359 to 646 x 1,394,
    each iteration costs 30% less and PDHG needs about half the iterations. Fluxes, shadow
    prices and bound multipliers are mapped back to the split columns.

    The initial primal weight is PDLP's ``||c|| / ||b||`` (1 where ``b = 0``, as in UB);
    ``threads`` sets the CPU threads (default: 1 for small problems, else torch's setting).

    ``max_iterations=None`` caps the iterations at :func:`default_iterations` of the reduced
    problem. A medium whose dual iterates trace a ray proving it infeasible leaves the batch
    with ``report.infeasible`` set. Media that neither converge nor are proven infeasible
    raise a ``RuntimeWarning`` naming them; with ``nonconverged="nan"`` (default) every
    failed medium (also the infeasible ones) gets NaN fluxes, growth and duals, with
    ``"keep"`` the last iterates (what unrolled gradients and convergence curves need).
    """
    if max_iterations is not None and max_iterations < 1:
        raise ValueError(
            f"max_iterations must be >= 1 (or None for the default), got {max_iterations}"
        )
    if nonconverged not in ("nan", "keep"):
        raise ValueError(f"nonconverged must be 'nan' or 'keep', got {nonconverged!r}")
    t0 = time.perf_counter()
    settings = dict(
        max_iterations=max_iterations, tol=tol, check_every=check_every,
        record_at=record_at, primal_weight=primal_weight, infinite_bound=infinite_bound,
        scheme=scheme, reflection=reflection, sparse=sparse, compact=compact,
        artificial_restart=artificial_restart, lump=lump, threads=threads,
        ruiz_iterations=ruiz_iterations,
    )
    if reduce:
        cols, rows = presolve(problem)
        rep = _solve_reduced(problem, cols, rows, v0, t0, settings)
    else:
        settings.pop("lump")
        rep = _pdhg(problem, v0, t0, **settings)
    return _flag_failures(rep, problem, nonconverged, tol)


def default_iterations(rows: int, columns: int) -> int:
    """PDHG's default iteration cap for a (reduced) problem of ``rows x columns``:
    ``max(MIN_ITERATIONS, ITERATIONS_PER_SIZE * (rows + columns))`` (textbook 10,000; iJO1366
    ~204,000; salmonella ~244,000). Media stop as soon as they meet the tolerance, so the cap
    only costs time for media that do not converge."""
    return max(MIN_ITERATIONS, ITERATIONS_PER_SIZE * (int(rows) + int(columns)))


def _flag_failures(
    rep: SolverReport, problem: LPProblem, nonconverged: str, tol: float
) -> SolverReport:
    """Non-converged media: a ``RuntimeWarning`` naming them, and (``nonconverged="nan"``)
    NaN fluxes, growth, objective and duals; certified infeasible media get NaN without a
    warning (``rep.infeasible`` says which). ``"keep"`` returns the last iterates."""
    failed = ~rep.converged
    infeasible = rep.infeasible if rep.infeasible is not None else torch.zeros_like(failed)
    unknown = failed & ~infeasible
    if bool(unknown.any()):
        idx = unknown.nonzero().flatten().tolist()
        shown = ", ".join(str(i) for i in idx[:20]) + (", ..." if len(idx) > 20 else "")
        what = "are NaN" if nonconverged == "nan" else "are the last iterates (may be wrong)"
        warnings.warn(
            f"{rep.method}: {len(idx)} of {failed.numel()} media did not converge in "
            f"{rep.iterations} iterations (tol {tol}): media [{shown}]; their growth and fluxes "
            f"{what}. Raise max_iterations or tol.",
            RuntimeWarning,
            stacklevel=3,
        )
    if nonconverged == "keep" or not bool(failed.any()):
        return rep
    m = failed[:, None]
    nan = float("nan")
    rep.v = torch.where(m, torch.full_like(rep.v, nan), rep.v)
    rep.growth = rep.v[:, problem.biomass_index]
    rep.objective = torch.where(failed, torch.full_like(rep.objective, nan), rep.objective)
    if rep.dual is not None:
        rep.dual = torch.where(m, torch.full_like(rep.dual, nan), rep.dual)
    if rep.bound_dual is not None:
        rep.bound_dual = torch.where(m, torch.full_like(rep.bound_dual, nan), rep.bound_dual)
    return rep


def _pdhg(
    problem: LPProblem,
    v0: Tensor | None,
    t0: float,
    max_iterations: int | None,
    tol: float,
    check_every: int,
    record_at: Sequence[int],
    primal_weight: float | None,
    infinite_bound: float,
    scheme: str,
    reflection: float,
    sparse: bool | None,
    compact: bool,
    artificial_restart: float,
    threads: int | None,
    ruiz_iterations: int,
) -> SolverReport:
    """:func:`solve_pdhg` on ``problem`` as given (no presolve, no lumping)."""
    if max_iterations is None:
        max_iterations = default_iterations(*problem.A.shape)
    A, b, lb, ub = problem.A, problem.b, problem.lb, problem.ub
    batch, n = lb.shape
    dtype, device = lb.dtype, lb.device
    bad = (lb > ub + 1e-9).any(dim=1)
    dr64, dc64 = _equilibrate(A, ruiz_iterations)
    As64 = dr64[:, None] * A.detach().to(torch.float64) * dc64[None, :]
    if sparse is None:
        sparse = n > 400 and float((As64 != 0).double().mean()) < 0.05
    eta = 0.95 / _spectral_norm(As64.to_sparse_csr() if sparse else As64)
    As, dr, dc = As64.to(dtype), dr64.to(dtype), dc64.to(dtype)
    if sparse:  # genome-scale: S has ~ 3 non-zeros per column
        As_csr, AsT_csr = As.to_sparse_csr(), As.T.contiguous().to_sparse_csr()

        def mul_a(xx: Tensor) -> Tensor:  # (batch, n) -> (batch, p): rows of A x
            return (As_csr @ xx.T).T

        def mul_at(yy: Tensor) -> Tensor:  # (batch, p) -> (batch, n): rows of A^T y
            return (AsT_csr @ yy.T).T

        def col_a(xc: Tensor) -> Tensor:  # (n, batch) -> (p, batch)
            return As_csr @ xc

        def col_at(yc: Tensor) -> Tensor:  # (p, batch) -> (n, batch)
            return AsT_csr @ yc
    else:
        AsT = As.T.contiguous()

        def col_a(xc: Tensor) -> Tensor:
            return As @ xc

        def col_at(yc: Tensor) -> Tensor:
            return AsT @ yc

        def mul_a(xx: Tensor) -> Tensor:
            return xx @ As.T

        def mul_at(yy: Tensor) -> Tensor:
            return yy @ As

    bs = b * dr  # (batch, p)
    cs = -problem.c * dc  # (n,)
    fin_l = lb > -infinite_bound  # merged reversible columns may have lb = -1000 (unbounded)
    ls = torch.where(fin_l, lb / dc, torch.full_like(lb, -math.inf))
    ls_fin = torch.where(fin_l, ls, torch.zeros_like(ls))
    fin_u = ub < infinite_bound  # COBRA's 1000 means "unbounded"
    us = torch.where(fin_u, ub / dc, torch.full_like(ub, math.inf))
    us_fin = torch.where(fin_u, us, torch.zeros_like(us))
    bnorm = b.norm(dim=1)
    if primal_weight is None:
        # PDLP: ||c|| / ||b||, or 1 where b = 0 (UB); the bounds' norm as the primal scale
        # (our first choice) made w ~ 1e-3 on iJO1366 and took 2.4x the iterations
        bs_norm = bs.norm(dim=1)
        w = torch.where(bs_norm > 1e-10, cs.norm() / bs_norm.clamp_min(1e-10), 1.0)
    else:
        w = torch.full_like(bnorm, float(primal_weight))
    w = w.clamp(1e-4, 1e4)[:, None].detach()
    x = torch.zeros_like(lb) if v0 is None else _check_state(v0, (batch, n), "v0", lb) / dc
    x = torch.minimum(torch.maximum(x, ls), us)
    y = torch.zeros_like(bs)
    x_avg, y_avg = x, y
    count = torch.zeros(batch, 1, dtype=dtype, device=device)
    since = torch.zeros(batch, dtype=dtype, device=device)  # iterations since last restart
    x_last, y_last = x.detach(), y.detach()
    done = bad.clone()  # bounds that cross: infeasible without iterating
    kkt_prev = torch.full((batch,), math.inf, dtype=dtype, device=device)
    record = {int(r) for r in record_at}
    history: dict[int, Tensor] = {}
    it = 0

    floor = OBJECTIVE_FLOOR if dtype == torch.float64 else OBJECTIVE_FLOOR_FLOAT32

    def kkt(xx: Tensor, yy: Tensor, ww: Tensor) -> tuple[Tensor, Tensor]:
        """(weighted KKT error in scaled space, converged flag in original units)."""
        with torch.no_grad():
            pres = mul_a(xx) - bs
            r = cs - mul_at(yy)
            pobj = xx @ cs
            neg = torch.relu(-r)
            pos = torch.relu(r)
            # r >= 0 where ub = inf, r <= 0 where lb = -inf
            dres = torch.where(fin_u, torch.zeros_like(neg), neg) + torch.where(
                fin_l, torch.zeros_like(pos), pos
            )
            dobj = (yy * bs).sum(1) + (ls_fin * pos).sum(1) - (us_fin * neg).sum(1)
            gap = (pobj - dobj).abs()
            err = torch.sqrt(
                (ww[:, 0] * pres.norm(dim=1)) ** 2 + (dres.norm(dim=1) / ww[:, 0]) ** 2 + gap**2
            )
            pres_orig = (pres / dr).norm(dim=1)
            dres_orig = (dres / dc).norm(dim=1)
            # the objective's error, in two parts that the duality gap (their difference) can
            # hide: the shift y^T (A v - b) that the primal residual buys, and the
            # complementarity slack of the bounds; both relative to the objective (growth ~0.1
            # h^-1: an absolute floor of 1 would let 1% errors pass)
            shift_terms = yy * pres  # invariant under the row scaling
            comp = pobj - dobj - shift_terms.sum(1)
            # no cancellation between rows: sum |y_i (A v - b)_i|
            shift = shift_terms.abs().sum(1)
            scale = tol * (floor + pobj.abs() + dobj.abs())
            ok = (
                (pres_orig <= tol * (1 + bnorm))
                & (dres_orig <= tol * (1 + problem.c.norm()))
                & (shift <= scale)
                & (comp <= scale)
            )
        return err, ok

    def farkas(d: Tensor) -> Tensor:
        """(batch,) True where the dual direction ``d (batch, p)`` proves the medium
        infeasible: ``d^T b > max (A^T d)^T v`` over the box ``lb <= v <= ub`` with unbounded
        sides cut at ``+-INFEASIBLE_BOX`` (scaled space; relative margin 1e-3)."""
        with torch.no_grad():
            r = mul_at(d)
            big = INFEASIBLE_BOX / dc
            hi = torch.where(fin_u, us_fin, big)
            lo = torch.where(fin_l, ls_fin, -big)
            sup = torch.where(r > 0, r * hi, r * lo)
            db = (d * bs).sum(1)
            val = db - sup.sum(1)
            size = db.abs() + sup.abs().sum(1)
            return (size > 0) & (val > 1e-3 * size)

    if scheme not in ("halpern", "average"):
        raise ValueError(f"scheme must be 'halpern' or 'average', got {scheme!r}")
    halpern = scheme == "halpern"
    # finished media leave the batch (compaction); their results wait in out_x / out_y
    active = torch.arange(batch, device=device)
    out_x, out_y = x, y
    out_done = torch.zeros(batch, dtype=torch.bool, device=device)
    out_inf = torch.zeros(batch, dtype=torch.bool, device=device)
    infeasible = bad.clone()
    x0, y0 = x, y  # Halpern anchor (the last restart point)
    xT, yT = x, y
    res_last = torch.full((batch,), math.inf, dtype=dtype, device=device)
    with _cpu_settings(x, threads):
        while it < max_iterations and not bool(done.all()):
            steps = min(check_every, max_iterations - it)
            if halpern and compact:  # the fast path: a block of iterations, column layout
                x, y, xT, yT, x_prev, y_prev, snaps = _halpern_block(
                    x, y, x0, y0, count, steps, eta / w, eta * w, cs, bs, ls, us, col_a,
                    col_at, reflection, {r - it for r in record if it < r <= it + steps},
                )
                for k, xt in snaps.items():
                    history[it + k] = out_x.detach().index_copy(0, active, xt) * dc
                count = count + steps
                it += steps
                since = since + steps
            for _ in range(0 if halpern and compact else steps):
                tau, sigma = eta / w, eta * w
                # fused element-wise ops: at genome scale they, not the sparse products, cost most
                x_new = torch.clamp(torch.addcmul(x, tau, mul_at(y) - cs), ls, us)
                x_ext = torch.lerp(x, x_new, 2.0)  # 2 x+ - x
                y_new = torch.addcmul(y, sigma, bs - mul_a(x_ext))
                if compact:  # finished media have left the batch: nothing to freeze
                    xT, yT = x_new, y_new
                else:
                    keep = done[:, None]
                    xT = torch.where(keep, xT, x_new)
                    yT = torch.where(keep, yT, y_new)
                count = count + 1
                if halpern:  # here only without compaction (else _halpern_block runs)
                    lam = count / (count + 1)
                    x_prev, y_prev = x, y
                    x_r = torch.lerp(x, x_new, 1.0 + reflection)
                    y_r = torch.lerp(y, y_new, 1.0 + reflection)
                    x = torch.where(keep, x, torch.lerp(x0, x_r, lam))
                    y = torch.where(keep, y, torch.lerp(y0, y_r, lam))
                else:
                    x, y = xT, yT
                    x_avg = x_avg + (x - x_avg) / count
                    y_avg = y_avg + (y - y_avg) / count
                it += 1
                since = since + 1
                if it in record:
                    full = out_x.detach().index_copy(0, active, xT.detach())
                    history[it] = (full * dc).clone()
            if halpern:
                err, ok = kkt(xT, yT, w)
                with torch.no_grad():  # fixed-point residual of the last PDHG step
                    err = torch.sqrt(
                        w[:, 0] * (x_prev - xT).norm(dim=1) ** 2
                        + (y_prev - yT).norm(dim=1) ** 2 / w[:, 0]
                    )
                use_avg = torch.zeros_like(done)
                # diverging duals: the last step and the drift since the restart point tend
                # to a ray (Applegate et al. 2021, infeasibility detection with PDHG)
                cert = (farkas(yT) | farkas(yT - y_prev) | farkas(yT - y0)) & ~done
            else:
                err_cur, ok_cur = kkt(x, y, w)
                err_avg, ok_avg = kkt(x_avg, y_avg, w)
                use_avg = err_avg < err_cur
                ok = torch.where(use_avg, ok_avg, ok_cur)
                err = torch.minimum(err_avg, err_cur)
                cert = farkas(y - y_last) & ~done
            ok = ok & ~done & ~cert
            infeasible = infeasible | cert
            restart = (
                (err <= 0.2 * res_last)
                | ((err <= 0.8 * res_last) & (err > kkt_prev))
                | (since >= artificial_restart * it)
                | ok
            ) & ~done
            kkt_prev = err
            if bool(restart.any()):
                m = restart[:, None]
                if halpern:
                    x_c, y_c = xT, yT
                else:
                    x_c = torch.where(use_avg[:, None], x_avg, x)
                    y_c = torch.where(use_avg[:, None], y_avg, y)
                with torch.no_grad():
                    dx = (x_c - x_last).norm(dim=1)
                    dy = (y_c - y_last).norm(dim=1)
                    upd = restart & (dx > 1e-10) & (dy > 1e-10)
                    w_new = torch.exp(
                        0.5 * torch.log(dy.clamp_min(1e-10) / dx.clamp_min(1e-10))
                        + 0.5 * torch.log(w[:, 0])
                    ).clamp(1e-4, 1e4)
                    w = torch.where(upd, w_new, w[:, 0])[:, None]
                    x_last = torch.where(m, x_c, x_last).detach()
                    y_last = torch.where(m, y_c, y_last).detach()
                    res_last = torch.where(restart, err, res_last)
                x = torch.where(m, x_c, x)
                y = torch.where(m, y_c, y)
                x0 = torch.where(m, x_c, x0)
                y0 = torch.where(m, y_c, y0)
                xT = torch.where(m, x_c, xT)
                yT = torch.where(m, y_c, yT)
                x_avg = torch.where(m, x, x_avg)
                y_avg = torch.where(m, y, y_avg)
                count = torch.where(m, torch.zeros_like(count), count)
                since = torch.where(restart, torch.zeros_like(since), since)
            done = done | ok | cert
            if compact and bool(done.any()):
                idx = active[done]
                out_x = out_x.index_copy(0, idx, xT[done])
                out_y = out_y.index_copy(0, idx, yT[done])
                out_done[idx] = True
                out_inf[idx] = infeasible[done]
                keep_rows = ~done
                active = active[keep_rows]
                if active.numel() == 0:
                    break
                (x, y, xT, yT, x0, y0, x_avg, y_avg, x_last, y_last, w, count, since, res_last,
                 kkt_prev, bs, ls, us, us_fin, fin_u, ls_fin, fin_l, bnorm, done, infeasible) = (
                    t[keep_rows] for t in (
                        x, y, xT, yT, x0, y0, x_avg, y_avg, x_last, y_last, w, count, since,
                        res_last, kkt_prev, bs, ls, us, us_fin, fin_u, ls_fin, fin_l, bnorm,
                        done, infeasible,
                    )
                )
    if active.numel():
        out_x = out_x.index_copy(0, active, xT)
        out_y = out_y.index_copy(0, active, yT)
        out_done[active] = done
        out_inf[active] = infeasible
    x, y, done = out_x, out_y, out_done
    out_inf = out_inf | bad
    v = x * dc
    y_orig = y * dr  # shadow prices of the minimisation
    with torch.no_grad():
        r = -problem.c - y_orig @ A
    return _finish(
        "PDHG-" + problem.mode, problem, v, done & ~out_inf, it, t0, tol,
        dual=-y_orig.detach(), bound_dual=torch.relu(-r), history=history, infeasible=out_inf,
    )


def twin_columns(problem: LPProblem, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pairs ``(j, k)`` (``j < k``, both in ``cols``) of split twins: ``A[rows, j] = -A[rows, k]``,
    ``c_j = -c_k`` and ``lb = 0`` for both in every medium -- a reversible reaction's
    ``_for``/``_rev`` or an exchange's ``_i``/``_o``. Such a pair is one free variable
    ``v_j - v_k`` in ``[-ub_k, ub_j]``; a parsimony term (``c_j = c_k = -eps``) keeps them apart.
    Returns ``(pairs, 2)`` int array."""
    A = problem.A.detach().cpu().numpy()[rows]
    c = problem.c.detach().cpu().numpy()
    lb_zero = (problem.lb.detach().cpu().numpy() == 0).all(axis=0)
    seen: dict[bytes, int] = {}
    pairs = []
    for j in cols:
        if not lb_zero[j]:
            continue
        nz = np.flatnonzero(A[:, j])
        key = nz.tobytes() + A[nz, j].tobytes()
        neg_key = nz.tobytes() + (-A[nz, j]).tobytes()
        k = seen.pop(neg_key, None)
        if k is not None and c[k] == -c[j] and nz.size:
            pairs.append((k, j))
        else:
            seen[key] = j
    return np.asarray(pairs, dtype=int).reshape(-1, 2)


def _merge_twins(problem: LPProblem, cols: np.ndarray, rows: np.ndarray) -> tuple[Any, ...]:
    """The presolved sub-problem with split twins merged into free variables. Returns
    ``(sub, pairs, ct, rt, first, twin)``: the :class:`LPProblem`, the twin pairs, the
    columns/rows kept and, for each pair, the merged column's position in ``sub`` and the
    dropped twin's column in ``problem``."""
    dev = problem.A.device
    pairs = twin_columns(problem, cols, rows)
    second = set(pairs[:, 1].tolist())
    keep = np.array([j for j in cols if j not in second], dtype=int)  # sub-problem columns
    pos_of = {int(j): i for i, j in enumerate(keep)}
    ct = torch.as_tensor(keep, device=dev, dtype=torch.long)
    rt = torch.as_tensor(rows, device=dev, dtype=torch.long)
    first = torch.as_tensor([pos_of[int(j)] for j in pairs[:, 0]], device=dev, dtype=torch.long)
    twin = torch.as_tensor(pairs[:, 1], device=dev, dtype=torch.long)
    lb = problem.lb.index_select(1, ct)
    if len(pairs):
        lb = lb.index_copy(1, first, -problem.ub.index_select(1, twin))
    sub = LPProblem(
        A=problem.A.index_select(0, rt).index_select(1, ct), b=problem.b.index_select(1, rt),
        lb=lb, ub=problem.ub.index_select(1, ct),
        c=problem.c.index_select(0, ct), mode=problem.mode,
        biomass_index=pos_of.get(problem.biomass_index, 0),
        reaction_ids=[problem.reaction_ids[j] for j in keep], rows=[int(r) for r in rows],
    )
    return sub, pairs, ct, rt, first, twin


def _lumped_problem(sub: LPProblem, infinite_bound: float) -> tuple[Any, ...]:
    """:func:`amnlib.lumping.lump` applied to ``sub``. Returns ``(lumping, reduced, lb, ub)``:
    the :class:`~amnlib.lumping.Lumping`, the reduced :class:`LPProblem` (unbounded sides as
    ``+-inf``) and ``sub``'s bounds with ``|bound| >= infinite_bound`` written as ``+-inf``."""
    dev = sub.A.device
    lb = torch.where(sub.lb <= -infinite_bound, -math.inf, sub.lb)  # COBRA's 1000: unbounded
    ub = torch.where(sub.ub >= infinite_bound, math.inf, sub.ub)
    b_zero = (sub.b == 0).all(dim=0).cpu().numpy()
    lumping = lump_rows(
        sub.A.detach().cpu().double().numpy(), sub.c.detach().cpu().double().numpy(),
        lb.detach().cpu().double().numpy(), ub.detach().cpu().double().numpy(), b_zero,
    )
    lb_r, ub_r = lumping.bounds(lb, ub)
    owner = lumping.member_of[lumping.member_col == sub.biomass_index]
    reduced = LPProblem(
        A=torch.as_tensor(lumping.A, dtype=sub.A.dtype, device=dev),
        b=sub.b.index_select(1, torch.as_tensor(lumping.rows, device=dev)),
        lb=lb_r, ub=ub_r, c=torch.as_tensor(lumping.c, dtype=sub.c.dtype, device=dev),
        mode=sub.mode, biomass_index=int(owner[0]) if owner.size else 0,
        reaction_ids=[sub.reaction_ids[j] for j in lumping.cols],
    )
    return lumping, reduced, lb, ub


def reduction_sizes(problem: LPProblem, infinite_bound: float = 1000.0) -> dict[str, tuple]:
    """``{stage: (rows, columns)}`` of the problem :func:`solve_pdhg` solves after each exact
    reduction: ``"split"`` (as given), ``"presolve"``, ``"twins merged"``, ``"lumped"``."""
    cols, rows = presolve(problem)
    sub = _merge_twins(problem, cols, rows)[0]
    lumping = _lumped_problem(sub, infinite_bound)[0]
    return {
        "split": tuple(problem.A.shape),
        "presolve": (len(rows), len(cols)),
        "twins merged": tuple(sub.A.shape),
        "lumped": (len(lumping.rows), len(lumping.cols)),
    }


def _solve_reduced(
    problem: LPProblem,
    cols: np.ndarray,
    rows: np.ndarray,
    v0: Tensor | None,
    t0: float,
    settings: dict[str, Any],
) -> SolverReport:
    """Solve the presolved sub-problem (twins merged into free variables, then lumped by
    :func:`amnlib.lumping.lump` when ``settings["lump"]``) and map its fluxes and duals back to
    the split columns (zeros for the columns presolve removed)."""
    dev = problem.A.device
    sub, pairs, ct, rt, first, twin = _merge_twins(problem, cols, rows)
    if v0 is not None:
        v0 = _check_state(v0, tuple(problem.lb.shape), "v0", problem.lb)
        x0 = v0.index_select(1, ct)
        if len(pairs):
            x0 = x0.index_copy(1, first, x0[:, first] - v0.index_select(1, twin))
        v0 = x0
    settings = dict(settings)
    if settings.pop("lump"):
        lumping, reduced, lb_inf, ub_inf = _lumped_problem(sub, settings["infinite_bound"])
        x0 = None if v0 is None else lumping.restrict(v0)
        settings["infinite_bound"] = math.inf
        rep = _pdhg(reduced, x0, t0, **settings)
        sub_v = lumping.primal
        sub_dual = torch.as_tensor(
            lumping.dual(rep.dual.detach().cpu().double().numpy(),
                         lb_inf.detach().cpu().double().numpy(),
                         ub_inf.detach().cpu().double().numpy()),
            dtype=rep.dual.dtype, device=dev,
        )
    else:
        rep = _pdhg(sub, v0, t0, **settings)

        def sub_v(x: Tensor) -> Tensor:
            return x

        sub_dual = rep.dual
    batch = problem.batch

    def split(x: Tensor) -> Tensor:  # (batch, len(keep)) -> (batch, n)
        out = x.new_zeros(batch, problem.n)
        if len(pairs):
            merged = x[:, first]
            x = x.index_copy(1, first, torch.relu(merged))
            out = out.index_copy(1, twin, torch.relu(-merged))
        return out.index_copy(1, ct, x)

    v = split(sub_v(rep.v))
    y = sub_dual.new_zeros(batch, problem.A.shape[0]).index_copy(1, rt, sub_dual)
    with torch.no_grad():
        r = problem.c - y @ problem.A  # reduced costs of the maximisation
    return _finish(
        rep.method, problem, v, rep.converged, rep.iterations, t0, settings["tol"],
        dual=y, bound_dual=torch.relu(r),
        history={it: split(sub_v(h)) for it, h in rep.history.items()},
        infeasible=rep.infeasible,
    )


# --------------------------------------------------------------------------------------------
# convenience wrappers
# --------------------------------------------------------------------------------------------
def rnn_ub(network: MetabolicNetwork, media: MediaLike, **kwargs: Any) -> SolverReport:
    """RNN-UB on a batch of media given as uptake upper bounds ``(batch, n_in)`` or dicts.
    Keyword arguments go to :func:`solve_rnn` (``dtype``/``device``/``parsimony`` to
    :func:`fba_problem`)."""
    build = {k: kwargs.pop(k) for k in ("dtype", "device", "parsimony") if k in kwargs}
    return solve_rnn(fba_problem(network, media, mode="UB", **build), **kwargs)


def rnn_eb(network: MetabolicNetwork, uptakes: MediaLike, **kwargs: Any) -> SolverReport:
    """RNN-EB on a batch of exact uptake fluxes ``(batch, n_in)`` (e.g. ``P_in v`` of pFBA)."""
    build = {k: kwargs.pop(k) for k in ("dtype", "device", "parsimony") if k in kwargs}
    return solve_rnn(fba_problem(network, uptakes, mode="EB", **build), **kwargs)


def fast_fba(
    network: MetabolicNetwork, media: MediaLike, mode: str = "UB", **kwargs: Any
) -> SolverReport:
    """FBA for a batch of media with the restarted PDHG solver (:func:`solve_pdhg`)."""
    build = {k: kwargs.pop(k) for k in ("dtype", "device", "parsimony") if k in kwargs}
    problem = fba_problem(network, media, mode=mode, reduce_rows=False, **build)
    return solve_pdhg(problem, **kwargs)


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
# the layers used inside AMNs (published AMN-QP and AMN-LP)
# --------------------------------------------------------------------------------------------
class QPLayer(nn.Module):
    """Published AMN-QP mechanistic layer: gradient descent with momentum on the constraint
    losses, starting from a (trainable) initial guess ``V0``.

    Losses (poster notation): ``L2 = ||S V|| / m`` (steady state), ``L3`` = uptake excess
    ``||ReLU(P_in V - V_in)|| / n_in`` (UB; EB: the plain residual), ``L4 = ||ReLU(-V)|| / n``
    (positivity), optionally ``L1 = ||P_out V - V_out|| / n_out``. The update uses the
    hand-derived descent directions of the published layer (each rescaled by its size)::

        dL = S^T S V / (2 m^2) + P_in^T r_in / n_in^2 - ReLU(-V) / n^2 [+ P_out^T r_out / n_out^2]
        D <- decay D - lr (dL * mask) [+ lr * objective_weight * c],   V <- V + D

    EB: the medium entries of ``V0`` are replaced by ``V_in`` and frozen (mask 0); UB: they are
    clipped to ``min(V0, V_in)`` and every entry is updated. ``objective="biomass"`` adds a push
    along the biomass indicator (the paper's AMNs use ``c = 0``, the default).

    Published e_coli_core settings (defaults): ``timestep = 4``, ``lr = 0.01``, ``decay = 0.9``,
    ``step = "paper"``. On E. coli core these barely move ``V0``: ``lr / (2 m^2) ~ 1e-6`` per unit
    of ``S^T S V`` while the singular values of ``S`` squared run from 18,390 (the biomass
    column) down to 0.024, so 4 steps only touch the stiffest direction.

    ``step = "projection"`` scales the step to the network instead (Gauss-Newton on the mass
    balance): each iteration takes a step ``lr`` on the bound and positivity residuals
    (``v -= lr (P_in^T r_in - ReLU(-v))``, unnormalised), then projects onto the affine set
    ``{S v = 0}`` (EB: ``{S v = 0, P_in v = V_in}``) with ``v -= A^+ (A v - b)`` -- the exact
    minimiser of ``||S V||^2`` closest to ``v``, i.e. the preconditioned gradient step
    ``(S^T S)^+ S^T S v`` with step 1. The output meets the mass balance to rounding
    (``decay`` is unused).
    """

    def __init__(
        self,
        network: MetabolicNetwork,
        mode: str = "UB",
        timestep: int = 4,
        lr: float = 0.01,
        decay: float = 0.9,
        objective: str | None = None,
        objective_weight: float = 1.0,
        step: str = "paper",
    ) -> None:
        super().__init__()
        mode = mode.upper()
        if mode not in ("UB", "EB"):
            raise ValueError(f"mode must be 'UB' or 'EB', got {mode!r}")
        if objective not in (None, "biomass"):
            raise ValueError(f"objective must be None or 'biomass', got {objective!r}")
        if timestep < 0:
            raise ValueError(f"timestep must be >= 0, got {timestep}")
        if step not in ("paper", "projection"):
            raise ValueError(f"step must be 'paper' or 'projection', got {step!r}")
        self.mode, self.timestep, self.lr, self.decay = mode, int(timestep), lr, decay
        self.step = step
        self.objective_weight = float(objective_weight) if objective else 0.0
        self.n_in = len(network.in_ids)
        self.register_buffer("S", network.tensor("S"))
        self.register_buffer("P_in", network.tensor("P_in"))
        self.register_buffer("P_out", network.tensor("P_out"))
        self.register_buffer("c", network.tensor("c"))
        # genome-scale S has ~3 non-zeros per column: sparse products are ~50x faster there
        self.sparse = self.S.shape[1] > 400
        self._csr: dict[tuple, tuple[Tensor, Tensor]] = {}
        if step == "projection":
            # A v = b: mass balance (EB: and the exact uptakes); pinv handles dependent rows
            A = np.asarray(network.S, dtype=float)
            if mode == "EB":
                A = np.vstack([A, np.asarray(network.P_in, dtype=float)])
            A64 = torch.as_tensor(A, dtype=torch.float64)
            self.register_buffer("A_pinv_T", torch.linalg.pinv(A64).T.to(self.S.dtype))
            self.register_buffer("A", A64.to(self.S.dtype))

    def _mul_s(self, v: Tensor) -> Tensor:
        """``S v`` for a batch ``v (batch, n)`` -> ``(batch, m)`` (sparse on large networks)."""
        if not self.sparse:
            return v @ self.S.T
        return (self._sparse(v)[0] @ v.T).T

    def _mul_st(self, r: Tensor) -> Tensor:
        """``S^T r`` for a batch ``r (batch, m)`` -> ``(batch, n)``."""
        if not self.sparse:
            return r @ self.S
        return (self._sparse(r)[1] @ r.T).T

    def _sparse(self, like: Tensor) -> tuple[Tensor, Tensor]:
        key = (like.dtype, str(like.device))
        if key not in self._csr:
            S = self.S.to(like)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self._csr[key] = (S.to_sparse_csr(), S.T.contiguous().to_sparse_csr())
        return self._csr[key]

    def losses(
        self, v: Tensor, v_in: Tensor, v_out: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Constraint losses ``L1``..``L4`` (each (batch,)) of fluxes ``v (batch, n)``."""
        m, n = self.S.shape
        r_in = v @ self.P_in.T - v_in
        if self.mode == "UB":
            r_in = torch.relu(r_in)
        out = {
            "L2": self._mul_s(v).norm(dim=1) / m,
            "L3": r_in.norm(dim=1) / self.n_in,
            "L4": torch.relu(-v).norm(dim=1) / n,
        }
        if v_out is not None:
            out["L1"] = (v @ self.P_out.T - v_out).norm(dim=1) / self.P_out.shape[0]
        return out

    def forward(
        self, v0: Tensor, v_in: Tensor, v_out: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``v0 (batch, n)``, ``v_in (batch, n_in)`` (ordered as ``network.in_ids``), optional
        ``v_out (batch, n_out)``. Returns the fluxes ``(batch, n)`` and the losses of
        :meth:`losses` at the last iterate."""
        m, n = self.S.shape
        if v0.ndim != 2 or v0.shape[1] != n:
            raise ValueError(f"v0 must have shape (batch, {n}), got {tuple(v0.shape)}")
        if v_in.shape != (v0.shape[0], self.n_in):
            raise ValueError(
                f"v_in must have shape ({v0.shape[0]}, {self.n_in}), got {tuple(v_in.shape)}"
            )
        if not bool(torch.isfinite(v_in).all()):
            raise ValueError("v_in contains NaN or infinite uptake values")
        in_mask = self.P_in.sum(0) > 0  # (n,)
        v_in_full = v_in @ self.P_in
        if self.mode == "EB":
            v = torch.where(in_mask, v_in_full, v0)
            mask = (~in_mask).to(v0.dtype)
        else:
            v = torch.where(in_mask, torch.minimum(v0, v_in_full), v0)
            mask = torch.ones_like(self.c)
        if self.step == "projection":
            v = self._projection_steps(v, v_in, v_out, mask)
            return v, self.losses(v, v_in, v_out)
        d = torch.zeros_like(v)
        n_out = self.P_out.shape[0]
        for _ in range(self.timestep):
            r_in = v @ self.P_in.T - v_in
            if self.mode == "UB":
                r_in = torch.relu(r_in)
            grad = self._mul_st(self._mul_s(v)) / (2 * m**2)
            grad = grad + r_in @ self.P_in / self.n_in**2 - torch.relu(-v) / n**2
            if v_out is not None:
                grad = grad + (v @ self.P_out.T - v_out) @ self.P_out / n_out**2
            d = self.decay * d - self.lr * (grad * mask - self.objective_weight * self.c * mask)
            v = v + d
        return v, self.losses(v, v_in, v_out)

    def _projection_steps(
        self, v: Tensor, v_in: Tensor, v_out: Tensor | None, mask: Tensor
    ) -> Tensor:
        """``step="projection"``: ``timestep`` rounds of a residual step on the bounds and
        positivity (and ``v_out``, the objective) followed by the projection onto ``A v = b``."""
        A, A_pinv_T = self.A.to(v), self.A_pinv_T.to(v)
        b = None
        if self.mode == "EB":
            b = torch.cat([v.new_zeros(v.shape[0], self.S.shape[0]), v_in], dim=1)
        for _ in range(self.timestep):
            r_in = v @ self.P_in.T - v_in
            if self.mode == "UB":
                r_in = torch.relu(r_in)
            grad = r_in @ self.P_in - torch.relu(-v)
            if v_out is not None:
                grad = grad + (v @ self.P_out.T - v_out) @ self.P_out
            v = v - self.lr * (grad - self.objective_weight * self.c) * mask
            r = v @ A.T if b is None else v @ A.T - b
            v = v - r @ A_pinv_T
        return v


class LPLayer(nn.Module):
    """Published AMN-LP mechanistic layer: ``iterations`` steps of the Yang dynamics of
    :func:`solve_rnn` from a (trainable) initial guess, with a learnable step ``dt``.

    ``objective=None`` (default, as inside AMNs: ``c = 0``, only the constraints act) or
    ``"biomass"``. ``forward(v0, v_in, y0=None)`` takes ``v0 (batch, n)``, the medium
    ``v_in (batch, n_in)`` (uptake bounds for UB, exact uptakes for EB, columns
    ``network.in_ids``) and optional bound multipliers ``y0 (batch, 2n)``; it returns the fluxes
    ``(batch, n)`` and the multipliers ``(batch, 2n)``.

    ``project=True`` takes the dynamics' projection term ``-Q (A v - b)`` with step 1 instead of
    ``dt``: ``v0`` is first projected onto the affine set ``A v = b`` (mass balance; EB: and the
    exact uptakes), where the Yang steps keep it (their bound term is multiplied by ``I - P``).
    The output then meets the mass balance to rounding. With the published ``dt`` (5e-2 UB) and
    4 iterations (``project=False``, the default here), the term only removes
    ``1 - 0.95^4 = 19%`` of the residual.
    """

    def __init__(
        self,
        network: MetabolicNetwork,
        mode: str = "UB",
        iterations: int = 4,
        dt: float | None = None,
        k: float = PAPER_K,
        objective: str | None = None,
        learn_dt: bool = True,
        project: bool = False,
    ) -> None:
        super().__init__()
        self.project = bool(project)
        self.network = network
        self.mode = mode.upper()
        if self.mode not in PAPER_DT:
            raise ValueError(f"mode must be 'UB' or 'EB', got {mode!r}")
        self.iterations, self.k, self.objective = int(iterations), float(k), objective
        log_dt = torch.tensor(math.log(PAPER_DT[self.mode] if dt is None else dt))
        if learn_dt:
            self.log_dt = nn.Parameter(log_dt)
        else:
            self.register_buffer("log_dt", log_dt)
        template = fba_problem(network, np.zeros((1, len(network.in_ids))), mode=self.mode,
                               objective=objective, dtype=torch.float64)
        self._rows = template.rows  # independent rows: the QR is done once
        self._projectors: dict[tuple, tuple[Tensor, Tensor]] = {}

    def forward(
        self, v0: Tensor, v_in: Tensor, y0: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        problem = fba_problem(
            self.network, v_in, mode=self.mode, objective=self.objective, dtype=v0.dtype,
            device=v0.device, reduce_rows=self._rows,
        )
        batch, n = problem.lb.shape
        v0 = _check_state_grad(v0, (batch, n), "v0")
        y = torch.zeros(batch, 2 * n, device=v0.device, dtype=v0.dtype) if y0 is None else y0
        key = (v0.dtype, str(v0.device))
        if key not in self._projectors:
            self._projectors[key] = _projector(problem.A)
        Q, P = self._projectors[key]
        q = problem.b @ Q.T
        h = torch.cat([problem.ub, -problem.lb], dim=1)
        step = torch.exp(self.log_dt).to(v0) * torch.ones_like(v0[:, :1])
        if self.project:
            v0 = v0 - (v0 @ P - q)  # P is symmetric: v0 @ P = (P v0^T)^T
        with _cpu_settings(v0):
            return _yang_steps(v0, y, P, q, h, -self.k * problem.c, step, self.iterations)


def _check_state_grad(x: Tensor, shape: tuple[int, int], name: str) -> Tensor:
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------------------------
# the chapter's experiment: RNN-EB, RNN-UB and PDHG against COBRApy
# --------------------------------------------------------------------------------------------
def log_checkpoints(iterations: int) -> list[int]:
    """1, 2, 5 x 10^k checkpoints up to ``iterations`` (always including it)."""
    out = {int(iterations)}
    for e in range(0, 9):
        for f in (1, 2, 5):
            if f * 10**e <= iterations:
                out.add(f * 10**e)
    return sorted(out)


@dataclass
class Comparison:
    """Solvers against COBRApy on the same media.

    ``growth_ref (batch,)`` and ``fluxes_ref (batch, n)`` come from COBRApy (p)FBA;
    ``reports`` maps a solver label to its :class:`SolverReport`; ``flux_r2`` and
    ``growth_error`` map a label to ``{iteration: value}`` (R^2 of all split fluxes, largest
    relative growth error).
    """

    growth_ref: np.ndarray
    fluxes_ref: np.ndarray
    reports: dict[str, SolverReport]
    flux_r2: dict[str, dict[int, float]]
    growth_error: dict[str, dict[int, float]]

    def growth(self, label: str) -> np.ndarray:
        return self.reports[label].growth.detach().cpu().double().numpy()

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per solver: growth R^2, max relative growth error, flux R^2, iterations run,
        iterations to <= 1% growth error (first checkpoint from which it stays below)."""
        from amnlib.plotting import r2_score

        out: dict[str, dict[str, Any]] = {}
        for label, rep in self.reports.items():
            g = self.growth(label)
            errs = self.growth_error[label]
            its = sorted(errs)
            need = None
            for i, it in enumerate(its):
                if all(errs[j] <= 0.01 for j in its[i:]):
                    need = it
                    break
            r2_curve = self.flux_r2[label]
            r2_its = sorted(r2_curve)
            to_r2 = {  # first snapshot from which the flux R^2 stays >= the threshold
                f"iterations_to_flux_r2_{thr:.2f}": next(
                    (it for k, it in enumerate(r2_its)
                     if all(r2_curve[j] >= thr for j in r2_its[k:])), None)
                for thr in (0.90, 0.95)
            }
            out[label] = {
                **to_r2,
                "growth_r2": r2_score(self.growth_ref, g),
                "max_rel_growth_error": float(
                    np.max(np.abs(g - self.growth_ref) / np.abs(self.growth_ref))
                ),
                "flux_r2": r2_score(self.fluxes_ref, rep.v.detach().cpu().double().numpy()),
                "iterations": int(rep.iterations),
                "iterations_to_1pct": need,
                "converged": int(rep.converged.sum()),
                "seconds": round(float(rep.seconds), 2),
            }
        return out


def _curves(
    rep: SolverReport, growth_ref: np.ndarray, fluxes_ref: np.ndarray, biomass: int
) -> tuple[dict[int, float], dict[int, float]]:
    from amnlib.plotting import r2_score

    r2, err = {}, {}
    for it, v in sorted(rep.history.items()):
        v = v.cpu().double().numpy()
        r2[it] = r2_score(fluxes_ref, v)
        err[it] = float(np.max(np.abs(v[:, biomass] - growth_ref) / np.abs(growth_ref)))
    return r2, err


def compare_solvers(
    network: MetabolicNetwork,
    X: np.ndarray,
    fluxes_ref: np.ndarray,
    rnn_iterations: int = PAPER_ITERATIONS,
    fast_iterations: int = 5_000,
    eb_dt: float = PAPER_DT["UB"],
    paper_eb_iterations: int = 0,
    parsimony: float = 1e-4,
    dtype=torch.float32,
    device=None,
) -> Comparison:
    """Solve the media ``X (batch, n_in)`` (uptake bounds, columns ``network.in_ids``) with
    RNN-UB, RNN-EB (exact uptakes ``P_in v_ref`` taken from ``fluxes_ref (batch, n)``),
    PDHG (UB) and PDHG with a small parsimony term (pFBA-like), recording flux snapshots on a
    log grid of iterations.

    ``eb_dt``: step of RNN-EB (default: the UB step, see the chapter; the preprint's 3e-4 was
    tuned for the Ghasabi-Oskoei dynamics); ``paper_eb_iterations > 0`` also runs RNN-EB with
    the preprint's step for that many iterations (label ``"RNN-EB (dt 3e-4)"``).
    """
    fluxes_ref = np.asarray(fluxes_ref, dtype=float)
    growth_ref = fluxes_ref[:, network.biomass_index]
    in_cols = network.indices(network.in_ids)
    uptakes = fluxes_ref[:, in_cols]
    X = torch.as_tensor(np.asarray(X, dtype=float), dtype=dtype, device=device)
    U = torch.as_tensor(uptakes, dtype=dtype, device=device)
    reports: dict[str, SolverReport] = {}
    grid = log_checkpoints(rnn_iterations)
    reports["RNN-UB"] = rnn_ub(network, X, iterations=rnn_iterations, record_at=grid)
    reports["RNN-EB"] = rnn_eb(network, U, iterations=rnn_iterations, dt=eb_dt, record_at=grid)
    if paper_eb_iterations:
        reports["RNN-EB (dt 3e-4)"] = rnn_eb(
            network, U, iterations=paper_eb_iterations, record_at=log_checkpoints(
                paper_eb_iterations)
        )
    fgrid = sorted(set(log_checkpoints(fast_iterations)) | set(range(500, fast_iterations, 500)))
    # the curves show the iterates as they are, converged or not (metrics() counts them)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reports["PDHG"] = fast_fba(
            network, X, max_iterations=fast_iterations, record_at=fgrid, nonconverged="keep"
        )
        if parsimony:
            reports["PDHG + parsimony"] = fast_fba(
                network, X, max_iterations=fast_iterations, record_at=fgrid,
                parsimony=parsimony, nonconverged="keep",
            )
    for rep in reports.values():  # converged media stop early: carry their last snapshot on
        last = None
        grid_r = fgrid if rep.method.startswith("PDHG") else sorted(rep.history)
        for it in grid_r:
            if it in rep.history:
                last = rep.history[it]
            elif last is not None and it <= rep.iterations:
                rep.history[it] = last
        if rep.method.startswith("PDHG"):
            rep.history[rep.iterations] = rep.v.detach().clone()
    flux_r2, growth_error = {}, {}
    for label, rep in reports.items():
        flux_r2[label], growth_error[label] = _curves(
            rep, growth_ref, fluxes_ref, network.biomass_index
        )
    return Comparison(growth_ref, fluxes_ref, reports, flux_r2, growth_error)


def gradient_check(
    network: MetabolicNetwork,
    X: np.ndarray,
    exchanges: Sequence[str],
    delta: float = 0.05,
    max_iterations: int = 5_000,
) -> dict[str, np.ndarray]:
    """d growth / d uptake bound for media ``X (batch, n_in)`` and the uptakes ``exchanges``:
    autograd through PDHG (float64), the envelope-theorem value (PDHG's bound multipliers) and
    central finite differences of COBRApy FBA (step ``delta`` mmol/gDW/h).

    Returns ``{"autograd", "envelope", "finite_difference"}``, each ``(batch, len(exchanges))``
    in h^-1 per mmol gDW^-1 h^-1.
    """
    X = np.asarray(X, dtype=float)
    cols = [network.in_ids.index(network.uptake_id(e)) for e in exchanges]
    xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():  # unrolled gradients of the last iterate, converged or not
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = fast_fba(network, xt, max_iterations=max_iterations, tol=1e-7, nonconverged="keep")
    rep.growth.sum().backward()
    auto = xt.grad.numpy()[:, cols]
    idx = network.indices([network.in_ids[c] for c in cols])
    env = rep.bound_dual.numpy()[:, idx]
    fd = np.zeros_like(auto)
    for i, row in enumerate(X):
        for k, c in enumerate(cols):
            hi, lo = row.copy(), row.copy()
            hi[c] += delta
            lo[c] = max(lo[c] - delta, 0.0)
            g_hi = network.solve(network.medium_from_vector(hi), method="fba").growth
            g_lo = network.solve(network.medium_from_vector(lo), method="fba").growth
            fd[i, k] = (g_hi - g_lo) / (hi[c] - lo[c])
    return {"autograd": auto, "envelope": env, "finite_difference": fd}


def plot_growth(ax, comparison: Comparison, labels: Sequence[str] = ("RNN-EB", "RNN-UB")):
    """Fig. 2C: growth rates of the solvers against COBRApy (one parity plot)."""
    from amnlib.plotting import GROWTH_LABEL, PALETTE, parity

    for label in labels:
        key = label.split("-")[-1] if label.startswith("RNN") else "fast"
        parity(
            ax, comparison.growth_ref, comparison.growth(label), label=label,
            color=PALETTE.get(key), xlabel="COBRApy FBA " + GROWTH_LABEL,
            ylabel="solver " + GROWTH_LABEL,
        )
    return ax


def plot_flux_r2(ax, comparison: Comparison, labels: Sequence[str] | None = None):
    """Fig. 2D: R^2 of all split fluxes against pFBA versus iterations (log axis)."""
    from amnlib.plotting import PALETTE

    styles = {"RNN-EB (dt 3e-4)": ":", "PDHG + parsimony": "--"}
    for label in labels or list(comparison.flux_r2):
        curve = comparison.flux_r2[label]
        its = sorted(curve)
        key = "EB" if "EB" in label else "UB" if "UB" in label else "fast"
        ax.plot(its, [max(curve[i], -0.1) for i in its], label=label, color=PALETTE.get(key),
                ls=styles.get(label, "-"), marker=".")
    ax.set_xscale("log")
    ax.set_ylim(-0.1, 1.02)
    ax.set_xlabel("iterations $t$")
    ax.set_ylabel("R$^2$ of all fluxes vs pFBA")
    ax.legend(frameon=False)
    return ax


def _textbook_set(size: int, seed: int = 0):
    from amnlib.simulate import generate

    return generate("textbook", spec="e_coli_core", size=size, seed=seed, method="pfba",
                    n_jobs=1, progress=False)


def run(fast: bool = False) -> Any:
    """The ``solvers`` experiment: RNN-EB, RNN-UB and PDHG on textbook media against COBRApy
    (growth R^2, max relative growth error, flux R^2, iterations), and the gradient check."""
    from amnlib.experiments import Report

    net = MetabolicNetwork.load("textbook")
    ts = _textbook_set(10 if fast else 50)
    X = uptake_matrix(net, ts.X, ts.x_ids)
    iters = 20_000 if fast else PAPER_ITERATIONS
    comp = compare_solvers(net, X, ts.Y, rnn_iterations=iters,
                           paper_eb_iterations=0 if fast else PAPER_ITERATIONS)
    metrics: dict[str, Any] = {"media": len(X), **comp.metrics()}
    ex = ["EX_glc__D_e", "EX_o2_e"]
    grad = gradient_check(net, X[:3], ex)
    metrics["gradient_check"] = {
        "max_abs_diff_autograd_vs_fd": float(
            np.abs(grad["autograd"] - grad["finite_difference"]).max()),
        "max_abs_diff_envelope_vs_fd": float(
            np.abs(grad["envelope"] - grad["finite_difference"]).max()),
        "max_abs_fd": float(np.abs(grad["finite_difference"]).max()),
    }
    # The preprint's >= 4e5 iterations are for the "satisfactory" flux R^2 of Fig. 2D (its
    # value is not printed), not for growth within 1%: set beside our iterations to flux R^2 0.90.
    paper = {
        "RNN-EB": {"iterations_to_flux_r2_0.90": PAPER_ITERATIONS, "iterations": 10_000_000},
        "RNN-UB": {"iterations_to_flux_r2_0.90": PAPER_ITERATIONS, "iterations": 10_000_000},
    }
    notes = [
        "paper: Fig. 2D needs >= 4e5 iterations for a satisfactory flux R^2 (the R^2 value is "
        "not printed; compared here with our iterations to flux R^2 0.90 and 0.95, not with "
        "growth within 1%); Fig. 2C/2D ran 1e7 iterations on 50 media",
        f"RNN iterations run here: {iters}; RNN-EB uses dt = 5e-2 (Yang dynamics), the "
        "'dt 3e-4' row uses the preprint's EB step",
        "flux R^2 is against pFBA: FBA optima are not unique, 'PDHG + parsimony' adds "
        "-1e-4 * sum(v) to the objective",
    ]
    return Report(name="solvers", metrics=metrics, paper=paper, notes=notes)
