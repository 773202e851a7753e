"""Mechanistic layers used inside AMNs (the published AMN-QP and AMN-LP): a few differentiable
solver steps from a trainable initial guess, on the split network of
:class:`~amnlib.network.MetabolicNetwork` (tensors ``(batch, n)``, mmol gDW^-1 h^-1).

* :class:`QPLayer` -- gradient descent with momentum on the constraint losses;
* :class:`LPLayer` -- the Yang dynamics of :func:`amnlib.solvers.solve_rnn` with a learnable step.

``c = 0`` by default (only the constraints act), or a biomass objective.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from amnlib.network import MetabolicNetwork
from amnlib.solvers.problem import _cpu_settings, fba_problem
from amnlib.solvers.rnn import PAPER_DT, PAPER_K, _projector, _yang_steps

__all__ = ["LPLayer", "QPLayer"]


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
