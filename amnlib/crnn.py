"""Chemical reaction neural networks (CRNN): learning reaction mechanisms from concentrations.

A CRNN is a neural ODE whose weights *are* a mechanism :cite:`ji2021crnn`. For R candidate
reactions over S species it holds

* a stoichiometry matrix ``W_out`` of shape ``(R, S)`` (negative entries: reactants, positive
  entries: products),
* reaction orders ``N`` of shape ``(R, S)`` with ``N >= 0``, either tied to the reactant
  coefficients (``N = clamp(-W_out, 0, max_order)``) or learned separately,
* log rate constants ``ln k`` of shape ``(R,)``.

The mass-action rates and the right-hand side of the ODE are

    r = exp(ln k + ln(clamp(X, eps)) @ N^T)        shape (batch, R)
    dX/dt = r @ W_out                              shape (batch, S)

so one layer with an ``exp`` activation is a chemical kinetics model. Trained through an ODE
solver (torchdiffeq, adaptive ``dopri5`` by default, adjoint optional) on measured time series,
the pruned weights are read back as equations such as ``B + D -> E, k = 0.3``.

Units: concentrations in arbitrary units (a.u.), time in s, so a reaction of total order m has
k in a.u.^(1-m) s^-1.

Public surface: :class:`Mechanism` (printer :meth:`Mechanism.format` and parser
:func:`parse_mechanism`), :class:`CRNN`, :func:`generate_data`, :func:`crnn_loss`,
:func:`train`, :func:`prune`, :func:`compare` and the pipeline :func:`recover`. The paper's
chapter-6 experiment (case 1, its sizes and reference numbers, ``run()``, the chapter's studies)
lives in :mod:`amnlib.experiments.crnn`.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

#: Concentrations are clamped to at least this value before the logarithm (a.u.).
CLAMP_MIN = 1e-10

#: torchdiffeq's adaptive solvers (they accept a step budget).
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")

#: Printed number of significant digits of the mechanism printer.
DIGITS = 4


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
# Mechanisms: a plain, readable description of reactions (ground truth or learned)
# --------------------------------------------------------------------------------------------


@dataclass
class Mechanism:
    """A mass-action mechanism.

    ``species``: S names; ``stoich``: ``(R, S)`` net stoichiometry (products minus reactants);
    ``k``: ``(R,)`` rate constants (a.u.^(1-order) s^-1); ``orders``: ``(R, S)`` reaction orders
    (default: the reactant coefficients, i.e. elementary mass action).
    """

    species: list[str]
    stoich: np.ndarray
    k: np.ndarray
    orders: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.species = list(self.species)
        self.stoich = np.atleast_2d(np.asarray(self.stoich, dtype=float))
        self.k = np.atleast_1d(np.asarray(self.k, dtype=float))
        n_r, n_s = self.stoich.shape
        if n_s != len(self.species):
            raise ValueError(f"stoich has {n_s} columns but {len(self.species)} species given")
        if len(set(self.species)) != n_s:
            raise ValueError(f"species names must be unique, got {self.species}")
        for name in self.species:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"species name {name!r} must be an identifier "
                                 "(letters, digits, _)")
        if self.k.shape != (n_r,):
            raise ValueError(f"k has shape {self.k.shape}, expected ({n_r},)")
        if np.any(self.k < 0):
            raise ValueError(f"rate constants must be >= 0, got {self.k.tolist()}")
        if self.orders is None:
            self.orders = np.clip(-self.stoich, 0.0, None)
        self.orders = np.atleast_2d(np.asarray(self.orders, dtype=float))
        if self.orders.shape != self.stoich.shape:
            raise ValueError(f"orders shape {self.orders.shape} != stoich {self.stoich.shape}")
        if np.any(self.orders < 0):
            raise ValueError("reaction orders must be >= 0")

    @property
    def n_reactions(self) -> int:
        return self.stoich.shape[0]

    @property
    def n_species(self) -> int:
        return self.stoich.shape[1]

    def rhs(self, x: np.ndarray) -> np.ndarray:
        """dX/dt of shape ``(..., S)`` for concentrations ``x`` of shape ``(..., S)`` (a.u.)."""
        x = np.clip(np.asarray(x, dtype=float), CLAMP_MIN, None)
        rates = self.k * np.exp(np.log(x) @ self.orders.T)
        return rates @ self.stoich

    def equations(self, digits: int = DIGITS) -> list[str]:
        """One equation string per reaction, e.g. ``"B + 1.006 D -> 1.006 E"``."""
        return [_equation(row, self.species, digits) for row in self.stoich]

    def format(self, digits: int = DIGITS) -> str:
        """The mechanism as text, one reaction per line: ``LHS -> RHS, k = VALUE`` followed by
        ``, orders: A^n B^m`` only where the orders differ from the reactant coefficients.

        :func:`parse_mechanism` reads this text back (round trip up to ``digits`` significant
        digits)."""
        lines = []
        for row, k, order in zip(self.stoich, self.k, self.orders, strict=True):
            line = f"{_equation(row, self.species, digits)}, k = {_num(k, digits)}"
            reactant = np.clip(-row, 0.0, None)
            if not np.allclose(_round(order, digits), _round(reactant, digits)):
                terms = [
                    f"{s}^{_num(o, digits)}" for s, o in zip(self.species, order, strict=True)
                    if _round(o, digits) != 0
                ]
                line += ", orders: " + (" ".join(terms) if terms else "none")
            lines.append(line)
        return "\n".join(lines)

    def table(self, digits: int = 3) -> list[dict[str, object]]:
        """Rows ``{"equation", "k"}`` (for a DataFrame / the slides' tables)."""
        return [
            {"equation": eq, "k": float(_round(np.array([k]), digits)[0])}
            for eq, k in zip(self.equations(digits), self.k, strict=True)
        ]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready record: species, equations, stoichiometry, orders and k."""
        return {
            "species": self.species,
            "equations": self.equations(),
            "stoichiometry": (np.round(self.stoich, 6) + 0.0).tolist(),
            "orders": (np.round(self.orders, 6) + 0.0).tolist(),
            "k": [float(f"{k:.6g}") for k in self.k],
        }

    def simulate(
        self, x0: np.ndarray, t: np.ndarray, *, rtol: float = 1e-9, atol: float = 1e-11,
        method: str = "LSODA",
    ) -> np.ndarray:
        """Integrate with SciPy: ``x0`` ``(B, S)``, ``t`` ``(T,)`` -> ``(B, T, S)`` (all
        experiments as one stacked state; ``LSODA`` switches to a stiff method when needed)."""
        from scipy.integrate import solve_ivp

        x0 = np.atleast_2d(np.asarray(x0, dtype=float))
        if x0.shape[1] != self.n_species:
            raise ValueError(f"x0 has {x0.shape[1]} species, mechanism has {self.n_species}")
        b, s = x0.shape

        def f(_t: float, y: np.ndarray) -> np.ndarray:
            return self.rhs(y.reshape(b, s)).ravel()

        sol = solve_ivp(f, (float(t[0]), float(t[-1])), x0.ravel(), t_eval=t, method=method,
                        rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"integration failed: {sol.message}")
        return sol.y.T.reshape(len(t), b, s).transpose(1, 0, 2)


def _round(values: np.ndarray, digits: int) -> np.ndarray:
    return np.array([float(f"{v:.{digits}g}") if v != 0 else 0.0 for v in np.ravel(values)])


def _num(value: float, digits: int) -> str:
    return f"{float(value):.{digits}g}"


def _side(coeffs: np.ndarray, species: Sequence[str], digits: int) -> str:
    terms = []
    for c, name in zip(coeffs, species, strict=True):
        c = float(_round(np.array([c]), digits)[0])
        if c == 0:
            continue
        terms.append(name if c == 1 else f"{_num(c, digits)} {name}")
    return " + ".join(terms) if terms else "0"


def _equation(row: np.ndarray, species: Sequence[str], digits: int) -> str:
    lhs = _side(np.clip(-row, 0.0, None), species, digits)
    rhs = _side(np.clip(row, 0.0, None), species, digits)
    return f"{lhs} -> {rhs}"


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _parse_side(text: str, index: dict[str, int], line: str) -> np.ndarray:
    out = np.zeros(len(index))
    text = text.strip()
    if text in ("0", ""):
        return out
    for term in text.split("+"):
        m = re.fullmatch(rf"\s*({_NUM})?\s*([A-Za-z_][A-Za-z0-9_]*)\s*", term)
        if m is None:
            raise ValueError(f"cannot read term {term.strip()!r} in {line!r}")
        coeff, name = m.groups()
        if name not in index:
            raise ValueError(f"unknown species {name!r} in {line!r}; known: {list(index)}")
        out[index[name]] += float(coeff) if coeff else 1.0
    return out


def parse_mechanism(text: str, species: Sequence[str] | None = None) -> Mechanism:
    """Read the text written by :meth:`Mechanism.format`.

    One reaction per non-empty line, ``LHS -> RHS, k = VALUE[, orders: A^n B^m]``; lines starting
    with ``#`` are comments. ``species`` fixes the column order; by default the species appear
    in order of first mention. Raises ``ValueError`` naming the offending line."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ValueError("no reaction found in the mechanism text")
    if species is None:
        seen: list[str] = []
        for ln in lines:
            eq = ln.split(",")[0]
            for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", eq):
                if name not in seen:
                    seen.append(name)
            orders_part = re.search(r"orders:\s*(.*)$", ln)
            if orders_part:
                for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\^", orders_part.group(1)):
                    if name not in seen:
                        seen.append(name)
        species = seen
    index = {s: i for i, s in enumerate(species)}
    stoich, ks, orders = [], [], []
    for ln in lines:
        m = re.fullmatch(rf"(.*?)->(.*?),\s*k\s*=\s*({_NUM})\s*(?:,\s*orders:\s*(.*))?", ln)
        if m is None:
            raise ValueError(f"cannot read reaction line {ln!r}; expected 'LHS -> RHS, k = VALUE'")
        lhs, rhs, k, order_text = m.groups()
        left = _parse_side(lhs, index, ln)
        right = _parse_side(rhs, index, ln)
        stoich.append(right - left)
        ks.append(float(k))
        if order_text is None:
            orders.append(np.clip(left - right, 0.0, None))
        else:
            row = np.zeros(len(index))
            if order_text.strip() != "none":
                for name, val in re.findall(rf"([A-Za-z_][A-Za-z0-9_]*)\^({_NUM})", order_text):
                    if name not in index:
                        raise ValueError(f"unknown species {name!r} in orders of {ln!r}")
                    row[index[name]] = float(val)
            orders.append(row)
    return Mechanism(list(species), np.array(stoich), np.array(ks), np.array(orders))



# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class KineticsData:
    """Concentration time series of N experiments.

    ``t``: ``(T,)`` times (s); ``x0``: ``(N, S)`` initial concentrations (known, as designed);
    ``y``: ``(N, T, S)`` measured (noisy) concentrations; ``y_true``: the noise-free ones;
    ``species``: S names.
    """

    t: np.ndarray
    x0: np.ndarray
    y: np.ndarray
    y_true: np.ndarray
    species: list[str]

    def subset(self, idx: Sequence[int] | np.ndarray) -> KineticsData:
        """The experiments ``idx`` only."""
        idx = np.asarray(idx)
        return KineticsData(self.t, self.x0[idx], self.y[idx], self.y_true[idx], self.species)

    def to_frame(self, layout: str = "long"):
        """The measurements ``y`` as a pandas DataFrame in the CSV layouts that
        :func:`amnlib.userdata.read_time_series` reads: ``"long"`` (columns experiment, time,
        species, value) or ``"wide"`` (experiment, time, one column per species); experiments
        are named ``e1, e2, ...`` (zero-padded, so sorting keeps their order), times in s."""
        import pandas as pd

        n, t, s = self.y.shape
        width = len(str(n))
        exp = np.repeat([f"e{i + 1:0{width}d}" for i in range(n)], t)
        time_ = np.tile(self.t, n)
        wide = pd.DataFrame(self.y.reshape(n * t, s), columns=self.species)
        wide.insert(0, "time", time_)
        wide.insert(0, "experiment", exp)
        if layout == "wide":
            return wide
        if layout != "long":
            raise ValueError(f"unknown layout {layout!r}; use 'long' or 'wide'")
        return wide.melt(id_vars=["experiment", "time"], var_name="species",
                         value_name="value").sort_values(["experiment", "time"], kind="stable",
                                                         ignore_index=True)

    def tensors(self, device=None, dtype=torch.float64) -> tuple[torch.Tensor, ...]:
        """``(t, x0, y)`` as torch tensors on ``device``."""
        return tuple(torch.as_tensor(a, device=device, dtype=dtype)
                     for a in (self.t, self.x0, self.y))


def generate_data(
    mechanism: Mechanism,
    *,
    n_experiments: int = 30,
    n_times: int = 100,
    t_end: float = 40.0,
    initial: dict[str, tuple[float, float]] | None = None,
    noise: float = 0.05,
    seed: int = 0,
) -> KineticsData:
    """Simulate ``mechanism`` from random initial conditions and add multiplicative noise.

    ``initial`` maps species to a uniform range of initial concentrations (a.u.; default A and B
    in [0.2, 1.2], all other species 0). Measurements are ``y = y_true * (1 + noise * N(0, 1))``
    at ``n_times`` equally spaced times in [0, ``t_end``] s."""
    if initial is None:
        initial = {"A": (0.2, 1.2), "B": (0.2, 1.2)}
    for name in initial:
        if name not in mechanism.species:
            raise ValueError(f"initial condition for unknown species {name!r}; "
                             f"known: {mechanism.species}")
    if n_experiments < 1 or n_times < 2:
        raise ValueError(f"need n_experiments >= 1 and n_times >= 2, "
                         f"got {n_experiments}, {n_times}")
    rng = np.random.default_rng(seed)
    x0 = np.zeros((n_experiments, mechanism.n_species))
    for name, (lo, hi) in initial.items():
        x0[:, mechanism.species.index(name)] = rng.uniform(lo, hi, n_experiments)
    t = np.linspace(0.0, t_end, n_times)
    y_true = mechanism.simulate(x0, t)
    y = y_true * (1.0 + noise * rng.standard_normal(y_true.shape))
    return KineticsData(t, x0, y, y_true, list(mechanism.species))


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


# --------------------------------------------------------------------------------------------
# Loss, training, pruning
# --------------------------------------------------------------------------------------------


def _pad(x0: torch.Tensor, n_species: int) -> torch.Tensor:
    """Append zero initial concentrations for hidden (unmeasured) species: ``(N, S) ->
    (N, n_species)``."""
    if x0.shape[-1] > n_species:
        raise ValueError(f"data has {x0.shape[-1]} species, the model only {n_species}")
    if x0.shape[-1] == n_species:
        return x0
    return torch.cat([x0, x0.new_zeros(x0.shape[0], n_species - x0.shape[-1])], dim=-1)


def species_scale(y: torch.Tensor) -> torch.Tensor:
    """Per-species range ``max - min`` over experiments and times: ``(N, T, S) -> (S,)``."""
    flat = y.reshape(-1, y.shape[-1])
    return (flat.max(0).values - flat.min(0).values).clamp(min=1e-12)


def order_penalty(orders: torch.Tensor, max_total: float = 2.0) -> torch.Tensor:
    """``sum_r ReLU(sum_i n_ri - max_total)``: pushes each reaction to total order <= 2."""
    return torch.relu(orders.sum(-1) - max_total).sum()


def crnn_loss(
    pred: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    *,
    observed: Sequence[int] | None = None,
    kind: str = "mae",
) -> torch.Tensor:
    """Scaled error ``sum_i mean_{n,t} |pred - y| / scale_i`` over the observed species (the
    CRNN loss); ``kind="mse"`` gives the smooth ``sum_i mean ((pred - y) / scale_i)^2`` used by
    the quasi-Newton refinement.

    ``pred`` ``(N, T, S_model)``; ``y`` ``(N, T, S_data)``; ``scale`` ``(S_data,)``;
    ``observed``: the model columns matching the data columns (default: the first S_data)."""
    if observed is None:
        observed = list(range(y.shape[-1]))
    if len(observed) != y.shape[-1]:
        raise ValueError(f"{len(observed)} observed columns for {y.shape[-1]} data species")
    diff = (pred[..., list(observed)] - y) / scale
    if kind == "mae":
        return diff.abs().mean(dim=(0, 1)).sum()
    if kind == "mse":
        return diff.pow(2).mean(dim=(0, 1)).sum()
    raise ValueError(f"unknown loss kind {kind!r}; use 'mae' or 'mse'")


def integral_prediction(model: CRNN, t: torch.Tensor, x0: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """Integral matching: ``X(t_j) ~ x0 + int_0^t_j f(y(s)) ds`` with the trapezoid rule on the
    *measured* ``y`` ``(N, T, S)`` (``x0`` ``(N, S)`` at t = 0). No ODE solve: one batched
    right-hand-side evaluation, so a cheap, well-conditioned warm start; the integrand carries
    the measurement noise, so it is only a proxy of the trajectory loss."""
    states = y.clone()
    states[:, 0] = x0
    f = model(t, states)
    dt = (t[1:] - t[:-1])[None, :, None]
    inc = torch.cumsum(0.5 * (f[:, 1:] + f[:, :-1]) * dt, dim=1)
    return torch.cat([x0[:, None], x0[:, None] + inc], dim=1)


@dataclass
class TrainResult:
    """Loss history (``train``: one value per epoch or L-BFGS evaluation, ``val``: every
    ``val_every`` epochs, possibly empty), wall-clock seconds, and right-hand-side evaluations."""

    history: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "val": []})
    seconds: float = 0.0
    nfe: int = 0


def train(
    model: CRNN,
    data: KineticsData,
    *,
    epochs: int = 500,
    lr: float = 0.02,
    lr_final: float | None = None,
    optimizer: str = "adam",
    objective: str = "trajectory",
    loss: str | None = None,
    penalty: float = 0.0,
    val: KineticsData | None = None,
    observed: Sequence[int] | None = None,
    method: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    adjoint: bool = False,
    max_steps: int | None = 500,
    clip: float | None = 1.0,
    val_every: int = 10,
    history: TrainResult | None = None,
) -> TrainResult:
    """Fit ``model`` to ``data``; all experiments are integrated as one batched ODE state.

    ``optimizer="adam"``: full-batch Adam, ``epochs`` steps, cosine decay of the learning rate
    from ``lr`` to ``lr_final`` (default ``lr / 100``), gradient-norm clipping ``clip``.
    ``optimizer="lbfgs"``: L-BFGS with strong-Wolfe line search, at most ``epochs`` loss
    evaluations. ``objective="trajectory"`` integrates the ODE (``method``: any torchdiffeq
    solver, adaptive ``dopri5`` by default); ``"integral"`` uses :func:`integral_prediction`.
    ``loss``: ``"mae"`` (default for Adam) or ``"mse"`` (default for L-BFGS), plus
    ``penalty * order_penalty``. ``max_steps`` caps the adaptive solver's steps per solve (a
    stiff candidate then falls back to RK4 on the measurement grid, see
    :meth:`CRNN.simulate`). Appends to ``history`` when given."""
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'lbfgs'")
    if objective not in ("trajectory", "integral"):
        raise ValueError(f"unknown objective {objective!r}; use 'trajectory' or 'integral'")
    kind = loss or ("mae" if optimizer == "adam" else "mse")
    res = history if history is not None else TrainResult()
    device, dtype = model.w_out.device, model.w_out.dtype
    t, x0, y = data.tensors(device, dtype)
    hidden = len(model.species) - y.shape[-1]
    if objective == "integral" and hidden:
        raise ValueError(f"integral matching needs every species measured; {hidden} hidden")
    x0 = _pad(x0, len(model.species))
    scale = species_scale(y)
    if val is not None:
        tv, x0v, yv = val.tensors(device, dtype)
        x0v = _pad(x0v, len(model.species))
    start, nfe0 = time.perf_counter(), model.nfe
    params = [p for p in model.parameters() if p.requires_grad]
    count = [0]

    def objective_value() -> torch.Tensor:
        if objective == "integral":
            pred = integral_prediction(model, t, x0, y)
        else:
            pred = model.simulate(x0, t, method=method, rtol=rtol, atol=atol, adjoint=adjoint,
                                  max_steps=max_steps)
        value = crnn_loss(pred, y, scale, observed=observed, kind=kind)
        res.history["train"].append(value.item())
        if penalty:
            value = value + penalty * order_penalty(model.orders())
        if val is not None and (count[0] % val_every == 0):
            with torch.no_grad():
                pv = model.simulate(x0v, tv, method=method, rtol=rtol, atol=atol,
                                    max_steps=max_steps)
                res.history["val"].append(
                    crnn_loss(pv, yv, scale, observed=observed, kind=kind).item())
        count[0] += 1
        return value

    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
        lr_final = lr / 100 if lr_final is None else lr_final
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1),
                                                           eta_min=lr_final)
        for _ in range(epochs):
            opt.zero_grad()
            objective_value().backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
    else:
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=epochs, max_eval=epochs,
                                history_size=50, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-12, tolerance_change=1e-14)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            value = objective_value()
            value.backward()
            for p in params:  # a failed trial step must not poison the line search
                if p.grad is not None:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            return value

        opt.step(closure)
    res.seconds += time.perf_counter() - start
    res.nfe += model.nfe - nfe0
    return res


def warm_start(
    data: KineticsData,
    n_reactions: int,
    *,
    n_starts: int = 4,
    iterations: int = 300,
    tied_orders: bool = True,
    seed: int = 0,
    device=None,
    **model_kwargs,
) -> tuple[CRNN, list[float]]:
    """Multi-start integral matching: ``n_starts`` random CRNNs fitted by L-BFGS on
    :func:`integral_prediction`; returns the one whose simulated trajectories fit best (scaled
    MAE) and the trajectory losses of all starts."""
    best, best_loss, losses = None, float("inf"), []
    for i in range(n_starts):
        model = CRNN(data.species, n_reactions, tied_orders=tied_orders, seed=seed + i,
                     device=device, **model_kwargs)
        train(model, data, epochs=iterations, optimizer="lbfgs", objective="integral")
        try:
            value, _ = evaluate(model, data, rtol=1e-5, atol=1e-7, max_steps=500)
        except AssertionError:  # the solver gave up on a stiff, poor candidate
            value = float("inf")
        value = value if math.isfinite(value) else float("inf")
        losses.append(value)
        if value < best_loss:
            best, best_loss = model, value
    if best is None:
        raise RuntimeError("every warm start failed to integrate")
    return best, losses


def prune(model: CRNN, threshold: float = 0.01) -> int:
    """Zero (and freeze) weights with ``|w| < threshold``; deactivate reactions left without
    any stoichiometric coefficient. Returns the number of weights removed."""
    with torch.no_grad():
        small = (model.w_out.abs() < threshold) & (model.mask_out > 0)
        model.mask_out[small] = 0.0
        model.w_out[small] = 0.0
        removed = int(small.sum())
        if model.w_in is not None:
            small_in = (model.w_in.abs() < threshold) & (model.mask_in > 0)
            model.mask_in[small_in] = 0.0
            model.w_in[small_in] = 0.0
            removed += int(small_in.sum())
        empty = model.mask_out.sum(1) == 0
        model.active[empty] = 0.0
    return removed


def evaluate(
    model: CRNN, data: KineticsData, *, observed: Sequence[int] | None = None,
    scale: np.ndarray | None = None, method: str = "dopri5", rtol: float = 1e-7,
    atol: float = 1e-9, options: dict | None = None, max_steps: int | None = 500,
) -> tuple[float, np.ndarray]:
    """Scaled MAE of ``model`` on ``data`` and its trajectories ``(N, T, S_model)``."""
    device, dtype = model.w_out.device, model.w_out.dtype
    t, x0, y = data.tensors(device, dtype)
    sc = species_scale(y) if scale is None else torch.as_tensor(scale, device=device, dtype=dtype)
    with torch.no_grad():
        pred = model.simulate(_pad(x0, len(model.species)), t, method=method, rtol=rtol,
                              atol=atol, options=options, max_steps=max_steps)
        loss = crnn_loss(pred, y, sc, observed=observed)
    return float(loss), pred.cpu().numpy()


# --------------------------------------------------------------------------------------------
# Comparison with a ground truth
# --------------------------------------------------------------------------------------------


def compare(learned: Mechanism, truth: Mechanism, tol: float = 1e-9) -> dict[str, object]:
    """Match learned reactions to true ones (Hungarian assignment on stoichiometry) and report
    ``max_stoich_error`` (largest |coefficient difference|), ``max_rel_k_error``, the matched
    pairs, and ``n_spurious``: learned reactions without a true partner plus matched reactions
    whose non-zero pattern differs from the truth."""
    from scipy.optimize import linear_sum_assignment

    if learned.species != truth.species:
        raise ValueError(f"species differ: {learned.species} vs {truth.species}")
    if learned.n_reactions == 0:
        return {"max_stoich_error": float("inf"), "max_rel_k_error": float("inf"),
                "n_spurious": 0, "n_missing": truth.n_reactions, "pairs": []}
    cost = np.abs(learned.stoich[:, None, :] - truth.stoich[None, :, :]).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    stoich_err = np.abs(learned.stoich[rows] - truth.stoich[cols])
    rel_k = np.abs(learned.k[rows] - truth.k[cols]) / truth.k[cols]
    pattern_bad = ((np.abs(learned.stoich[rows]) > tol) != (np.abs(truth.stoich[cols]) > tol))
    n_spurious = (learned.n_reactions - len(rows)) + int(pattern_bad.any(1).sum())
    return {
        "max_stoich_error": float(stoich_err.max()),
        "max_rel_k_error": float(rel_k.max()),
        "n_spurious": int(n_spurious),
        "n_missing": int(truth.n_reactions - len(rows)),
        "pairs": [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)],
    }


# --------------------------------------------------------------------------------------------
# The whole recovery pipeline and the registered experiment
# --------------------------------------------------------------------------------------------


@dataclass
class Recovery:
    """Outcome of :func:`recover`: the trained model, its mechanism, the comparison with the
    truth, loss histories (before and after pruning) and the training seconds."""

    model: CRNN
    learned: Mechanism
    comparison: dict[str, object]
    history: dict[str, list[float]]
    seconds: float
    train: KineticsData
    val: KineticsData
    n_pruned: int
    simplify_steps: list[str] = field(default_factory=list)


def recover(
    truth: Mechanism,
    *,
    n_reactions: int | None = None,
    n_experiments: int = 30,
    n_train: int = 20,
    n_times: int = 100,
    noise: float = 0.05,
    n_starts: int = 4,
    warm_iterations: int = 300,
    epochs: int = 150,
    retrain_epochs: int = 100,
    threshold: float = 0.01,
    tied_orders: bool = True,
    method: str = "dopri5",
    simplify: bool = True,
    seed: int = 0,
    device=None,
) -> Recovery:
    """The recovery pipeline: noisy data from ``truth``, a multi-start integral
    matching warm start (:func:`warm_start`), L-BFGS on the simulated trajectories (adaptive
    ``dopri5``, ``epochs`` evaluations), pruning ``|w| < threshold``, re-training
    (``retrain_epochs``), and the comparison with the truth. ``method``: the solver of the
    trajectory stages (``"rk4"``: fixed steps on the measurement grid, cheaper and immune to
    stiff candidates). ``simplify``: finish with :func:`amnlib.discovery.simplify` (integer
    snap, pruning and reaction elimination, each kept only when the validation experiments'
    error stays within one paired standard error of the best; k re-fitted with dopri5), so no
    small coefficient that the data do not need survives the fixed threshold (tied orders
    only)."""
    with single_thread():
        return _recover(truth, n_reactions, n_experiments, n_train, n_times, noise, n_starts,
                        warm_iterations, epochs, retrain_epochs, threshold, tied_orders, method,
                        simplify, seed, device)


def _recover(truth, n_reactions, n_experiments, n_train, n_times, noise, n_starts,
             warm_iterations, epochs, retrain_epochs, threshold, tied_orders, method, simplify,
             seed, device) -> Recovery:
    n_reactions = truth.n_reactions if n_reactions is None else n_reactions
    data = generate_data(truth, n_experiments=n_experiments, n_times=n_times, noise=noise,
                         seed=seed)
    tr, va = data.subset(np.arange(n_train)), data.subset(np.arange(n_train, n_experiments))
    start = time.perf_counter()
    model, _ = warm_start(tr, n_reactions, n_starts=n_starts, iterations=warm_iterations,
                          tied_orders=tied_orders, seed=seed, device=device)
    warm_seconds = time.perf_counter() - start
    res = train(model, tr, epochs=epochs, optimizer="lbfgs", method=method, val=va, val_every=5)
    removed = prune(model, threshold)
    res = train(model, tr, epochs=retrain_epochs, optimizer="lbfgs", method=method, val=va,
                val_every=5, history=res)
    # weights may shrink below the threshold while re-training: a second, final pass
    again = prune(model, threshold)
    if again:
        res = train(model, tr, epochs=max(retrain_epochs // 2, 1), optimizer="lbfgs",
                    method=method, val=va, val_every=5, history=res)
    removed += again
    steps: list[str] = []
    if simplify and tied_orders:
        from amnlib.discovery import simplify as _simplify

        start = time.perf_counter()
        model, _ = _simplify(model, tr, val=va, epochs=max(retrain_epochs // 2, 1),
                             k_epochs=25, method=method, device=device, steps=steps)
        warm_seconds += time.perf_counter() - start
    learned = model.mechanism()
    return Recovery(model, learned, compare(learned, truth), res.history,
                    res.seconds + warm_seconds, tr, va, removed, steps)


def discover(data: KineticsData, n_reactions: int | None = None, **kwargs):
    """Discover a mechanism from any concentration time series: the chapter's pipeline with a
    rate-law warm start, BIC-judged integer snap / pruning / reaction elimination and, when
    ``n_reactions`` is None, the count chosen by held-out error. See
    :func:`amnlib.discovery.discover` (keywords) and :class:`amnlib.discovery.Discovery`."""
    from amnlib.discovery import discover as _discover

    return _discover(data, n_reactions, **kwargs)


def plot_trajectories(ax, data: KineticsData, pred: np.ndarray, experiment: int = 0,
                      species: Sequence[str] | None = None):
    """Measured (dots) and fitted (lines) concentrations (a.u.) against time (s) of one
    experiment; ``pred`` ``(N, T, S_model)`` from :func:`evaluate`."""
    import matplotlib.pyplot as plt

    species = list(data.species if species is None else species)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(species):
        j = data.species.index(name)
        c = colors[i % len(colors)]
        ax.plot(data.t, data.y[experiment, :, j], "o", ms=3, alpha=0.6, color=c)
        ax.plot(data.t, pred[experiment, :, j], "-", lw=1.8, color=c, label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("concentration (a.u.)")
    ax.legend(frameon=False, ncol=len(species))
    return ax


__all__ = [
    "CLAMP_MIN", "CRNN", "KineticsData", "Mechanism", "Recovery", "TrainResult",
    "compare", "crnn_loss", "discover", "evaluate", "generate_data",
    "integral_prediction", "single_thread", "order_penalty", "plot_trajectories",
    "parse_mechanism", "prune", "recover", "species_scale", "train", "warm_start",
]
