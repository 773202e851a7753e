"""Shared fixtures. Tests use the offline data copies in ../shared/data (never the network)."""

import os
from pathlib import Path

import matplotlib
import pytest

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("AMNLIB_DATA_DIR") and _SHARED.is_dir():
    os.environ["AMNLIB_DATA_DIR"] = str(_SHARED)
# Unit tests draw headless (matplotlib.use, this process only); the notebook kernels that nbmake
# and the book build start must not inherit a headless MPLBACKEND, which would drop every figure.
os.environ.pop("MPLBACKEND", None)
matplotlib.use("Agg")


@pytest.fixture(scope="session")
def textbook():
    from amnlib.network import MetabolicNetwork

    return MetabolicNetwork.load("textbook")


@pytest.fixture(scope="session")
def ijo1366():
    from amnlib.network import MetabolicNetwork

    return MetabolicNetwork.load("iJO1366")
