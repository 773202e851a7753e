"""Access to models and reference datasets.

Datasets from elsewhere are never shipped with amnlib. :func:`fetch` looks for a file in the folder
named by the ``AMNLIB_DATA_DIR`` environment variable (and its sub-folders) first, then downloads it
with pooch from a commit-pinned public URL into the cache (``AMNLIB_CACHE_DIR``, default the OS
cache folder). Every file is verified by sha256 before use: a corrupt or truncated local copy
raises ``ValueError`` and is never read; pooch downloads to a temporary file and only moves it into
the cache once the checksum matches, so a failed download leaves nothing half-written. Without a
network and without a local copy, :func:`fetch` raises :class:`DataUnavailableError` naming the
file, its URL and ``AMNLIB_DATA_DIR``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cobra
import pandas as pd

AMN_COMMIT = "10db2a62e8ea17b303ce21a9a1261b7328f861e9"
AMN_URL = f"https://raw.githubusercontent.com/brsynth/amn_release/{AMN_COMMIT}/"
FITNESS_COMMIT = "53e0be8fc08fdad6f3cd527eb4da652fa783cbf4"
FITNESS_URL = f"https://raw.githubusercontent.com/haowang-bioinfo/Ecoli-GEM/{FITNESS_COMMIT}/"


class DataUnavailableError(OSError):
    """A registered data file has no local copy and could not be downloaded (no network, URL
    unreachable). The message names the file, its URL and how to point ``AMNLIB_DATA_DIR`` at
    offline copies."""


@dataclass(frozen=True)
class DataFile:
    """A public file: where it lives (commit-pinned URL), its sha256 and licence."""

    name: str
    url: str
    sha256: str
    license: str
    description: str


AMN_LICENSE = "MIT (brsynth/amn_release)"
REGISTRY: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile(
            "EXP110.csv",
            AMN_URL + "Dataset_experimental/EXP110.csv",
            "3d7c024aae9b7a66a2bfbeb129254a9ff8f7043caa60c148e57d5df8dbae6ff9",
            AMN_LICENSE,
            "110 E. coli media (M9 + 1-4 of 10 carbon sources), replicate growth rates (h^-1)",
        ),
        DataFile(
            "iML1515_EXP.csv",
            AMN_URL + "Dataset_input/iML1515_EXP.csv",
            "d40b7c20dbb1e0041a047bd50a13a3873dcac6094805e487d879216e7559b12b",
            AMN_LICENSE,
            "the same 110 media in iML1515 exchange space (38 binary columns) + GR_AVG",
        ),
        DataFile(
            "e_coli_core.csv",
            AMN_URL + "Dataset_input/e_coli_core.csv",
            "32b050e605ac306b588877b38f00d3e43469d2ef8fc4f8b6f939cc49faa72334",
            AMN_LICENSE,
            "medium specification for E. coli core training sets",
        ),
        DataFile(
            "iML1515.csv",
            AMN_URL + "Dataset_input/iML1515.csv",
            "9eb30a16f9f89ced040390c665d796188b29ffecfad0880bd012dfcd2ddbc15d",
            AMN_LICENSE,
            "medium specification for iML1515 training sets (38 exchanges)",
        ),
        DataFile(
            "e_coli_core.xml",
            AMN_URL + "Dataset_input/e_coli_core.xml",
            "b4db506aeed0e434c1f5f1fdd35feda0dfe5d82badcfda0e9d1342335ab31116",
            AMN_LICENSE,
            "SBML e_coli_core (BiGG) as used by the AMN paper",
        ),
        DataFile(
            "e_coli_core_duplicated.xml",
            AMN_URL + "Dataset_input/e_coli_core_duplicated.xml",
            "aee09f7d9a95a353c6a0362da2bce962389749c970fdbe8df21fdd67ae958f53",
            AMN_LICENSE,
            "the paper's unidirectional e_coli_core (154 reactions)",
        ),
        DataFile(
            "rijs_iML1515_EXP2.csv",
            AMN_URL + "Dataset_input/rijs_iML1515_EXP2.csv",
            "5993fb01a0a301cc9fed40bae33d0da032a785bbccf2ca21cb3fbc84633f804d",
            AMN_LICENSE,
            "regulator-knockout 13C flux dataset (iML1515 space)",
        ),
        DataFile(
            "essentialGenesEcoli.tsv",
            FITNESS_URL + "data/essentialGenesEcoli.tsv",
            "6ca623ee63c8ad2369808d0ecfcdf3ebb7296435b9ea75b298aa5a24a59ea8e2",
            "CC BY 4.0 (haowang-bioinfo/Ecoli-GEM; Gerdes et al. 2003)",
            "39 E. coli essential genes (b-numbers)",
        ),
    ]
}


def sha256sum(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_dir() -> Path | None:
    """The local data folder named by ``AMNLIB_DATA_DIR`` (``None`` when unset)."""
    value = os.environ.get("AMNLIB_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"AMNLIB_DATA_DIR={value!r} is not a folder")
    return path


def cache_dir() -> Path:
    """Where downloads are kept (``AMNLIB_CACHE_DIR`` or the OS cache folder)."""
    import pooch

    return Path(os.environ.get("AMNLIB_CACHE_DIR") or pooch.os_cache("amnlib"))


def _local_copy(name: str) -> Path | None:
    root = data_dir()
    if root is None:
        return None
    for candidate in [root / name, *sorted(root.glob(f"*/{name}"))]:
        if candidate.is_file():
            return candidate
    return None


def fetch(name: str) -> Path:
    """Path to a verified copy of a registered data file (local folder first, then download).

    Raises ``KeyError`` for an unknown name, ``ValueError`` when a file's checksum is wrong,
    :class:`DataUnavailableError` when there is no local copy and the download fails.
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown data file {name!r}; known: {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    local = _local_copy(name)
    if local is not None:
        digest = sha256sum(local)
        if digest != entry.sha256:
            raise ValueError(
                f"{local} is corrupt or a different version: sha256 {digest} != {entry.sha256} "
                f"(expected the file from {entry.url})"
            )
        return local
    import pooch

    try:
        path = pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=name,
            path=cache_dir(),
            progressbar=False,
        )
    except OSError as err:  # requests' errors (no network, HTTP 404) are OSErrors too
        raise DataUnavailableError(_unavailable_message(name, entry.url, err)) from None
    return Path(path)


def _unavailable_message(name: str, url: str, err: BaseException) -> str:
    """One line: which file, where it was looked for, the download's first error line, and the
    fix (``AMNLIB_DATA_DIR``)."""
    lines = str(err).strip().splitlines()
    cause = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    cause = cause if len(cause) <= 200 else cause[:197] + "..."
    root = os.environ.get("AMNLIB_DATA_DIR")
    where = (f"AMNLIB_DATA_DIR={root!r} holds no {name!r}" if root
             else "AMNLIB_DATA_DIR is not set")
    return (
        f"data file {name!r} is not available: {where}, it is not in the cache "
        f"({cache_dir()}), and the download from {url} failed ({cause}); set AMNLIB_DATA_DIR "
        f"to a folder holding offline copies (it must contain {name})"
    )


# ------------------------------------------------------------------------------- tables
def load_medium_spec(name: str) -> pd.DataFrame:
    """A medium specification for training-set generation (``e_coli_core`` or ``iML1515``).

    Returns a DataFrame indexed by split uptake id (``EX_glc__D_e_i``) with columns
    ``level`` (int, number of drawable values; 1 = fixed), ``max_value`` (mmol/gDW/h) and
    ``ratio_drawing`` (float, the Binomial ratio p, stored on the first row and broadcast).
    """
    aliases = {"textbook": "e_coli_core"}
    stem = aliases.get(name, name)
    raw = pd.read_csv(fetch(f"{stem}.csv"), index_col=0)
    spec = raw.T
    spec.index.name = "exchange"
    spec.columns.name = None
    ratio = pd.to_numeric(spec["ratio_drawing"], errors="coerce").dropna()
    out = pd.DataFrame(
        {
            "level": spec["level"].astype(float).astype(int),
            "max_value": spec["max_value"].astype(float),
            "ratio_drawing": float(ratio.iloc[0]) if len(ratio) else 0.0,
        }
    )
    return out


def load_growth_110() -> pd.DataFrame:
    """The 110 experimental E. coli media (``EXP110.csv``).

    Columns: the 10 carbon-source uptakes (0/1, split ids such as ``EX_rib__D_e_i``),
    ``GR_1``..``GR_8`` replicate growth rates (h^-1, NaN where missing), ``GR_AVG``, ``GR_STD``.
    """
    df = pd.read_csv(fetch("EXP110.csv"), index_col=0)
    df.index.name = "medium"
    return df


def load_media_110() -> pd.DataFrame:
    """The 110 media in iML1515 exchange space (``iML1515_EXP.csv``): 38 binary uptake columns
    (split ids, 28 minimal-medium compounds always 1 + 10 carbon sources) and ``GR_AVG`` (h^-1)."""
    df = pd.read_csv(fetch("iML1515_EXP.csv"))
    df.index.name = "medium"
    return df


def load_essential_genes() -> pd.DataFrame:
    """E. coli essential genes (Gerdes et al. 2003): 39 rows; columns ``bnumber`` (b-number,
    the gene id of iJO1366/iML1515), ``geneName``, ``Enzyme``, ``Function``, ..."""
    df = pd.read_csv(fetch("essentialGenesEcoli.tsv"), sep="\t")
    df.columns = [c.strip() for c in df.columns]
    df = df.rename(columns={"bNumber": "bnumber"})
    return df.apply(lambda col: col.str.strip() if col.dtype == object else col)


# ------------------------------------------------------------------------------- models
MODEL_ALIASES = {"e_coli_core": "textbook", "ecoli_core": "textbook"}
OFFLINE_MODELS = ("textbook", "iJO1366")


@functools.lru_cache(maxsize=8)
def _load_model_cached(key: str) -> cobra.Model:
    if key in OFFLINE_MODELS:
        return cobra.io.load_model(key)
    path = Path(key)
    if path.suffix.lower() in (".xml", ".sbml", ".json", ".yml", ".yaml", ".mat") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        readers = {
            ".json": ("JSON", cobra.io.load_json_model),
            ".yml": ("YAML", cobra.io.load_yaml_model),
            ".yaml": ("YAML", cobra.io.load_yaml_model),
            ".mat": ("MATLAB", cobra.io.load_matlab_model),
        }
        kind, reader = readers.get(suffix, ("SBML", cobra.io.read_sbml_model))
        try:
            return reader(str(path))
        except Exception as err:  # noqa: BLE001 - COBRApy raises many types for a bad file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"model file {str(path)!r} could not be read as {kind} ({first}); check that it "
                "is a valid, complete model file"
            ) from None
    try:
        return cobra.io.load_model(key)
    except Exception as err:  # noqa: BLE001 - any failure means "not available here"
        hint = (
            " iML1515 is downloaded from BiGG on demand; without a network use 'iJO1366' "
            "(shipped with COBRApy) as the offline stand-in."
            if key == "iML1515"
            else f" Offline models: {', '.join(OFFLINE_MODELS)} (alias e_coli_core)."
        )
        raise ValueError(f"model {key!r} could not be loaded ({err}).{hint}") from err


def load_model(name: str | Path) -> cobra.Model:
    """A fresh copy of a COBRApy model given by name or path.

    ``textbook`` / ``e_coli_core`` (E. coli core, 95 reactions) and ``iJO1366`` load offline;
    ``iML1515`` (and other BiGG ids) are downloaded by COBRApy when a network exists; a path
    ending in ``.xml``/``.sbml``/``.json``/``.yml``/``.mat`` is read from disk
    (``FileNotFoundError`` if missing).
    """
    key = str(name)
    key = MODEL_ALIASES.get(key, key)
    return _load_model_cached(key).copy()
