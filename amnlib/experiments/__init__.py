"""The paper's experiments, and their registry run by ``amnlib reproduce NAME``.

This package holds what reproduces one figure or table of the papers: which data file, which
sizes, the paper's reference numbers (read from :mod:`amnlib.papers`), ``run(fast) -> Report``
and the chapter-specific figures. Its modules import the library (``amnlib.network``,
``amnlib.solvers``, ``amnlib.reservoir``, ...); the library never imports them.

Each chapter registers one experiment: a function ``run(fast: bool) -> Report``. The registry
stores import paths, so ``amnlib reproduce --list`` imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    """What an experiment measured.

    ``metrics``: our numbers (JSON-serialisable values, nested dicts allowed); ``paper``: the
    published numbers for the same keys where they exist; ``notes``: one-line remarks.
    """

    name: str
    metrics: dict[str, Any]
    paper: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON record: our metrics at the top level, the paper's under ``paper``."""
        return {**self.metrics, "paper": self.paper, "notes": self.notes}

    def table(self) -> str:
        """A plain-text table ``metric | ours | paper``."""
        rows = [("metric", "ours", "paper")]
        for key, value in _flatten(self.metrics).items():
            rows.append((key, _fmt(value), _fmt(_flatten(self.paper).get(key, ""))))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join([f"# {self.name}", *lines, *(f"note: {n}" for n in self.notes)])


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


#: name -> ("module:function", one-line description). Chapters add their line here.
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "network": (
        "amnlib.experiments.network:run",
        "split E. coli core / iJO1366 into unidirectional networks, check pFBA mass balance",
    ),
    "toy-rnnw": (
        "amnlib.experiments.toy_rnnw:run",
        "Fig. 1: learn the toy network's RNN-W weights from pFBA fluxes, V^30 vs COBRApy",
    ),
    "reservoir": (
        "amnlib.experiments.reservoir:run",
        "Fig. 4: AMN reservoir vs FBA/BFGS/OLS/XGBoost/RF/ANN on 110 measured E. coli media",
    ),
    "solvers": (
        "amnlib.experiments.solvers:run",
        "Fig. 2: RNN-EB, RNN-UB and restarted PDHG vs COBRApy on 50 textbook media",
    ),
    "pinn": (
        "amnlib.experiments.pinn:run",
        "Ch. 5: flux PINN on gene-deletion fitness (textbook doubles held out), essential genes",
    ),
    "amn": (
        "amnlib.experiments.amn:run",
        "Table 1: AMN-QP/LP/W vs ANN Dense/SV on 10,000 textbook pFBA samples, 5-fold + test",
    ),
    "crnn": (
        "amnlib.experiments.crnn:run",
        "Ch. 6: CRNN recovers 2A->B, A->C, C->D, B+D->E (stoichiometry, k) from noisy data",
    ),
}


def run_experiment(name: str, fast: bool = False) -> Report:
    """Run a registered experiment (``ValueError`` naming the known ones if unknown)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    target, _ = EXPERIMENTS[name]
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(fast=fast)
