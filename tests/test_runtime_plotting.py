"""Shared helpers: fast mode flag, seeding, R^2 and the plotting style."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from amnlib import plotting, runtime  # noqa: E402


def test_fast_mode(monkeypatch):
    monkeypatch.setenv("AMNLIB_FAST", "1")
    assert runtime.fast_mode()
    monkeypatch.setenv("AMNLIB_FAST", "0")
    assert not runtime.fast_mode()


def test_seed_everything_reproducible():
    runtime.seed_everything(3)
    a = torch.rand(3)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    assert runtime.pick_device().type in ("cpu", "cuda")


def test_r2_score():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert plotting.r2_score(y, y) == 1.0
    assert plotting.r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0)
    assert plotting.r2_score(y, y + 1) == pytest.approx(1 - 4 / 5)


def test_parity_plot_labels():
    import matplotlib.pyplot as plt

    plotting.set_style()
    fig, ax = plt.subplots()
    plotting.parity(ax, [0.1, 0.5, 0.9], [0.12, 0.48, 0.91], label="AMN")
    assert "h$^{-1}$" in ax.get_xlabel()
    assert "R$^2$ = 0.99" in ax.get_legend().get_texts()[0].get_text()
    plt.close(fig)
