"""The CRNN itself: a neural ODE whose weights are a mechanism (:class:`CRNN`), and the
solver helpers it uses (:func:`single_thread`, fixed-step ``"rk4xN"`` methods)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from amnlib.crnn.mechanism import CLAMP_MIN, Mechanism

#: torchdiffeq's adaptive solvers (they accept a step budget).
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block (restored afterwards). CRNN tensors are
    tiny, so intra-op threads only add synchronisation, which on a busy machine costs more than
    the arithmetic (10x slow-downs measured on the shared 2-core CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_SUBSTEPS = re.compile(r"(rk4|midpoint|euler)x(\d+)$")


def _substeps(method: str, t: torch.Tensor, options: dict | None) -> tuple[str, dict | None]:
    """``"rk4x4"``: fixed-step RK4 with 4 steps per smallest interval of the output grid ``t``
    (``"rk4"`` alone steps on the grid itself). Other methods pass through unchanged."""
    match = _SUBSTEPS.match(method)
    if match is None:
        return method, options
    n = int(match.group(2))
    if n < 1:
        raise ValueError(f"solver {method!r}: the number of steps per interval must be >= 1")
    step = float(torch.diff(t).min()) / n if t.numel() > 1 else None
    return match.group(1), {**(options or {}), **({"step_size": step} if step else {})}


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class CRNN(nn.Module):
    """A chemical reaction neural network with ``n_reactions`` candidate reactions.

    ``tied_orders=True``: orders are ``clamp(-W_out, 0, max_order)`` (elementary mass action,
    the original CRNN); ``False``: orders are separate non-negative weights ``W_in``.
    ``lnk_bounds``: ``ln k`` is clamped to this range (a.u., s) -- a wide range lets the network
    reach the fast (stiff) reactions of a pre-equilibrium. Parameters are float64 by default.
    """

    def __init__(
        self,
        species: Sequence[str],
        n_reactions: int,
        *,
        tied_orders: bool = True,
        max_order: float = 2.5,
        lnk_bounds: tuple[float, float] = (-20.0, 10.0),
        init_scale: float = 0.1,
        seed: int | None = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if n_reactions < 1:
            raise ValueError(f"n_reactions must be >= 1, got {n_reactions}")
        if lnk_bounds[0] >= lnk_bounds[1]:
            raise ValueError(f"lnk_bounds must be increasing, got {lnk_bounds}")
        self.species = list(species)
        self.tied_orders = tied_orders
        self.max_order = float(max_order)
        self.lnk_bounds = (float(lnk_bounds[0]), float(lnk_bounds[1]))
        n_s = len(self.species)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        kw = {"dtype": dtype}
        self.w_out = nn.Parameter(
            (init_scale * torch.randn(n_reactions, n_s, generator=gen, **kw)).to(device))
        self.ln_k = nn.Parameter(
            (0.1 * torch.randn(n_reactions, generator=gen, **kw) - 1.0).to(device))
        if tied_orders:
            self.register_parameter("w_in", None)
        else:
            self.w_in = nn.Parameter(
                (init_scale * torch.rand(n_reactions, n_s, generator=gen, **kw)).to(device))
        self.register_buffer("mask_out", torch.ones(n_reactions, n_s, dtype=dtype, device=device))
        self.register_buffer("mask_in", torch.ones(n_reactions, n_s, dtype=dtype, device=device))
        self.register_buffer("active", torch.ones(n_reactions, dtype=dtype, device=device))
        self.nfe = 0
        self._cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # -- weights read as chemistry ---------------------------------------------------------
    @property
    def n_reactions(self) -> int:
        return self.w_out.shape[0]

    def stoichiometry(self) -> torch.Tensor:
        """``(R, S)`` stoichiometric matrix ``W_out`` (pruned entries are 0)."""
        return self.w_out * self.mask_out * self.active[:, None]

    def orders(self) -> torch.Tensor:
        """``(R, S)`` reaction orders, ``>= 0``."""
        if self.tied_orders:
            return torch.clamp(-self.stoichiometry(), 0.0, self.max_order)
        return torch.clamp(self.w_in * self.mask_in, 0.0, self.max_order)

    def log_k(self) -> torch.Tensor:
        """``(R,)`` ln k clamped to ``lnk_bounds``."""
        return torch.clamp(self.ln_k, *self.lnk_bounds)

    # -- kinetics --------------------------------------------------------------------------
    def rates(self, x: torch.Tensor) -> torch.Tensor:
        """Mass-action rates ``r = exp(ln k + ln(clamp(x)) @ N^T)``: ``(..., S) -> (..., R)``
        (a.u. s^-1); inactive (pruned) reactions have rate 0."""
        if x.shape[-1] != len(self.species):
            raise ValueError(f"x has {x.shape[-1]} species, the CRNN has {len(self.species)}")
        log_x = torch.log(torch.clamp(x, min=CLAMP_MIN))
        return torch.exp(self.log_k() + log_x @ self.orders().T) * self.active

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ODE right-hand side ``dX/dt = r @ W_out``: ``(..., S) -> (..., S)`` (a.u. s^-1).

        Inside :meth:`simulate` the weights are read once per solve (a cache), not per call."""
        self.nfe += 1
        if self._cache is not None:
            log_k, orders_t, stoich = self._cache
        else:
            log_k, orders_t, stoich = self.log_k(), self.orders().T, self.stoichiometry()
        log_x = torch.log(torch.clamp(x, min=CLAMP_MIN))
        return torch.exp(log_x @ orders_t + log_k) @ stoich

    def simulate(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        *,
        method: str = "dopri5",
        rtol: float = 1e-6,
        atol: float = 1e-8,
        adjoint: bool = False,
        options: dict | None = None,
        max_steps: int | None = 2000,
        fallback: str | None = "rk4",
    ) -> torch.Tensor:
        """Integrate all experiments as one batched state: ``x0`` ``(B, S)``, ``t`` ``(T,)``
        -> ``(B, T, S)``. ``method`` is any torchdiffeq solver (adaptive ``dopri5`` by default,
        ``"scipy_solver"`` with ``options={"solver": "Radau"}`` for stiff problems);
        ``adjoint=True`` back-propagates with the adjoint method (memory O(1) in time).

        Early in training, candidate reactions with small fractional orders make the ODE stiff
        near zero concentrations; an adaptive explicit solver then takes millions of tiny steps.
        ``max_steps`` caps the adaptive steps, after which the solve is redone with the fixed-step
        ``fallback`` (RK4 on the output grid; ``None`` re-raises)."""
        from torchdiffeq import odeint, odeint_adjoint

        x0 = x0.to(self.w_out)
        t = t.to(self.w_out)
        method, options = _substeps(method, t, options)
        if max_steps and method in _ADAPTIVE:
            options = {**(options or {}), "max_num_steps": max_steps}
        kwargs = {"method": method, "rtol": rtol, "atol": atol, "options": options}
        if adjoint:
            sol = odeint_adjoint(self, x0, t, adjoint_params=tuple(self.parameters()), **kwargs)
            return sol.transpose(0, 1)
        self._cache = (self.log_k(), self.orders().T, self.stoichiometry())
        try:
            sol = odeint(self, x0, t, **kwargs)
        except (RuntimeError, AssertionError):  # step budget exhausted or step underflow
            if fallback is None:
                raise
            sol = odeint(self, x0, t, method=fallback)
        finally:
            self._cache = None
        return sol.transpose(0, 1)

    # -- reading the mechanism -------------------------------------------------------------
    def mechanism(self, drop_inactive: bool = True) -> Mechanism:
        """The learned weights as a :class:`Mechanism` (pruned/inactive reactions dropped)."""
        with torch.no_grad():
            stoich = self.stoichiometry().cpu().numpy()
            orders = self.orders().cpu().numpy()
            k = torch.exp(self.log_k()).cpu().numpy()
            keep = self.active.cpu().numpy() > 0
        if drop_inactive:
            stoich, orders, k = stoich[keep], orders[keep], k[keep]
        return Mechanism(self.species, stoich, k, orders)

    @classmethod
    def from_mechanism(cls, mech: Mechanism, **kwargs) -> CRNN:
        """A CRNN holding ``mech`` exactly (orders tied when they equal the reactant
        coefficients, else separate)."""
        tied = np.allclose(mech.orders, np.clip(-mech.stoich, 0.0, None))
        kwargs.setdefault("tied_orders", tied)
        model = cls(mech.species, mech.n_reactions, **kwargs)
        with torch.no_grad():
            model.w_out.copy_(torch.as_tensor(mech.stoich))
            model.ln_k.copy_(torch.log(torch.as_tensor(mech.k).clamp(min=1e-300)))
            if model.w_in is not None:
                model.w_in.copy_(torch.as_tensor(mech.orders))
        return model
