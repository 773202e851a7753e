"""RNN-EB / RNN-UB (paper Fig. 2, Methods "Solving LP/QP with RNN methods"): the recurrent
(projection) neural network of Yang et al. (2014), used by the published code for both EB and UB.

With ``Q = A^T (A A^T)^-1``, ``P = Q A`` and the bounds written as ``G v <= h``
(``G = [I; -I]``, ``h = [ub; -lb]``) it iterates, for ``min c'^T v`` with ``c' = -k c``::

    R  = ReLU(y + G v - h)
    dv = -(I - P)(G^T R + c') - Q (A v - b)
    dy = (R - y) / 2
    v <- v + dt dv,   y <- y + dt dy

with the paper's steps (``dt = 3e-4`` for EB, ``5e-2`` for UB), objective scale ``k = 100``,
and ``dt *= 0.7`` every 10^4 iterations when the objective stopped improving. Because ``G`` is
a box, ``G^T R`` is element-wise and one iteration costs a single ``(batch, n) x (n, n)``
product. (The preprint cites Ghasabi-Oskoei & Mahdavi-Amiri (2006) for EB; like the published
code we solve EB with the Yang dynamics, ``G`` holding the positivity rows.)

Plain torch code: gradients flow through the iterations (autograd).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from amnlib import papers as _papers
from amnlib.network import MetabolicNetwork
from amnlib.solvers.problem import (
    LPProblem,
    MediaLike,
    SolverReport,
    _check_state,
    _cpu_settings,
    _finish,
    fba_problem,
)

__all__ = [
    "PAPER_DECAY", "PAPER_DECAY_EVERY", "PAPER_DT", "PAPER_ITERATIONS", "PAPER_K", "rnn_eb",
    "rnn_ub", "solve_rnn",
]

#: Preprint step sizes of the recurrent solvers, step decay (dt *= PAPER_DECAY every
#: PAPER_DECAY_EVERY iterations without progress), the published code's objective scale
#: (c' = -k c): sources in amnlib.papers.
PAPER_DT = {"EB": _papers.value("fig2.dt_eb"), "UB": _papers.value("fig2.dt_ub")}
PAPER_DECAY = _papers.value("fig2.decay")
PAPER_DECAY_EVERY = _papers.value("fig2.decay_every")
PAPER_K = _papers.value("fig2.objective_scale")
#: Iterations the preprint needs for a satisfactory flux R^2 on E. coli core (Fig. 2D).
PAPER_ITERATIONS = _papers.value("fig2.iterations_needed")


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
