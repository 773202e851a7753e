"""Shared fixtures. Tests use the offline data copies in ../shared/data (never the network)."""

import os
from pathlib import Path

import pytest

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get("AMNLIB_DATA_DIR") and _SHARED.is_dir():
    os.environ["AMNLIB_DATA_DIR"] = str(_SHARED)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def textbook():
    from amnlib.network import MetabolicNetwork

    return MetabolicNetwork.load("textbook")


@pytest.fixture(scope="session")
def ijo1366():
    from amnlib.network import MetabolicNetwork

    return MetabolicNetwork.load("iJO1366")
