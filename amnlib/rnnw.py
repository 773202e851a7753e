"""RNN-W: flux propagation with learned branching ratios (paper Fig. 1, Fig. S1).

For a unidirectional network with stoichiometry S (m x n), one step of the recurrent network is

    M^l   = V2M V^(l-1)                                   (metabolite production fluxes, (m,))
    v_j^l = ReLU( min_{i in substrates(j)}  W_ij M_i^l / |S_ij| )      for every updated flux j
    v_j^l = v_j^0                                         for the input (uptake) fluxes

``W`` (m x n) holds, for metabolite i, the fraction of its production that goes to each of its
consuming reactions j (rows sum to 1 over the consumers, kept so by a softmax of free logits or by
a Euclidean projection onto the simplex). Dividing by ``|S_ij|`` turns an amount of metabolite
into a reaction rate; for a reaction with several substrates the scarcest one sets the rate
("minimum over substrates", Fig. S1). If V is a steady state (S V = 0) and W holds its branching
ratios (:func:`steady_state_weights`), V is a fixed point of the step; learning W by gradient
descent through the unrolled steps recovers such ratios from example fluxes.

Fluxes are in mmol gDW^-1 h^-1. Tensors are batch first, ``(batch, n)``; the module's buffers
follow ``.to(device, dtype)``, the inputs must be on the same device and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from amnlib.network import MetabolicNetwork

PARAMETRIZATIONS = ("softmax", "projection")


def simplex_projection(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``x`` (rows, cols) onto the probability simplex
    restricted to the ``True`` entries of ``mask`` (same shape); other entries are 0.

    Rows without any ``True`` entry are returned as zeros. Differentiable almost everywhere
    (sort-based algorithm of Held et al. / Duchi et al.).
    """
    if x.shape != mask.shape:
        raise ValueError(f"x {tuple(x.shape)} and mask {tuple(mask.shape)} differ in shape")
    big = torch.finfo(x.dtype).max / 4
    y = torch.where(mask, x, torch.full_like(x, -big))
    u, _ = torch.sort(y, dim=-1, descending=True)
    css = torch.cumsum(torch.where(u > -big / 2, u, torch.zeros_like(u)), dim=-1) - 1.0
    k = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    cond = (u - css / k > 0) & (u > -big / 2)
    rho = cond.to(x.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where cond holds
    tau = css.gather(-1, rho) / (rho + 1).to(x.dtype)
    out = torch.clamp(y - tau, min=0.0)
    return torch.where(mask & mask.any(-1, keepdim=True), out, torch.zeros_like(out))


def steady_state_weights(
    S: np.ndarray, v: np.ndarray, support: np.ndarray | None = None
) -> np.ndarray:
    """Branching ratios of a flux vector: ``W_ij = |S_ij| v_j / sum_k |S_ik| v_k`` over the
    consumers j of metabolite i (the fraction of i's consumption, equal to the fraction of its
    production at steady state, going to j).

    Parameters
    ----------
    S : (m, n) stoichiometry of the unidirectional network.
    v : (n,) non-negative fluxes (mmol/gDW/h).
    support : (m, n) bool, the allowed entries (default: every consumer, ``S < 0``).

    Returns (m, n); a metabolite that is not consumed at all gets equal weights over its
    allowed consumers (its ratios are undetermined by ``v``).
    """
    S = np.asarray(S, dtype=float)
    v = np.asarray(v, dtype=float)
    if v.shape != (S.shape[1],):
        raise ValueError(f"v has shape {v.shape}, expected ({S.shape[1]},)")
    if (v < -1e-12).any():
        raise ValueError(f"fluxes must be >= 0 (unidirectional), min is {v.min():.3g}")
    support = (S < 0) if support is None else np.asarray(support, dtype=bool)
    flow = np.where(support, -S * np.clip(v, 0, None)[None, :], 0.0)
    total = flow.sum(1, keepdims=True)
    count = support.sum(1, keepdims=True)
    uniform = np.where(support, 1.0 / np.maximum(count, 1), 0.0)
    return np.where(total > 0, flow / np.where(total > 0, total, 1.0), uniform)


class RNNW(nn.Module):
    """The RNN-W mechanistic layer for any unidirectional network.

    Parameters
    ----------
    S : (m, n) stoichiometric matrix of the split network (numpy or torch).
    inputs : column indices of the fluxes given as inputs (held fixed at every step).
    active : (n,) bool, fluxes allowed to carry flux (default all); inactive fluxes (e.g. an
        outflow with upper bound 0) are always 0 and get no weight.
    parametrization : ``"softmax"`` (W = row-wise softmax of free logits over each metabolite's
        consumers) or ``"projection"`` (W = Euclidean projection of the free parameters onto the
        simplex; :meth:`project_` after each optimiser step keeps them on it).
    W0 : optional (m, n) initial weights (rows summing to 1 over the consumers); default equal
        shares.
    dtype, device : of the parameters and buffers (default float32, CPU).
    """

    def __init__(
        self,
        S: np.ndarray | torch.Tensor,
        inputs: Sequence[int],
        active: np.ndarray | torch.Tensor | None = None,
        parametrization: str = "softmax",
        W0: np.ndarray | torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}"
            )
        S = torch.as_tensor(np.asarray(S, dtype=float), dtype=torch.float64)
        if S.ndim != 2:
            raise ValueError(f"S must be a matrix (m, n), got shape {tuple(S.shape)}")
        m, n = S.shape
        inputs = [int(i) for i in inputs]
        bad = [i for i in inputs if not 0 <= i < n]
        if bad:
            raise ValueError(f"input columns {bad} are out of range for n = {n} fluxes")
        is_input = torch.zeros(n, dtype=torch.bool)
        is_input[inputs] = True
        if active is None:
            active_t = torch.ones(n, dtype=torch.bool)
        else:
            active_t = torch.as_tensor(np.asarray(active, dtype=bool))
            if active_t.shape != (n,):
                raise ValueError(f"active has shape {tuple(active_t.shape)}, expected ({n},)")
        updated = active_t & ~is_input
        support = (S < 0) & updated[None, :]
        self.parametrization = parametrization
        self.m, self.n = m, n
        self.inputs = inputs

        # Substrate lists, padded: sub_idx (n, k) metabolite indices, sub_ok (n, k) validity.
        subs = [torch.nonzero(S[:, j] < 0).flatten().tolist() if updated[j] else []
                for j in range(n)]
        k = max(1, max(len(s) for s in subs))
        sub_idx = torch.zeros(n, k, dtype=torch.long)
        sub_ok = torch.zeros(n, k, dtype=torch.bool)
        inv_coef = torch.zeros(n, k, dtype=torch.float64)
        for j, s in enumerate(subs):
            for r, i in enumerate(s):
                sub_idx[j, r], sub_ok[j, r] = i, True
                inv_coef[j, r] = 1.0 / float(-S[i, j])
        self.register_buffer("V2M", S.clamp(min=0).to(dtype))
        self.register_buffer("support", support)
        self.register_buffer("is_input", is_input)
        self.register_buffer("updated", updated)
        self.register_buffer("sub_idx", sub_idx)
        self.register_buffer("sub_ok", sub_ok)
        self.register_buffer("inv_coef", inv_coef.to(dtype))

        if W0 is None:
            W0_t = support.double() / support.sum(1, keepdim=True).clamp(min=1)
        else:
            W0_t = torch.as_tensor(np.asarray(W0, dtype=float), dtype=torch.float64)
            if W0_t.shape != (m, n):
                raise ValueError(f"W0 has shape {tuple(W0_t.shape)}, expected ({m}, {n})")
            if ((W0_t != 0) & ~support).any():
                i, j = (torch.nonzero((W0_t != 0) & ~support)[0]).tolist()
                raise ValueError(
                    f"W0[{i}, {j}] = {W0_t[i, j]:.3g} but flux {j} does not consume "
                    f"metabolite {i} (or is an input / inactive)"
                )
        if parametrization == "softmax":
            theta = torch.log(W0_t.clamp(min=1e-12))
        else:
            theta = W0_t.clone()
        self.theta = nn.Parameter(theta.to(dtype))
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_network(
        cls,
        net: MetabolicNetwork,
        inputs: Sequence[str] | None = None,
        active: Sequence[str] | np.ndarray | None = None,
        **kwargs,
    ) -> RNNW:
        """Build from a :class:`MetabolicNetwork`: inputs default to its medium uptake columns
        (``net.in_ids``), active fluxes to those with a positive upper bound (``net.ub > 0``);
        ``active`` may also be a list of split ids."""
        in_ids = list(net.in_ids if inputs is None else inputs)
        if active is None:
            mask = net.ub > 0
        elif len(active) and isinstance(next(iter(active)), str):
            mask = np.zeros(net.n, dtype=bool)
            mask[net.indices(active)] = True
        else:
            mask = np.asarray(active, dtype=bool)
        model = cls(net.S, net.indices(in_ids), active=mask, **kwargs)
        model.reaction_ids = list(net.reaction_ids)
        model.metabolite_ids = list(net.metabolite_ids)
        model.input_ids = in_ids
        return model

    # ------------------------------------------------------------------ weights
    def weights(self) -> torch.Tensor:
        """(m, n) weight matrix: rows sum to 1 over each metabolite's consumers (0 elsewhere;
        a metabolite without consumers has a zero row)."""
        if self.parametrization == "softmax":
            logits = self.theta.masked_fill(~self.support, torch.finfo(self.theta.dtype).min)
            w = torch.softmax(logits, dim=1)
            return torch.where(self.support, w, torch.zeros_like(w))
        return simplex_projection(self.theta, self.support)

    @torch.no_grad()
    def project_(self) -> None:
        """Put the free parameters back on the simplex (``"projection"`` mode; call after each
        optimiser step). No-op for ``"softmax"``."""
        if self.parametrization == "projection":
            self.theta.copy_(simplex_projection(self.theta, self.support))

    @torch.no_grad()
    def set_weights(self, W: np.ndarray | torch.Tensor) -> None:
        """Set W (m, n) (rows summing to 1 over the consumers; zero elsewhere)."""
        W = torch.as_tensor(np.asarray(W, dtype=float), device=self.theta.device)
        if W.shape != (self.m, self.n):
            raise ValueError(f"W has shape {tuple(W.shape)}, expected ({self.m}, {self.n})")
        W = W.to(self.theta.dtype)
        if self.parametrization == "softmax":
            self.theta.copy_(torch.log(W.clamp(min=1e-30)))
        else:
            self.theta.copy_(W)

    # ------------------------------------------------------------------ dynamics
    def step(self, V: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        """One RNN-W step: (batch, n) fluxes -> (batch, n) fluxes. Inputs are copied through."""
        W = self.weights() if W is None else W
        M = V @ self.V2M.T  # (batch, m) production fluxes
        cols = torch.arange(self.n, device=V.device)[:, None]
        ratio = W[self.sub_idx, cols] * self.inv_coef  # (n, k): W_ij / |S_ij|
        contrib = M[:, self.sub_idx] * ratio  # (batch, n, k)
        contrib = contrib.masked_fill(~self.sub_ok, float("inf"))
        rate = contrib.amin(dim=-1)
        rate = torch.where(self.updated, rate, torch.zeros_like(rate))
        rate = torch.relu(rate)
        return torch.where(self.is_input, V, rate)

    def forward(
        self,
        v_in: torch.Tensor,
        iterations: int = 30,
        v0: torch.Tensor | None = None,
        return_trajectory: bool = False,
    ) -> torch.Tensor:
        """Propagate input fluxes through the network.

        Parameters
        ----------
        v_in : (batch, n_inputs) input fluxes (mmol/gDW/h), in the order of ``inputs``.
        iterations : number of RNN steps L (the paper uses 30).
        v0 : optional (batch, n) starting fluxes (default: zero except the inputs). On
            genome-scale networks, start from a reference flux: from zero, reactions that also
            need a cofactor (ATP, NAD...) never start under the minimum-over-substrates rule,
            since the cofactor is only produced by such reactions.
        return_trajectory : return every layer ``(L + 1, batch, n)`` instead of ``V^L``.

        Returns ``V^L`` of shape (batch, n).
        """
        if v_in.ndim != 2 or v_in.shape[1] != len(self.inputs):
            raise ValueError(
                f"v_in must have shape (batch, {len(self.inputs)}), got {tuple(v_in.shape)}"
            )
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        V = torch.zeros(v_in.shape[0], self.n, dtype=v_in.dtype, device=v_in.device)
        if v0 is not None:
            V = V + v0
        V = V.index_copy(1, torch.as_tensor(self.inputs, device=v_in.device), v_in)
        W = self.weights()
        traj = [V]
        for _ in range(iterations):
            V = self.step(V, W)
            traj.append(V)
        return torch.stack(traj) if return_trajectory else V


# ---------------------------------------------------------------------- learning
@dataclass
class FitResult:
    """History of :func:`fit_weights`: loss per step (MSE, (mmol/gDW/h)^2) and the final
    max |V^L - V_target| (mmol/gDW/h)."""

    loss: list[float] = field(default_factory=list)
    max_abs_error: float = float("nan")


def fit_weights(
    model: RNNW,
    v_in: torch.Tensor,
    v_target: torch.Tensor,
    iterations: int = 30,
    steps: int = 2000,
    lr: float = 0.05,
    seed: int = 0,
    tol: float = 0.0,
    lr_decay: float = 1e-3,
) -> FitResult:
    """Learn W by gradient descent (Adam) through the unrolled RNN.

    Parameters
    ----------
    model : the :class:`RNNW` (its device/dtype must match the data).
    v_in : (batch, n_inputs) input fluxes; v_target : (batch, n) reference (pFBA) fluxes.
    iterations : unrolled steps L; steps : optimiser steps; lr : Adam learning rate.
    tol : stop early once max |V^L - V_target| <= tol (0: never).
    lr_decay : the learning rate decays exponentially to ``lr * lr_decay`` at the last step
        (the min-over-substrates rule makes the loss non-smooth where two substrates tie, and
        a constant step size keeps zig-zagging across that kink).

    The loss is the mean squared error between ``V^L`` and ``v_target`` over all fluxes.
    """
    if v_target.shape != (v_in.shape[0], model.n):
        raise ValueError(
            f"v_target must have shape ({v_in.shape[0]}, {model.n}), got {tuple(v_target.shape)}"
        )
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay ** (1.0 / max(steps, 1)))
    result = FitResult()
    for _ in range(steps):
        opt.zero_grad()
        V = model(v_in, iterations=iterations)
        loss = torch.mean((V - v_target) ** 2)
        result.loss.append(float(loss.detach()))
        if tol > 0 and float((V.detach() - v_target).abs().max()) <= tol:
            break  # the current weights are good enough: keep them
        loss.backward()
        opt.step()
        sched.step()
        model.project_()
    with torch.no_grad():
        V = model(v_in, iterations=iterations)
        result.max_abs_error = float((V - v_target).abs().max())
    return result
