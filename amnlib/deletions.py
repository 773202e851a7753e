"""Gene-deletion fitness data computed with COBRApy (Chapter 5).

A gene deletion switches off every reaction whose gene-protein-reaction (GPR) rule evaluates to
False once the deleted genes are removed (``GPR.eval(knockouts)``): for ``b1 and b2`` (a complex)
one deleted gene suffices, for ``b1 or b2`` (isozymes) both must go. COBRApy's
``single_gene_deletion`` / ``double_gene_deletion`` then re-solve FBA with those reactions' bounds
set to 0. We call

    fitness = growth(KO) / growth(WT)            (dimensionless, 0 = lethal, 1 = neutral)

and keep infeasible deletions as fitness 0. Optional Gaussian "measurement" noise mimics a
fitness screen. Double deletions are slow-ish on genome-scale models, so every table is cached on
disk (``amnlib.data.cache_dir() / "deletions"``), keyed by the network fingerprint, the medium and
the gene list; files are written atomically (temporary file + ``os.replace``) so that parallel
workers never read half a file.

The essential-gene check compares predicted fitness with the Gerdes et al. (2003) list of E. coli
essential genes (:func:`amnlib.data.load_essential_genes`, b-numbers). The textbook model's genes
are b-numbers too but none of them is on that list, so the check runs on iJO1366.

Main entry points: :func:`deletion_table` (singles + doubles with fitness, noise and cache),
:func:`knockout_mask` (which split reactions each deletion removes), :func:`split_train_test`
(all singles + half the doubles for training), :func:`essential_check` (ROC AUC).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from amnlib.network import MetabolicNetwork

#: Fitness below this counts as "lethal" (no growth) in the essential-gene check.
LETHAL_FITNESS = 0.01
#: Growth ratios below this are solver round-off and set to exactly 0.
FITNESS_ZERO = 1e-9
#: Bumped when the cached tables' contents change.
_CACHE_VERSION = "2"

_COLUMNS = ["gene1", "gene2", "kind", "growth", "fitness_true", "fitness", "status"]


# ------------------------------------------------------------------------------- GPR rules
def gene_ids(net: MetabolicNetwork) -> list[str]:
    """Sorted gene ids of the network's model (b-numbers for E. coli models)."""
    return sorted(g.id for g in net.model.genes)


def _check_genes(net: MetabolicNetwork, genes: Iterable[str]) -> list[str]:
    known = {g.id for g in net.model.genes}
    genes = list(genes)
    for g in genes:
        if g not in known:
            raise ValueError(
                f"gene {g!r} is not in model {net.name!r} ({len(known)} genes, e.g. "
                f"{', '.join(sorted(known)[:3])})"
            )
    return genes


def knocked_out_reactions(net: MetabolicNetwork, genes: Iterable[str]) -> list[str]:
    """Original reaction ids switched off when all ``genes`` are deleted together.

    A reaction is off when its GPR rule evaluates to False without the deleted genes (complexes
    need every subunit, isozymes need one). Reactions without a GPR are never switched off.
    """
    genes = set(_check_genes(net, genes))
    candidates = {r for g in genes for r in net.model.genes.get_by_id(g).reactions}
    return sorted(r.id for r in candidates if not r.gpr.eval(knockouts=genes))


def knockout_mask(net: MetabolicNetwork, deletions: Sequence[Sequence[str]]) -> np.ndarray:
    """(batch, n) 0/1 float mask of the split columns knocked out by each deletion.

    ``deletions`` is a list of gene tuples (empty tuple = wild type; ``None``/NaN entries are
    skipped, so rows of :func:`deletion_table` can be passed as ``zip(gene1, gene2)``). Both
    columns of a split reversible reaction (``R_for``/``R_rev``) are masked together.
    """
    cols = {rid: [net.index(c.id) for c in net.columns if c.reaction == rid]
            for rid in net.original_ids}
    mask = np.zeros((len(deletions), net.n))
    cache: dict[frozenset, list[int]] = {}
    for i, genes in enumerate(deletions):
        key = frozenset(g for g in genes if isinstance(g, str))
        if key not in cache:
            cache[key] = [j for r in knocked_out_reactions(net, key) for j in cols[r]]
        mask[i, cache[key]] = 1.0
    return mask


def knockout_bounds(net: MetabolicNetwork, mask: np.ndarray) -> np.ndarray:
    """(batch, n) split upper bounds with knocked-out columns set to 0 (mmol/gDW/h)."""
    mask = np.asarray(mask, dtype=float)
    if mask.shape[-1] != net.n:
        raise ValueError(f"mask has {mask.shape[-1]} columns, the network {net.n}")
    return np.where(mask > 0, 0.0, net.ub)


# ------------------------------------------------------------------------------- COBRApy runs
def _cache_path(net: MetabolicNetwork, kind: str, genes: Sequence[str], cache: bool | str | Path):
    if cache is False:
        return None
    if cache is True:
        from amnlib.data import cache_dir

        root = Path(cache_dir()) / "deletions"
    else:
        root = Path(cache)
    h = hashlib.sha256(_CACHE_VERSION.encode())
    h.update(net.fingerprint().encode())
    h.update(repr(sorted(net.model.medium.items())).encode())
    h.update("\n".join(genes).encode())
    return root / f"{net.name}_{kind}_{len(genes)}_{h.hexdigest()[:16]}.csv"


def _atomic_write(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            df.to_csv(fh, index=False, float_format="%.17g")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _from_cobra(df: pd.DataFrame, wt: float, kind: str) -> pd.DataFrame:
    rows = []
    for ids, growth, status in zip(df["ids"], df["growth"], df["status"], strict=True):
        genes = sorted(ids)
        g = float(growth) if status == "optimal" and np.isfinite(growth) else 0.0
        g = max(g, 0.0)
        rows.append((genes[0], genes[1] if len(genes) > 1 else None, kind, g, status))
    out = pd.DataFrame(rows, columns=["gene1", "gene2", "kind", "growth", "status"])
    # round off solver noise (1e-12 h^-1 "growth" of lethal deletions) so that ties stay ties
    out["growth"] = out["growth"].where(out["growth"] > FITNESS_ZERO * wt, 0.0)
    out["fitness_true"] = (out["growth"] / wt).round(12)
    out["fitness"] = out["fitness_true"]
    return out.sort_values(["gene1", "gene2"], na_position="first").reset_index(drop=True)


def wild_type_growth(net: MetabolicNetwork) -> float:
    """FBA growth rate of the wild type on the model's medium (h^-1)."""
    res = net.solve(method="fba")
    if not res.ok:
        raise ValueError(f"the wild type of {net.name!r} does not grow ({res.status})")
    return res.growth


def single_deletions(
    net: MetabolicNetwork, genes: Sequence[str] | None = None, cache: bool | str | Path = True
) -> pd.DataFrame:
    """Fitness of every single gene deletion (COBRApy ``single_gene_deletion``, FBA).

    Returns a DataFrame with columns ``gene1``, ``gene2`` (None), ``kind`` ("single"),
    ``growth`` (h^-1, 0 when infeasible), ``fitness_true`` = ``fitness`` = growth / WT growth,
    ``status`` (COBRApy's). ``cache``: True (default folder), False, or a folder.
    """
    genes = _check_genes(net, genes if genes is not None else gene_ids(net))
    path = _cache_path(net, "single", genes, cache)
    if path is not None and path.is_file():
        return _read(path)
    from cobra.flux_analysis import single_gene_deletion

    wt = wild_type_growth(net)
    with net.model as model:
        model.objective = net.biomass_reaction
        df = single_gene_deletion(model, gene_list=genes, method="fba", processes=1)
    out = _from_cobra(df, wt, "single")[_COLUMNS]
    if path is not None:
        _atomic_write(out, path)
    return out


def double_deletions(
    net: MetabolicNetwork, genes: Sequence[str] | None = None, cache: bool | str | Path = True
) -> pd.DataFrame:
    """Fitness of every unordered pair of distinct ``genes`` (COBRApy ``double_gene_deletion``).

    ``genes`` defaults to all genes (textbook: 137 genes -> 9,316 pairs, a few seconds with GLPK;
    iJO1366: pass a subset). Same columns as :func:`single_deletions`, ``kind`` = "double",
    ``gene1 < gene2``.
    """
    genes = sorted(set(_check_genes(net, genes if genes is not None else gene_ids(net))))
    if len(genes) < 2:
        raise ValueError(f"double deletions need at least 2 genes, got {genes}")
    path = _cache_path(net, "double", genes, cache)
    if path is not None and path.is_file():
        return _read(path)
    from cobra.flux_analysis import double_gene_deletion

    wt = wild_type_growth(net)
    with net.model as model:
        model.objective = net.biomass_reaction
        df = double_gene_deletion(model, gene_list1=genes, method="fba", processes=1)
    df = df[df["ids"].map(len) == 2]  # COBRApy also reports (g, g) as a single deletion
    out = _from_cobra(df, wt, "double")[_COLUMNS]
    if path is not None:
        _atomic_write(out, path)
    return out


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"gene1": str, "gene2": str}, float_precision="round_trip")
    df["gene2"] = df["gene2"].astype(object).where(df["gene2"].notna(), None)
    return df[_COLUMNS]


def add_noise(fitness: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Fitness plus N(0, sigma^2) measurement noise, clipped at 0 (a growth ratio is >= 0)."""
    if sigma < 0 or not np.isfinite(sigma):
        raise ValueError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
    fitness = np.asarray(fitness, dtype=float)
    return np.clip(fitness + sigma * rng.standard_normal(fitness.shape), 0.0, None)


def deletion_table(
    net: MetabolicNetwork,
    genes: Sequence[str] | None = None,
    double_genes: Sequence[str] | None = None,
    doubles: bool = True,
    noise: float = 0.0,
    seed: int = 0,
    cache: bool | str | Path = True,
) -> pd.DataFrame:
    """Single deletions of ``genes`` (default all) plus, when ``doubles``, every pair of
    ``double_genes`` (default ``genes``), with optional measurement noise on ``fitness``
    (``fitness_true`` stays noise-free). Row order: singles, then doubles."""
    genes = list(genes) if genes is not None else gene_ids(net)
    parts = [single_deletions(net, genes, cache=cache)]
    if doubles:
        parts.append(double_deletions(net, double_genes or genes, cache=cache))
    table = pd.concat(parts, ignore_index=True)
    if noise:
        rng = np.random.default_rng(seed)
        table["fitness"] = add_noise(table["fitness_true"].to_numpy(), noise, rng)
    return table


def split_train_test(
    table: pd.DataFrame, test_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: all single deletions and ``1 - test_fraction`` of the
    doubles train, the other doubles test (seeded shuffle)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    doubles = np.flatnonzero(table["kind"].to_numpy() == "double")
    singles = np.flatnonzero(table["kind"].to_numpy() == "single")
    doubles = rng.permutation(doubles)
    n_test = int(round(test_fraction * len(doubles)))
    return np.sort(np.concatenate([singles, doubles[n_test:]])), np.sort(doubles[:n_test])


def gene_indicator(table: pd.DataFrame, genes: Sequence[str]) -> np.ndarray:
    """(batch, n_genes) 0/1 matrix: which genes each deletion removes (the plain MLP's input)."""
    pos = {g: k for k, g in enumerate(genes)}
    X = np.zeros((len(table), len(genes)))
    for i, (a, b) in enumerate(zip(table["gene1"], table["gene2"], strict=True)):
        for g in (a, b):
            if isinstance(g, str):
                if g not in pos:
                    raise ValueError(f"gene {g!r} of row {i} is not among the {len(genes)} genes")
                X[i, pos[g]] = 1.0
    return X


def epistasis(
    table: pd.DataFrame, fitness: np.ndarray | pd.Series | str = "fitness_true"
) -> pd.DataFrame:
    """Epistasis of the double deletions, eps_ab = f_ab - f_a * f_b.

    ``fitness``: a column name of ``table`` or a (len(table),) array (e.g. a model's
    predictions); the singles' values are looked up in the same vector. Returns the double rows
    with columns ``gene1``, ``gene2``, ``f_a``, ``f_b``, ``f_ab``, ``epsilon``.
    """
    f = table[fitness].to_numpy() if isinstance(fitness, str) else np.asarray(fitness, float)
    if f.shape != (len(table),):
        raise ValueError(f"fitness must have shape ({len(table)},), got {f.shape}")
    singles = {g: f[i] for i, g in enumerate(table["gene1"]) if table["kind"].iat[i] == "single"}
    dbl = table["kind"].to_numpy() == "double"
    rows = table.loc[dbl, ["gene1", "gene2"]].copy()
    missing = sorted({g for g in pd.concat([rows.gene1, rows.gene2]) if g not in singles})
    if missing:
        raise ValueError(f"genes {missing[:5]} have double but no single deletions in the table")
    rows["f_a"] = rows["gene1"].map(singles)
    rows["f_b"] = rows["gene2"].map(singles)
    rows["f_ab"] = f[dbl]
    rows["epsilon"] = rows["f_ab"] - rows["f_a"] * rows["f_b"]
    return rows


# ------------------------------------------------------------------------------- real data
def essential_labels(genes: Sequence[str]) -> np.ndarray:
    """(n_genes,) 1 where the gene (b-number) is on the Gerdes et al. (2003) essential list."""
    from amnlib.data import load_essential_genes

    essential = set(load_essential_genes()["bnumber"])
    return np.array([g in essential for g in genes], dtype=int)


def essential_check(genes: Sequence[str], fitness: np.ndarray) -> dict[str, float]:
    """Classify genes as essential from single-deletion fitness (low fitness = essential).

    ``genes``: b-numbers; ``fitness``: (n_genes,) predicted single-deletion fitness. Returns
    ``auc`` (ROC AUC of ``-fitness`` against the real list), ``n_essential`` (listed genes
    present), ``n_genes``, ``recall`` (listed genes with fitness < ``LETHAL_FITNESS``) and
    ``n_predicted_lethal``. ``ValueError`` when no listed gene is among ``genes`` (e.g. the
    textbook model, whose 137 genes miss all 39 listed ones).
    """
    from sklearn.metrics import roc_auc_score

    fitness = np.asarray(fitness, dtype=float)
    if fitness.shape != (len(genes),):
        raise ValueError(f"fitness must have shape ({len(genes)},), got {fitness.shape}")
    y = essential_labels(genes)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError(
            f"{int(y.sum())} of the {len(y)} genes are on the essential list; the ROC AUC needs "
            "both classes (use iJO1366: the textbook genes miss the list)"
        )
    lethal = fitness < LETHAL_FITNESS
    return {
        "auc": float(roc_auc_score(y, -fitness)),
        "n_essential": int(y.sum()),
        "n_genes": len(genes),
        "recall": float(lethal[y == 1].mean()),
        "n_predicted_lethal": int(lethal.sum()),
    }


def pairs(genes: Sequence[str]) -> list[tuple[str, str]]:
    """All unordered pairs of distinct genes, sorted (the rows of :func:`double_deletions`)."""
    return list(combinations(sorted(set(genes)), 2))


__all__ = [
    "add_noise",
    "deletion_table",
    "double_deletions",
    "epistasis",
    "essential_check",
    "essential_labels",
    "gene_ids",
    "gene_indicator",
    "knockout_bounds",
    "knockout_mask",
    "knocked_out_reactions",
    "pairs",
    "single_deletions",
    "split_train_test",
    "wild_type_growth",
]
