"""Reaction mechanisms and concentration time series: :class:`Mechanism` (printer
:meth:`Mechanism.format`, parser :func:`parse_mechanism`), :class:`KineticsData`,
:func:`generate_data` (noisy simulations of any mechanism) and :func:`compare` (a learned
mechanism against a ground truth). Concentrations in a.u., time in s."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: Concentrations are clamped to at least this value before the logarithm (a.u.).
CLAMP_MIN = 1e-10

#: Printed number of significant digits of the mechanism printer.
DIGITS = 4


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
