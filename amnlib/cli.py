"""Command line.

* ``amnlib reproduce NAME [--fast] [--json PATH]``, ``amnlib reproduce --list``;
* ``amnlib generate --model textbook --spec e_coli_core --size 10000 --seed 0 --out PATH
  [--n-jobs N] [--method pfba|fba] [--ratio R] [--experimental]``: a pFBA training set
  (:func:`amnlib.simulate.generate`) saved as ``PATH`` (.npz + .json metadata);
* ``amnlib fit-reservoir --model MODEL --growth CSV --out DIR`` and ``amnlib predict --model-dir
  DIR --media CSV [--out CSV]``: the reservoir on a user's growth table
  (:mod:`amnlib.growth_workflow`);
* ``amnlib discover-mechanism --data CSV [--reactions N] [--out DIR]``: a CRNN mechanism from
  a user's concentration time series (:mod:`amnlib.discovery`).

Every command runs in one frame (:func:`framed`): an error caused by the user's input or
environment (:data:`USER_ERRORS`: a bad value, an unknown id, a missing or unreadable file, a data
file that is neither local nor downloadable) is one line ``amnlib <cmd>: error: <message>`` on
stderr and exit status 2; Ctrl-C is one line ``amnlib <cmd>: interrupted...`` and exit status
130. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from amnlib.experiments import EXPERIMENTS, run_experiment

#: Exceptions that mean "bad input or environment" (``OSError`` covers missing or unwritable
#: files and :class:`amnlib.data.DataUnavailableError`): one line and exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)

Handler = Callable[[argparse.Namespace], int]


def _say(args: argparse.Namespace, message: str) -> None:
    """One line ``amnlib <cmd>: <message>`` on stderr (newlines of the message folded)."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    command = getattr(args, "command", None)
    print(f"amnlib {command}: {text}" if command else f"amnlib: {text}", file=sys.stderr)


def _message(err: BaseException) -> str:
    """The text of a user error (a ``KeyError``'s message without the quotes ``str`` adds)."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err) or type(err).__name__


def framed(interrupted: str = "interrupted") -> Callable[[Handler], Handler]:
    """The shared frame of a command handler ``(args) -> exit status``: :data:`USER_ERRORS`
    become one line ``amnlib <cmd>: error: ...`` and status 2, ``KeyboardInterrupt`` one line
    ``amnlib <cmd>: <interrupted>`` and status 130 (``interrupted`` says what was left)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except USER_ERRORS as err:
                _say(args, f"error: {_message(err)}")
                return 2
            except KeyboardInterrupt:
                _say(args, interrupted)
                return 130

        return run

    return wrap


def _write_json(path: Path, record: dict) -> None:
    """Write atomically: a temporary file renamed into place, so a failure leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float))
    tmp.replace(path)


def _check_empty_out(out: Path) -> None:
    """``ValueError`` when an output folder exists and is not empty (nothing is overwritten)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {str(out)!r} exists and is not empty")


@framed()
def _reproduce(args: argparse.Namespace) -> int:
    """``amnlib reproduce``: run a registered experiment, print ours vs the paper."""
    if args.list or not args.name:
        for name, (_, description) in sorted(EXPERIMENTS.items()):
            print(f"{name:14s} {description}")
        return 0
    report = run_experiment(args.name, fast=args.fast)
    print(report.table())
    if args.json:
        _write_json(Path(args.json), report.to_json())
        print(f"wrote {args.json}")
    return 0


@framed("interrupted; no training set written")
def _generate(args: argparse.Namespace) -> int:
    """``amnlib generate``: a (p)FBA training set saved as .npz + .json."""
    import warnings

    from amnlib.simulate import generate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        ts = generate(
            args.model,
            spec=args.spec,
            size=args.size,
            seed=args.seed,
            method=args.method,
            n_jobs=args.n_jobs,
            cache_dir=False if args.no_cache else args.cache_dir,
            backend=args.backend,
            experimental=args.experimental,
            samples_per_medium=args.samples_per_medium,
            ratio=args.ratio,
            progress=not args.quiet,
        )
    for w in caught:
        _say(args, f"warning: {w.message}")
    path = ts.save(args.out)
    md = ts.metadata
    source = f"cache {md['from_cache']}" if "from_cache" in md else f"{md['seconds']:.1f} s"
    print(
        f"{len(ts)} samples ({md['method']}, {md['model']}, seed {md['seed']}; "
        f"{len(ts.failures)} failed, {md['redraws']} redraws; {source}) -> {path}"
    )
    return 0 if not ts.failures else 1


@framed("interrupted; no model directory written")
def _fit_pinn(args: argparse.Namespace) -> int:
    """``amnlib fit-pinn``: the flux PINN on a user's deletion-fitness table."""
    from dataclasses import replace

    from amnlib.fitness import (
        fit_fitness,
        predict_deletions,
        save_fitness_model,
        sized_config,
        unseen_doubles,
    )
    from amnlib.network import MetabolicNetwork
    from amnlib.pinn import default_config
    from amnlib.userdata import read_fitness_table

    out = Path(args.out)
    _check_empty_out(out)
    net = MetabolicNetwork.load(args.model)
    table = read_fitness_table(args.fitness, net)
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    n_train = len(table) - int(args.validation * int((table["kind"] == "double").sum()))
    config = sized_config(n_train, replace(default_config(fast=False), seed=args.seed),
                          epochs=args.epochs)
    log = (lambda *_: None) if args.quiet else (lambda msg: print(msg, flush=True))
    log(f"{net.name}: {len(table)} deletions of {table['gene1'].nunique()} genes read")
    fit = fit_fitness(net, table, config, args.validation, refit=True, seed=args.seed, log=log)
    pairs = unseen_doubles(table, limit=args.max_predictions)
    preds = predict_deletions(fit.trained, net, pairs)
    save_fitness_model(fit, net, out, predictions=preds)
    log(f"saved model, report, {len(preds)} predicted unseen double deletions -> {out}")
    return 0


@framed("interrupted; no model directory written")
def _fit_reservoir(args: argparse.Namespace) -> int:
    """``amnlib fit-reservoir``: the reservoir on a user's growth table."""
    from amnlib.growth_workflow import ReservoirSettings, fit_growth, save_growth_model
    from amnlib.network import MetabolicNetwork
    from amnlib.userdata import read_growth_table

    out = Path(args.out)
    log = (lambda *_: None) if args.quiet else (lambda msg: print(msg, flush=True))
    _check_empty_out(out)
    settings = ReservoirSettings(
        uptake_max=args.uptake_max, pretrain_size=args.pretrain_size,
        pretrain_epochs=args.pretrain_epochs, epochs=args.epochs, folds=args.folds,
        repeats=args.repeats, bfgs_maxiter=args.bfgs_maxiter,
        bfgs_cv_maxiter=args.bfgs_maxiter, ann_epochs=args.ann_epochs, trees=args.trees,
        seed=args.seed, architecture=args.architecture,
    )  # fmt: skip
    settings.check()
    net = MetabolicNetwork.load(args.model)
    table = read_growth_table(args.growth, net, growth_column=args.growth_column,
                              medium_column=args.medium_column,
                              replicate_columns=args.replicate_columns)
    fit = fit_growth(net, table, settings, cache=False if args.no_cache else True,
                     n_jobs=args.n_jobs, progress=not args.quiet, log=log)
    save_growth_model(fit, out)
    log(f"saved model, report.json, parity.png, media.json -> {out}")
    return 0


@framed()
def _predict(args: argparse.Namespace) -> int:
    """``amnlib predict``: growth of new media with a saved ``fit-reservoir`` model."""
    from amnlib.growth_workflow import (
        load_growth_model,
        media_dicts,
        predict_media,
        read_media_table,
    )

    gm = load_growth_model(args.model_dir, args.model)
    media = read_media_table(args.media, gm.space, gm.network, growth_column=args.growth_column,
                             medium_column=args.medium_column)
    frame, summary = predict_media(gm, media)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
        print(f"{len(frame)} predictions -> {path}")
    else:
        print(frame.to_csv(index=False), end="")
    if args.media_json:
        uptakes = gm.uptakes(media.media, index=media.medium_ids)
        _write_json(Path(args.media_json), media_dicts(uptakes))
    if "q2" in summary:
        print(f"Q^2 against the measured growth: {summary['q2']:.3f}", file=sys.stderr)
    if summary.get("off_range"):
        _say(args, f"warning: {summary['off_range']} medium/media have bounds above the "
             "training range (the reservoir extrapolates)")
    return 0


@framed("interrupted; nothing written")
def _discover_mechanism(args: argparse.Namespace) -> int:
    """``amnlib discover-mechanism``: a CRNN mechanism from a user's time-series CSV."""
    from amnlib.discovery import discover, save_discovery
    from amnlib.userdata import read_time_series

    out = Path(args.out)
    log = (lambda *_: None) if args.quiet else (lambda msg: print(msg, flush=True))
    _check_empty_out(out)
    if args.reactions is not None and args.reactions < 1:
        raise ValueError(f"--reactions must be >= 1, got {args.reactions}")
    data = read_time_series(args.data)
    log(f"{Path(args.data).name}: {data.y.shape[0]} experiments x {data.y.shape[1]} times, "
        f"species {', '.join(data.species)}")
    disc = discover(data, args.reactions, seed=args.seed, log=log)
    save_discovery(disc, out, source=str(args.data))
    log(disc.mechanism.format())
    log(f"held-out scaled MSE {disc.val_error:.4g}; mechanism.txt, report.json, "
        f"trajectories.png -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amnlib",
        description="Artificial Metabolic Networks: reproduce the book's experiments, generate "
        "training sets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run a chapter's experiment, print ours vs the paper")
    rep.add_argument("name", nargs="?", help="experiment name (see --list)")
    rep.add_argument("--list", action="store_true", help="list the experiments")
    rep.add_argument("--fast", action="store_true", help="small, quick version (same code)")
    rep.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    rep.set_defaults(func=_reproduce)
    gen = sub.add_parser("generate", help="generate a (p)FBA training set (media -> fluxes)")
    gen.add_argument("--model", default="textbook", help="model name or SBML/JSON path")
    gen.add_argument("--spec", default="e_coli_core", help="medium specification name")
    gen.add_argument("--size", type=int, default=1000, help="number of samples")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, metavar="PATH", help="output .npz (+ .json)")
    gen.add_argument("--n-jobs", type=int, default=None, help="workers (default: all cores)")
    gen.add_argument("--method", choices=("pfba", "fba"), default="pfba")
    gen.add_argument("--backend", choices=("loky", "dask"), default="loky")
    gen.add_argument("--ratio", type=float, default=None, help="override ratio_drawing")
    gen.add_argument("--experimental", action="store_true", help="the 110 experimental media")
    gen.add_argument("--samples-per-medium", type=int, default=None)
    gen.add_argument("--cache-dir", default=None, help="cache folder (default: amnlib cache)")
    gen.add_argument("--no-cache", action="store_true", help="always solve, never cache")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)
    pinn = sub.add_parser("fit-pinn", help="train the flux PINN on your gene-deletion fitness "
                          "table, save it, predict unseen double deletions")
    pinn.add_argument("--model", required=True, help="model name or SBML/JSON path")
    pinn.add_argument("--fitness", required=True, metavar="CSV",
                      help="columns gene1, gene2 (empty for singles), fitness (relative to WT)")
    pinn.add_argument("--out", required=True, metavar="DIR", help="new model directory")
    pinn.add_argument("--epochs", type=int, default=None,
                      help="training epochs (default: about 3,000 optimiser steps)")
    pinn.add_argument("--validation", type=float, default=0.2,
                      help="fraction of double deletions held out for the report (0: none)")
    pinn.add_argument("--max-predictions", type=int, default=50_000,
                      help="predict at most this many unseen double deletions")
    pinn.add_argument("--seed", type=int, default=0)
    pinn.add_argument("--quiet", action="store_true", help="no progress messages")
    pinn.set_defaults(func=_fit_pinn)
    medium_rule = ("Medium rule: the table's exchange columns are set per medium (absent: 0); "
                   "every other exchange of the model's own medium (model.medium, the base "
                   "medium) keeps its default bound in every medium; all other exchanges are "
                   "closed.")
    res = sub.add_parser(
        "fit-reservoir", help="pre-train and fit the reservoir on your growth table, compare it "
        "with FBA and black boxes (cross-validated Q^2), save it",
        description="Fit the reservoir (a pre-trained AMN fed by a learned uptake layer) to a "
        "growth table: one row per medium (or per replicate, with a medium id column), medium "
        "columns named by the model's exchange ids (0/1 presence or uptake bounds, mmol/gDW/h), "
        "a growth column (h^-1). " + medium_rule)
    res.add_argument("--model", required=True, help="model name or SBML/JSON path")
    res.add_argument("--growth", required=True, metavar="CSV", help="the growth table")
    res.add_argument("--out", required=True, metavar="DIR", help="new model directory")
    res.add_argument("--growth-column", default=None, help="default: growth, growth_rate, mu...")
    res.add_argument("--medium-column", default=None, help="default: medium, medium_id, condition")
    res.add_argument("--replicate-columns", nargs="+", default=None, metavar="COL",
                     help="columns holding replicate growth rates")
    res.add_argument("--uptake-max", type=float, default=10.0,
                     help="uptake bound of a present compound of a 0/1 table (mmol/gDW/h)")
    res.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    res.add_argument("--repeats", type=int, default=1, help="repetitions of the folds (seeds)")
    res.add_argument("--pretrain-size", type=int, default=None,
                     help="simulated media for pre-training (default 30 per medium, >= 500)")
    res.add_argument("--pretrain-epochs", type=int, default=40)
    res.add_argument("--epochs", type=int, default=300, help="epochs of the uptake layer")
    res.add_argument("--architecture", default="AMN-QP", help="reservoir AMN architecture")
    res.add_argument("--bfgs-maxiter", type=int, default=10,
                     help="BFGS iterations of FBA with fitted bounds (on all media and on "
                     "each fold)")
    res.add_argument("--ann-epochs", type=int, default=300, help="epochs of the dense baseline")
    res.add_argument("--trees", type=int, default=100, help="trees of XGBoost / random forest")
    res.add_argument("--seed", type=int, default=0)
    res.add_argument("--n-jobs", type=int, default=1, help="workers for the pFBA simulations")
    res.add_argument("--no-cache", action="store_true", help="do not cache the pre-training")
    res.add_argument("--quiet", action="store_true", help="no progress messages or bars")
    res.set_defaults(func=_fit_reservoir)
    pred = sub.add_parser(
        "predict", help="predict growth of new media with a saved fit-reservoir model",
        description="Predict growth (h^-1) of the media of a CSV with the same medium columns as "
        "the training table (a growth column is optional: then Q^2 is reported). " + medium_rule)
    pred.add_argument("--model-dir", required=True, metavar="DIR", help="from fit-reservoir")
    pred.add_argument("--media", required=True, metavar="CSV", help="media to predict")
    pred.add_argument("--out", default=None, metavar="CSV", help="write predictions (default: "
                      "print them)")
    pred.add_argument("--model", default=None, help="model to load it onto (default: the one "
                      "saved with it; another network is refused)")
    pred.add_argument("--media-json", default=None, metavar="PATH",
                      help="also write the learned uptakes as COBRApy media (JSON)")
    pred.add_argument("--growth-column", default=None)
    pred.add_argument("--medium-column", default=None)
    pred.set_defaults(func=_predict)
    disc = sub.add_parser(
        "discover-mechanism", help="discover a mass-action mechanism (CRNN) from your "
        "concentration time series",
        description="Read a time-series CSV (long: experiment, time, species, value; or wide: "
        "experiment, time, one column per species; time in s, concentrations in a.u.), fit a "
        "CRNN, write mechanism.txt, report.json and trajectories.png into DIR. Without "
        "--reactions the number of reactions is chosen by held-out error.")
    disc.add_argument("--data", required=True, metavar="CSV", help="time series")
    disc.add_argument("--reactions", type=int, default=None, metavar="N",
                      help="number of candidate reactions (default: chosen by held-out error)")
    disc.add_argument("--out", default="mechanism", metavar="DIR",
                      help="new output folder (default: ./mechanism)")
    disc.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    disc.add_argument("--quiet", action="store_true", help="no progress messages")
    disc.set_defaults(func=_discover_mechanism)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
