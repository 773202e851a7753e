"""Chapter 3's genome-scale row: AMNs on iML1515 (Table 1, last row; offline iJO1366).

The Table 1 protocol of :mod:`amnlib.training` on a genome-scale network: pFBA training and test
sets drawn from the medium specification ``iML1515`` (38 uptakes of the 110-media experiment:
28 compounds always present at 2.2 mmol gDW^-1 h^-1, 10 carbon sources at one of 100 levels up
to 2.2), an AMN (default AMN-QP, dense prior + QP mechanistic layer, UB mode) trained on the
growth rate with the constraint terms, and its held-out biomass Q^2 and ``||SV||^2``.

:func:`train_genome_amn` is what ``benchmarks/bench_amn_genome.py`` runs; the generator caches
the pFBA sets on disk, so a re-run only pays for the training.
The paper's row (:data:`PAPER_GENOME`), the committed benchmark record and the comparison
table tie it to the paper; the training itself uses only the library.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from amnlib import papers
from amnlib.network import MetabolicNetwork

__all__ = [
    "GenomeResult",
    "load_genome_network",
    "train_genome_amn",
    "committed_result",
    "comparison_table",
    "PAPER_GENOME",
]

#: The preprint's Table 1 iML1515 row (AMN RNN-EB, biomass target, timestep 1, 289.43k
#: parameters): 10,000 training samples (ratio 0.5, pFBA, like every Table 1 row) and 500
#: epochs; and the published code's final validation R^2 of its iML1515 AMN-QP
#: (:func:`amnlib.papers.genome_dict`).
PAPER_GENOME: dict[str, Any] = papers.genome_dict()


@dataclass
class GenomeResult:
    """Outcome of :func:`train_genome_amn`.

    ``q2`` biomass Q^2 on the held-out test media, ``sv2`` their mean ``||SV||^2``
    ((mmol gDW^-1 h^-1)^2), ``r2_train`` growth R^2 on the training media, ``sv2_train``,
    ``seconds_per_epoch`` (median training epoch, s), ``seconds`` (generate, fit), sizes, the
    trained ``model`` and its training ``history`` (:class:`amnlib.training.History`).
    """

    model: Any
    network: str
    architecture: str
    layer_preset: str
    n_train: int
    n_test: int
    epochs: int
    batch_size: int
    q2: float
    sv2: float
    r2_train: float
    sv2_train: float
    seconds_per_epoch: float
    seconds: dict[str, float] = field(default_factory=dict)
    history: Any = None
    generator: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-able record (no model)."""
        keys = ("network", "architecture", "layer_preset", "n_train", "n_test", "epochs",
                "batch_size", "q2", "sv2", "r2_train", "sv2_train", "seconds_per_epoch", "seconds",
                "generator")
        out = {k: getattr(self, k) for k in keys}
        if self.history is not None:
            out["val_q2_curve"] = [round(float(v), 5) for v in self.history.val_q2]
        return out


def load_genome_network(prefer: str = "iML1515", spec: str = "iML1515") -> tuple[
    MetabolicNetwork, list[str]
]:
    """The genome-scale network with the uptakes of ``spec`` as its medium columns: ``prefer``
    when COBRApy can load it, else iJO1366 (offline). Returns ``(network, notes)``."""
    from amnlib.data import load_medium_spec
    from amnlib.experiments.reservoir import load_network

    return load_network(prefer, list(load_medium_spec(spec).index))


def train_genome_amn(
    network: MetabolicNetwork,
    spec: str = "iML1515",
    size: int = 2000,
    test_size: int = 500,
    epochs: int = 40,
    architecture: str = "AMN-QP",
    batch_size: int = 100,
    lr: float = 3e-3,
    ratio: float | None = 0.5,
    seed: int = 0,
    n_jobs: int | None = 1,
    device: torch.device | None = None,
    eval_every: int = 5,
    progress: bool = False,
    layer_preset: str = "network",
) -> GenomeResult:
    """Train an AMN on pFBA samples of a genome-scale network (biomass target).

    ``size`` training and ``test_size`` test media are drawn from ``spec`` (``ratio``: the
    probability that each carbon source is present; ``None`` keeps the spec's own, which for
    ``iML1515`` is 0, i.e. exactly one carbon source per medium) with two independent generator
    seeds, solved by pFBA (cached on disk by :func:`amnlib.simulate.generate`), and the AMN is
    trained with Adam (cosine schedule) for ``epochs``; the test set is evaluated every
    ``eval_every`` epochs (``history.val_q2``). ``layer_preset``: step sizes of the QP/LP layer
    (:data:`amnlib.models.LAYER_PRESETS`; ``"network"`` projects onto ``S V = 0``, ``"paper"``
    the published steps, about 3x cheaper per sample on iJO1366).
    """
    from amnlib.models import AMN
    from amnlib.runtime import pick_device, seed_everything
    from amnlib.simulate import generate
    from amnlib.training import evaluate, fit

    device = device or pick_device()
    seed_everything(seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train = generate(network, spec, size=size, seed=seed, ratio=ratio, n_jobs=n_jobs,
                         progress=progress)  # fmt: skip
        test = generate(network, spec, size=test_size, seed=seed + 1000, ratio=ratio,
                        n_jobs=n_jobs, progress=progress)  # fmt: skip
    t_gen = time.perf_counter() - t0
    cols = [train.x_ids.index(i) for i in network.in_ids]
    X, Xt = train.X[:, cols], test.X[:, cols]
    amn = AMN(network, architecture, x_scale=np.maximum(X.max(axis=0), 1e-6),
              layer_preset=layer_preset).to(device)
    t1 = time.perf_counter()
    hist = fit(amn, network, X, train.Y, target="biomass", epochs=epochs, batch_size=batch_size,
               lr=lr, X_val=Xt, Y_val=test.Y, eval_every=eval_every, seed=seed,
               progress=progress)  # fmt: skip
    t_fit = time.perf_counter() - t1
    ev = evaluate(amn, Xt, test.Y, target="biomass", S=network.S)
    ev_tr = evaluate(amn, X, train.Y, target="biomass", S=network.S)
    return GenomeResult(
        model=amn, network=network.name, architecture=architecture,
        layer_preset=str(amn.config().get("layer_preset")), n_train=len(X),
        n_test=len(Xt), epochs=int(epochs), batch_size=int(batch_size), q2=float(ev["q2"]),
        sv2=float(ev["sv2"]), r2_train=float(ev_tr["q2"]), sv2_train=float(ev_tr["sv2"]),
        seconds_per_epoch=hist.seconds_per_epoch,
        seconds={"generate": t_gen, "fit": t_fit,
                 "generate_uncached": float(train.metadata.get("seconds", 0.0))
                 + float(test.metadata.get("seconds", 0.0))},
        history=hist,
        generator={"spec": spec, "ratio": ratio, "method": "pfba",
                   "from_cache": bool(train.metadata.get("from_cache"))},
    )  # fmt: skip


#: The fields of a genome-scale run shown beside the paper.
SUMMARY_KEYS = ("network", "architecture", "layer_preset", "n_train", "n_test", "epochs",
                "batch_size", "q2", "sv2", "seconds_per_epoch")  # fmt: skip


def committed_result(path: str | Path) -> dict[str, Any] | None:
    """The ``result`` record (:data:`SUMMARY_KEYS`) of a JSON written by
    ``benchmarks/bench_amn_genome.py``, or ``None`` when the file does not exist."""
    import json

    path = Path(path)
    if not path.exists():
        return None
    result = json.loads(path.read_text())["result"]
    return {k: result[k] for k in SUMMARY_KEYS if k in result}


def comparison_table(runs: Mapping[str, GenomeResult | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run (a :class:`GenomeResult` or its summary dict), columns
    :data:`SUMMARY_KEYS`, and the paper's iML1515 row (:data:`PAPER_GENOME`) last."""
    rows = {}
    for name, run in runs.items():
        record = run.summary() if isinstance(run, GenomeResult) else run
        rows[name] = {k: record.get(k) for k in SUMMARY_KEYS}
    rows["paper (iML1515, Table 1)"] = {
        "network": PAPER_GENOME["model"], "architecture": "AMN-QP", "layer_preset": "paper",
        "n_train": PAPER_GENOME["training_set"], "epochs": PAPER_GENOME["epochs"],
        "q2": PAPER_GENOME["q2"], "seconds_per_epoch": PAPER_GENOME["seconds_per_epoch"],
    }  # fmt: skip
    return pd.DataFrame(rows).T[list(SUMMARY_KEYS)]
