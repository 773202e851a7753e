"""Run-time choices shared by notebooks and experiments: fast mode, device, seeds."""

from __future__ import annotations

import os
import random

import numpy as np


def fast_mode() -> bool:
    """True when ``AMNLIB_FAST`` is set to 1/true/yes (CI and ``make test``): notebooks and
    experiments then run the same code on smaller problems."""
    return os.environ.get("AMNLIB_FAST", "").strip().lower() in ("1", "true", "yes")


def pick_device(prefer: str | None = None):
    """``torch.device``: ``prefer`` if given, else CUDA when available, else CPU."""
    import torch

    if prefer is not None:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy Generator seeded the same way."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
