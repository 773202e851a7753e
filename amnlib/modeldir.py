"""Saved-model directories: written atomically, tied to the network they were trained on.

A model directory holds ``manifest.json`` (what kind of model, the network's fingerprint and
name, the settings, the versions of Python, amnlib, torch and COBRApy) next to the files of the
model itself (weights, tables, figures, a report). :func:`write_model_dir` builds it in a hidden
temporary folder beside the target and renames it into place at the end, so a failed or
interrupted run leaves no half-written directory; :func:`read_manifest` refuses a directory of
another kind or (with :func:`check_network`) one trained on another network.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
#: Bumped when the layout of a model directory changes.
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of the software a saved model depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("amnlib", "torch", "cobra", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_model_dir(
    out: str | Path,
    kind: str,
    write: Callable[[Path], dict[str, Any]],
    network=None,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Create the model directory ``out`` atomically.

    ``write(tmp)`` writes the model's files into the temporary folder ``tmp`` and returns extra
    manifest entries. ``network``: the :class:`~amnlib.network.MetabolicNetwork` the model was
    trained on (its fingerprint and name go into the manifest). An existing non-empty ``out`` is
    an error unless ``overwrite``. On any exception (KeyboardInterrupt included) the temporary
    folder is removed and ``out`` is left as it was.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{str(out)!r} exists and is not empty; choose another --out or "
                         "remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        extra = write(tmp) or {}
        manifest = {
            "kind": kind,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": versions(),
            "settings": settings or {},
            **extra,
        }
        if network is not None:
            manifest["network"] = {"name": network.name, "fingerprint": network.fingerprint(),
                                   "n_fluxes": network.n, "n_metabolites": network.m}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_jsonable))
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_manifest(directory: str | Path, kind: str) -> dict[str, Any]:
    """The manifest of a saved model of ``kind``; ``ValueError`` for a folder that is not one
    (missing manifest, another kind, a newer format)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {str(directory)!r} does not exist")
    path = directory / MANIFEST
    if not path.is_file():
        raise ValueError(f"{str(directory)!r} is not a saved amnlib model (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != kind:
        raise ValueError(f"{str(directory)!r} holds a {manifest.get('kind')!r} model, "
                         f"not a {kind!r} model")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{str(directory)!r} was written by a newer amnlib "
                         f"(format {manifest['format_version']}); upgrade amnlib")
    return manifest


def check_network(manifest: dict[str, Any], network) -> None:
    """``ValueError`` unless ``network`` is the network the saved model was trained on (same
    fingerprint: same split reactions, metabolites and stoichiometry)."""
    saved = manifest.get("network") or {}
    if saved.get("fingerprint") != network.fingerprint():
        raise ValueError(
            f"the saved model was trained on network {saved.get('name')!r} "
            f"({saved.get('n_fluxes')} split fluxes, fingerprint "
            f"{str(saved.get('fingerprint'))[:12]}), not on {network.name!r} ({network.n} split "
            f"fluxes, fingerprint {network.fingerprint()[:12]}); load it with the model it was "
            "trained on"
        )
