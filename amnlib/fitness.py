"""The flux PINN on a user's own gene-deletion fitness table: fit, validate, save, load, predict.

The workflow of ``amnlib fit-pinn --model MODEL --fitness CSV --out DIR``:

1. :func:`amnlib.userdata.read_fitness_table` reads and checks the table (gene ids of the model,
   fitness = growth relative to the wild type, >= 0);
2. :func:`fit_fitness` holds out a fraction of the double deletions, trains the PINN of
   :mod:`amnlib.pinn` on the rest (all single deletions included), reports the held-out error,
   then (by default) trains again on every row for the saved model;
3. :func:`save_fitness_model` writes a model directory (:mod:`amnlib.modeldir`): weights, the
   settings, the genes, the wild-type growth, the report and a parity figure;
4. :func:`load_fitness_model` reads it back for the same network (another network is refused)
   and :func:`predict_deletions` predicts the fitness of deletions never measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from amnlib.network import MetabolicNetwork
from amnlib.pinn import FluxPhysics, FluxPINN, PINNConfig, TrainedPINN, pearson, spearman

KIND = "fitness-pinn"


@dataclass
class FitnessFit:
    """A PINN fitted to a fitness table.

    ``trained``: the final model; ``table``: the rows used (gene1, gene2, kind, fitness);
    ``genes``: genes named in the table; ``wt_growth``: wild-type growth (h^-1) of the network's
    medium; ``validation``: held-out metrics (empty without held-out rows) and ``held_out``: the
    held-out predictions (gene1, gene2, fitness, predicted).
    """

    trained: TrainedPINN
    table: pd.DataFrame
    genes: list[str]
    wt_growth: float
    validation: dict[str, Any] = field(default_factory=dict)
    held_out: pd.DataFrame | None = None


#: Optimiser steps the automatic sizing aims at (:func:`sized_config`): the chapter's full run
#: (about 4,700 deletions, batch 128, 80 epochs) takes about 3,000.
TARGET_STEPS = 3000


def sized_config(n_rows: int, base: PINNConfig | None = None, epochs: int | None = None,
                 steps: int = TARGET_STEPS) -> PINNConfig:
    """``base`` sized for a table of ``n_rows`` training deletions: a batch of at most
    ``base.batch_size`` and at least 8 batches an epoch (small tables get small batches), and,
    unless ``epochs`` is given, enough epochs for about ``steps`` optimiser steps (at most
    2,000 epochs). Measured on a 16-gene textbook table (112 training rows): 40 epochs of batch
    128 (40 steps) gave held-out Pearson r 0.93 and RMSE 0.47; 300 epochs of batch 8 (4,200
    steps) r 1.00, RMSE 0.09."""
    base = base or PINNConfig()
    if n_rows < 1:
        raise ValueError("no deletions to train on")
    batch = max(1, min(base.batch_size, max(8, n_rows // 8)))
    per_epoch = -(-n_rows // batch)
    if epochs is None:
        epochs = min(2000, max(1, -(-steps // per_epoch)))
    return replace(base, batch_size=batch, epochs=epochs)


def _pairs(table: pd.DataFrame) -> list[tuple]:
    return list(zip(table["gene1"], table["gene2"], strict=True))


def _wild_type(net: MetabolicNetwork):
    ref = net.solve()  # pFBA at the FBA optimum
    if not ref.ok:
        raise ValueError(f"the wild type of {net.name!r} does not grow on the model's medium "
                         f"({ref.status}); fitness is relative to its growth")
    return ref


def fit_fitness(
    net: MetabolicNetwork,
    table: pd.DataFrame,
    config: PINNConfig | None = None,
    validation_fraction: float = 0.2,
    refit: bool = True,
    seed: int = 0,
    device=None,
    log=print,
) -> FitnessFit:
    """Train the PINN on ``table`` (as returned by :func:`amnlib.userdata.read_fitness_table`).

    ``validation_fraction`` of the double deletions (seeded) are held out and predicted by a
    model trained on the other rows: Pearson/Spearman r and RMSE against the measured fitness,
    mean ||S v||^2 ((mmol/gDW/h)^2) and bound violation relative to the largest wild-type flux.
    With ``refit`` the returned model is then trained on every row. ``log``: progress messages
    (``None`` for silence).
    """
    from amnlib.deletions import knockout_mask, split_train_test
    from amnlib.pinn import physics_metrics, train_pinn

    log = log or (lambda *_: None)
    config = config or PINNConfig()
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    table = table.reset_index(drop=True)
    n_doubles = int((table["kind"] == "double").sum())
    if validation_fraction and n_doubles < 2:
        raise ValueError(f"{n_doubles} double deletion(s) in the table: at least 2 are needed to "
                         "hold some out (or pass validation_fraction=0)")
    ref = _wild_type(net)
    ko = knockout_mask(net, _pairs(table))
    y = table["fitness"].to_numpy(dtype=float)
    genes = sorted({g for g in table["gene1"]} | {g for g in table["gene2"] if isinstance(g, str)})
    validation: dict[str, Any] = {}
    held_out = None
    if validation_fraction:
        train, test = split_train_test(table, validation_fraction, seed)
        log(f"training on {len(train)} deletions, {len(test)} double deletions held out "
            f"({config.epochs} epochs)")
        model = train_pinn(net, ko[train], y[train], ref.growth, replace(config, seed=seed),
                           device, v_start=ref.v)
        metrics = physics_metrics(model, ko[test], y[test], float(ref.v.max()))
        pred = model.predict(ko[test])
        validation = {**metrics, "n_train": int(len(train)), "n_held_out": int(len(test)),
                      "seconds": model.seconds}
        held_out = table.iloc[test][["gene1", "gene2", "fitness"]].assign(predicted=pred)
        log(f"held-out doubles: Pearson r {metrics['pearson_r']:.3f}, RMSE {metrics['rmse']:.3f}"
            f", mean ||Sv||^2 {metrics['sv2']:.2e} ({model.seconds:.1f} s)")
        if not refit:
            return FitnessFit(model, table, genes, ref.growth, validation, held_out)
    log(f"training on all {len(table)} deletions ({config.epochs} epochs)")
    model = train_pinn(net, ko, y, ref.growth, replace(config, seed=seed), device, v_start=ref.v)
    return FitnessFit(model, table, genes, ref.growth, validation, held_out)


def predict_deletions(trained: TrainedPINN, net: MetabolicNetwork,
                      deletions: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Predicted fitness of ``deletions`` (gene tuples of length 1 or 2): columns gene1, gene2,
    predicted. Unknown genes are a ``ValueError`` naming them."""
    from amnlib.deletions import knockout_mask

    rows = [tuple(d) for d in deletions]
    for d in rows:
        if not 1 <= len(d) <= 2:
            raise ValueError(f"a deletion names one or two genes, got {d!r}")
    pred = trained.predict(knockout_mask(net, rows)) if rows else np.zeros(0)
    return pd.DataFrame({"gene1": [d[0] for d in rows],
                         "gene2": [d[1] if len(d) == 2 else None for d in rows],
                         "predicted": pred})


def unseen_doubles(table: pd.DataFrame, genes: Sequence[str] | None = None,
                   limit: int | None = None) -> list[tuple[str, str]]:
    """Pairs of ``genes`` (default: the table's genes) that the table does not measure, in
    sorted order; at most ``limit`` of them."""
    genes = sorted(genes if genes is not None else
                   {*table["gene1"], *(g for g in table["gene2"] if isinstance(g, str))})
    seen = {frozenset(p for p in pair if isinstance(p, str)) for pair in _pairs(table)}
    out = []
    for pair in combinations(genes, 2):
        if frozenset(pair) not in seen:
            out.append(pair)
            if limit is not None and len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------------- save / load
def save_fitness_model(fit: FitnessFit, net: MetabolicNetwork, out: str | Path,
                       predictions: pd.DataFrame | None = None, overwrite: bool = False) -> Path:
    """Write ``fit`` as a model directory: ``weights.pt`` (state dict), ``table.csv`` (the
    training table), ``report.json`` (held-out metrics), ``parity.png`` (held-out fitness,
    predicted vs measured) when there are held-out rows, ``predictions.csv`` when
    ``predictions`` (from :func:`predict_deletions`) are given, and the manifest."""
    from amnlib.modeldir import write_model_dir

    model = fit.trained.model
    arch = {"n": model.n, "basis_shape": list(model.basis.shape) if model.basis is not None
            else None}

    def write(tmp: Path) -> dict[str, Any]:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   tmp / "weights.pt")
        fit.table.to_csv(tmp / "table.csv", index=False)
        if predictions is not None:
            predictions.to_csv(tmp / "predictions.csv", index=False)
        report = {"validation": fit.validation, "wt_growth": fit.wt_growth,
                  "n_deletions": int(len(fit.table)), "genes": fit.genes,
                  "train_seconds": fit.trained.seconds}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        if fit.held_out is not None and len(fit.held_out):
            from amnlib.plotting import parity_figure

            parity_figure(fit.held_out["fitness"], fit.held_out["predicted"],
                          f"PINN, held-out double deletions (r = "
                          f"{fit.validation['pearson_r']:.3f})").savefig(tmp / "parity.png",
                                                                         dpi=150)
        return {"wt_growth": fit.wt_growth, "architecture": arch}

    return write_model_dir(out, KIND, write, network=net, settings=asdict(fit.trained.config),
                           overwrite=overwrite)


def load_fitness_model(directory: str | Path, net: MetabolicNetwork, device=None) -> TrainedPINN:
    """The PINN saved in ``directory``, for ``net`` (``ValueError`` if it was trained on
    another network)."""
    from amnlib.modeldir import check_network, read_manifest
    from amnlib.runtime import pick_device

    manifest = read_manifest(directory, KIND)
    check_network(manifest, net)
    device = device or pick_device()
    config = PINNConfig(**manifest["settings"])
    state = torch.load(Path(directory) / "weights.pt", map_location=device, weights_only=True)
    basis = state.get("basis")
    model = FluxPINN(net.n, basis, config.emb_dim, config.hidden, config.beta,
                     config.hard_knockouts, config.project, config.null_space).to(device)
    model.load_state_dict(state)
    physics = FluxPhysics(net, manifest["wt_growth"], device=device,
                          maintenance=config.maintenance)
    return TrainedPINN(model, physics, config)


__all__ = ["FitnessFit", "fit_fitness", "load_fitness_model", "predict_deletions",
           "save_fitness_model", "unseen_doubles", "pearson", "spearman"]
