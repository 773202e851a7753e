"""Exact reductions of an :class:`~amnlib.solvers.problem.LPProblem` before PDHG: presolve
(fixed and dead-end columns), split twins merged into free variables, linear pathways lumped
(:mod:`amnlib.lumping`). No LP is solved; fluxes and duals map back exactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from amnlib.lumping import lump as lump_rows
from amnlib.solvers.problem import LPProblem

__all__ = ["presolve", "reduction_sizes", "twin_columns"]


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
