"""Readers for a user's own measurement files (CSV), validated before any long computation.

Three kinds of table, each checked against what it will be used with, and turned into the
structures the rest of the package takes:

* :func:`read_growth_table`: growth rates (h^-1) in media. One row per medium, or one row per
  replicate with a medium id column; medium columns are exchange ids in COBRApy's
  ``model.medium`` vocabulary (``EX_glc__D_e``; the split uptake id ``EX_glc__D_e_i`` is
  accepted too), holding 0/1 presence or uptake bounds (mmol/gDW/h, >= 0).
* :func:`read_time_series`: concentration time series, long (experiment, time, species, value)
  or wide (experiment, time, one column per species) -> :class:`amnlib.crnn.KineticsData`.
* :func:`read_fitness_table`: single and double gene deletions (gene ids of the model) with
  fitness relative to the wild type -> the deletion table of :mod:`amnlib.deletions`.

Every problem is a ``ValueError`` (``FileNotFoundError`` for a missing file) whose message names
the file, the column, the row or the id at fault and, for an unknown id, the closest valid ones.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

import numpy as np
import pandas as pd

from amnlib.network import SUFFIX_IN, MetabolicNetwork

#: Names accepted (case-insensitive) for the growth column when none is given.
GROWTH_COLUMNS = ("growth", "growth_rate", "gr", "gr_avg", "mu")
#: Names accepted (case-insensitive) for the medium id column when none is given.
MEDIUM_COLUMNS = ("medium", "medium_id", "condition")


# --------------------------------------------------------------------------------- helpers
def _suggest(name: str, choices: Sequence[str], n: int = 3) -> str:
    close = get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV with a header, refusing missing files, empty files and repeated column names
    (pandas would silently rename the second ``X`` to ``X.1``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header or all(not h.strip() for h in header):
        raise ValueError(f"{path.name}: the file is empty (a header row is needed)")
    names = [h.strip() for h in header]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if repeated:
        raise ValueError(f"{path.name}: duplicated column(s) {repeated}")
    df = pd.read_csv(path, skipinitialspace=True)
    df.columns = names
    if df.empty:
        raise ValueError(f"{path.name}: no data rows below the header")
    return df


def _find_column(df: pd.DataFrame, given: str | None, defaults: Sequence[str], what: str,
                 source: str, required: bool = True) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise ValueError(f"{source}: no {what} column {given!r}; columns are "
                             f"{list(df.columns)}{_suggest(given, list(df.columns))}")
        return given
    lower = {c.lower(): c for c in df.columns}
    for name in defaults:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(f"{source}: no {what} column; name it one of {list(defaults)} or pass "
                         f"it explicitly; columns are {list(df.columns)}")
    return None


def _numeric(df: pd.DataFrame, columns: Sequence[str], source: str) -> np.ndarray:
    """The columns as a float array; non-numbers and NaN are errors naming row and column
    (rows counted as in a spreadsheet: the header is row 1)."""
    out = np.empty((len(df), len(columns)))
    for j, col in enumerate(columns):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{source}: column {col!r}, row {i + 2}: {df[col].iloc[i]!r} is not "
                             f"a finite number ({bad.size} such cell(s) in this column)")
        out[:, j] = values
    return out


# --------------------------------------------------------------------------------- growth
@dataclass
class GrowthTable:
    """Measured growth in media, one entry per medium.

    ``media``: ``(n_media, n_exchanges)`` medium values (0/1 presence or uptake bounds,
    mmol/gDW/h) with ``exchange_ids`` the model's boundary reaction ids (COBRApy vocabulary);
    ``growth``: ``(n_media,)`` mean growth rate (h^-1); ``replicates``: ``(n_media, r)`` the
    individual measurements (NaN where a medium has fewer); ``medium_ids``: labels.
    """

    media: np.ndarray
    exchange_ids: list[str]
    growth: np.ndarray
    replicates: np.ndarray
    medium_ids: list[str]

    def __len__(self) -> int:
        return len(self.growth)

    @property
    def uptake_ids(self) -> list[str]:
        """The split uptake ids (``EX_..._i``), the network's ``medium`` columns."""
        return [e + SUFFIX_IN for e in self.exchange_ids]

    def medium(self, i: int, uptake: float = 1.0) -> dict[str, float]:
        """Medium ``i`` as a COBRApy ``model.medium`` dict; 0/1 presence is scaled by ``uptake``
        (mmol/gDW/h), absent exchanges are left out."""
        scale = uptake if self.is_presence else 1.0
        return {e: float(v * scale) for e, v in zip(self.exchange_ids, self.media[i], strict=True)
                if v > 0}

    @property
    def is_presence(self) -> bool:
        """True when every medium value is 0 or 1 (presence, not bounds)."""
        return bool(np.isin(self.media, (0.0, 1.0)).all())


def read_growth_table(
    path: str | Path,
    network: MetabolicNetwork,
    growth_column: str | None = None,
    medium_column: str | None = None,
    replicate_columns: Sequence[str] | None = None,
    min_media: int = 1,
) -> GrowthTable:
    """Read and validate a growth table (CSV) for ``network``.

    Columns: exchange ids of ``network`` (medium composition), the growth column (default: one
    of :data:`GROWTH_COLUMNS`), optionally a medium id column (default: one of
    :data:`MEDIUM_COLUMNS`; repeated ids are replicates of one medium and must have the same
    composition) and replicate columns (each a growth measurement; the mean is used where no
    growth column exists). Every other column is an error (an unknown exchange id is the usual
    cause), with the closest exchange ids suggested.

    Raises ``ValueError`` for: unknown or non-exchange columns, duplicated columns, NaN or
    non-numeric cells, negative medium values or growth, a medium id whose replicate rows differ
    in composition, fewer than ``min_media`` media, no medium column at all.
    """
    source = Path(path).name
    df = _read_csv(path)
    replicate_columns = list(replicate_columns or [])
    for col in replicate_columns:
        _find_column(df, col, (), "replicate", source)
    growth_col = _find_column(df, growth_column, GROWTH_COLUMNS, "growth", source,
                              required=not replicate_columns)
    medium_col = _find_column(df, medium_column, MEDIUM_COLUMNS, "medium id", source,
                              required=False)
    used = {growth_col, medium_col, *replicate_columns} - {None}
    boundary = sorted(r.id for r in network.model.boundary)
    exchange_cols, unknown = [], []
    for col in df.columns:
        if col in used:
            continue
        try:
            exchange_cols.append((col, network.exchange_id(col)))
        except ValueError:
            unknown.append(col)
    if unknown:
        hints = "; ".join(f"{u!r}{_suggest(u, boundary)}" for u in unknown)
        raise ValueError(f"{source}: column(s) that are not exchange reactions of model "
                         f"{network.name!r}: {hints}")
    if not exchange_cols:
        raise ValueError(f"{source}: no medium columns (exchange ids of model {network.name!r}, "
                         f"e.g. {', '.join(boundary[:3])})")
    ids = [e for _, e in exchange_cols]
    twice = sorted({e for e in ids if ids.count(e) > 1})
    if twice:
        raise ValueError(f"{source}: exchange(s) {twice} appear in two columns "
                         "(e.g. EX_x_e and EX_x_e_i)")
    media = _numeric(df, [c for c, _ in exchange_cols], source)
    neg = np.argwhere(media < 0)
    if neg.size:
        i, j = neg[0]
        raise ValueError(f"{source}: column {exchange_cols[j][0]!r}, row {i + 2}: medium values "
                         f"are uptake bounds or 0/1 presence and must be >= 0, got {media[i, j]}")
    meas_cols = [growth_col] if growth_col else replicate_columns
    meas = _numeric(df, meas_cols, source)
    if replicate_columns and growth_col:
        meas = np.column_stack([meas, _numeric(df, replicate_columns, source)])
    neg = np.argwhere(meas < 0)
    if neg.size:
        i, _ = neg[0]
        raise ValueError(f"{source}: row {i + 2}: growth rates are >= 0 h^-1, got "
                         f"{meas[neg[0][0], neg[0][1]]}")

    labels = (df[medium_col].astype(str).to_list() if medium_col
              else [f"medium_{i}" for i in range(len(df))])
    order = list(dict.fromkeys(labels))
    rows = {m: [i for i, lab in enumerate(labels) if lab == m] for m in order}
    out_media, growth, reps = [], [], []
    for m, idx in rows.items():
        block = media[idx]
        if not np.allclose(block, block[0]):
            raise ValueError(f"{source}: medium {m!r} has replicate rows {[i + 2 for i in idx]} "
                             "with different compositions")
        out_media.append(block[0])
        if replicate_columns and not growth_col:
            values = meas[idx].ravel()
            growth.append(float(values.mean()))
        elif replicate_columns:
            values = meas[idx][:, 1:].ravel()
            growth.append(float(meas[idx][:, 0].mean()))
        else:
            values = meas[idx][:, 0]
            growth.append(float(values.mean()))
        reps.append(values)
    if len(order) < min_media:
        raise ValueError(f"{source}: {len(order)} distinct media, at least {min_media} needed")
    width = max(len(r) for r in reps)
    rep_arr = np.full((len(reps), width), np.nan)
    for i, r in enumerate(reps):
        rep_arr[i, : len(r)] = r
    return GrowthTable(np.array(out_media), ids, np.array(growth), rep_arr, order)


# --------------------------------------------------------------------------------- time series
def read_time_series(
    path: str | Path,
    species: Sequence[str] | None = None,
    experiment_column: str = "experiment",
    time_column: str = "time",
):
    """Read concentration time series (CSV) into :class:`amnlib.crnn.KineticsData`.

    Long format: columns ``experiment, time, species, value``. Wide format: ``experiment,
    time`` and one column per species. Every experiment must be measured at the same times
    (s), without repeats, and every species at
    every time. The first time point of each experiment is its initial condition ``x0``.

    ``species``: the expected species (order of the result); a listed species absent from the
    data, or data species not listed, are errors. Raises ``ValueError`` for ragged designs
    (experiments with other times, missing species at a time), repeated (experiment, time)
    rows, NaN, negative concentrations, fewer than 2 time points.
    """
    from amnlib.crnn import KineticsData

    source = Path(path).name
    df = _read_csv(path)
    for col in (experiment_column, time_column):
        _find_column(df, col, (), col, source)
    lower = {c.lower() for c in df.columns}
    sp_col = None
    if {"species", "value"} <= lower and len(df.columns) == 4:
        sp_col = next(c for c in df.columns if c.lower() == "species")
        val_col = next(c for c in df.columns if c.lower() == "value")
        _numeric(df, [time_column, val_col], source)
        dup = df.duplicated([experiment_column, time_column, sp_col])
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise ValueError(f"{source}: row {i + 2} repeats experiment "
                             f"{df[experiment_column].iloc[i]!r}, time "
                             f"{df[time_column].iloc[i]}, species {df[sp_col].iloc[i]!r}")
        wide = df.pivot(index=[experiment_column, time_column], columns=sp_col,
                        values=val_col).reset_index()
        wide.columns.name = None
        data_species = [c for c in wide.columns if c not in (experiment_column, time_column)]
        missing = wide[data_species].isna().to_numpy()
        if missing.any():
            i, j = np.argwhere(missing)[0]
            raise ValueError(f"{source}: species {data_species[j]!r} has no value for experiment "
                             f"{wide[experiment_column].iloc[i]!r} at time "
                             f"{wide[time_column].iloc[i]} (every species at every time needed)")
    else:
        wide = df
        data_species = [c for c in df.columns if c not in (experiment_column, time_column)]
        if not data_species:
            raise ValueError(f"{source}: no species columns (wide format: experiment, time, one "
                             "column per species; long format: experiment, time, species, value)")
        _numeric(df, [time_column, *data_species], source)
        dup = df.duplicated([experiment_column, time_column])
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise ValueError(f"{source}: row {i + 2} repeats experiment "
                             f"{df[experiment_column].iloc[i]!r} at time {df[time_column].iloc[i]}")
    if species is not None:
        species = list(species)
        absent = [s for s in species if s not in data_species]
        if absent:
            raise ValueError(f"{source}: species {absent} are not in the data; data species: "
                             f"{data_species}")
        extra = [s for s in data_species if s not in species]
        if extra:
            raise ValueError(f"{source}: data species {extra} are not among {species}")
    else:
        species = data_species
    keys = [experiment_column] if wide is df else [experiment_column, sp_col]
    for key, block in df.groupby(keys, sort=False):
        times = pd.to_numeric(block[time_column]).to_numpy(dtype=float)
        back = np.flatnonzero(np.diff(times) <= 0)
        if back.size:
            row = int(block.index[back[0] + 1]) + 2
            raise ValueError(f"{source}: row {row}: times of {key!r} do not increase "
                             f"({times[back[0]]} then {times[back[0] + 1]}); sort the file by time")
    wide = wide.sort_values([experiment_column, time_column], kind="stable")
    experiments = list(dict.fromkeys(wide[experiment_column].to_list()))
    t = None
    ys = []
    for e in experiments:
        block = wide[wide[experiment_column] == e]
        te = block[time_column].to_numpy(dtype=float)
        if t is None:
            t = te
        elif len(te) != len(t) or not np.allclose(te, t, rtol=1e-9, atol=1e-12):
            raise ValueError(f"{source}: experiment {e!r} is measured at other times than "
                             f"experiment {experiments[0]!r} ({len(te)} vs {len(t)} points); "
                             "all experiments need the same time grid")
        ys.append(block[species].to_numpy(dtype=float))
    if len(t) < 2:
        raise ValueError(f"{source}: at least 2 time points are needed, got {len(t)}")
    y = np.stack(ys)
    if (y < 0).any():
        n, k, s = np.argwhere(y < 0)[0]
        raise ValueError(f"{source}: negative concentration {y[n, k, s]} of {species[s]!r} in "
                         f"experiment {experiments[n]!r} at time {t[k]}")
    if not math.isclose(float(t[0]), float(t.min())):
        raise ValueError(f"{source}: times must start at the initial condition")
    return KineticsData(t=t - t[0], x0=y[:, 0, :].copy(), y=y, y_true=y.copy(),
                        species=list(species))


# --------------------------------------------------------------------------------- fitness
def read_fitness_table(
    path: str | Path,
    network: MetabolicNetwork,
    gene_columns: tuple[str, str] = ("gene1", "gene2"),
    fitness_column: str = "fitness",
) -> pd.DataFrame:
    """Read single and double gene deletions with their fitness (growth relative to the wild
    type, dimensionless, >= 0) into the table layout of :func:`amnlib.deletions.deletion_table`
    (columns ``gene1, gene2, kind, fitness``; ``gene2`` empty for a single deletion).

    Raises ``ValueError`` for gene ids that are not genes of ``network``'s model (closest ids
    suggested), a row with no gene or the same gene twice, repeated deletions, NaN or negative
    fitness, missing columns.
    """
    source = Path(path).name
    df = _read_csv(path)
    g1, g2 = gene_columns
    for col in (g1, fitness_column):
        _find_column(df, col, (), col, source)
    genes = sorted(g.id for g in network.model.genes)
    known = set(genes)
    fit = _numeric(df, [fitness_column], source)[:, 0]
    if (fit < 0).any():
        i = int(np.flatnonzero(fit < 0)[0])
        raise ValueError(f"{source}: row {i + 2}: fitness is growth relative to the wild type "
                         f"and must be >= 0, got {fit[i]}")
    second = df[g2] if g2 in df.columns else pd.Series([None] * len(df))
    rows = []
    seen: dict[frozenset, int] = {}
    for i, (a, b) in enumerate(zip(df[g1], second, strict=True)):
        pair = [str(x).strip() for x in (a, b) if isinstance(x, str) and str(x).strip()]
        if not pair:
            raise ValueError(f"{source}: row {i + 2} names no gene")
        for g in pair:
            if g not in known:
                raise ValueError(f"{source}: row {i + 2}: {g!r} is not a gene of model "
                                 f"{network.name!r}{_suggest(g, genes)}")
        if len(pair) == 2 and pair[0] == pair[1]:
            raise ValueError(f"{source}: row {i + 2} deletes {pair[0]!r} twice")
        key = frozenset(pair)
        if key in seen:
            raise ValueError(f"{source}: rows {seen[key] + 2} and {i + 2} are the same deletion "
                             f"{sorted(key)}")
        seen[key] = i
        rows.append({"gene1": pair[0], "gene2": pair[1] if len(pair) == 2 else None,
                     "kind": "double" if len(pair) == 2 else "single", "fitness": float(fit[i])})
    return pd.DataFrame(rows, columns=["gene1", "gene2", "kind", "fitness"])
