"""Chemical reaction neural networks (CRNN): learning reaction mechanisms from concentrations.

A CRNN is a neural ODE whose weights *are* a mechanism :cite:`ji2021crnn`. For R candidate
reactions over S species it holds

* a stoichiometry matrix ``W_out`` of shape ``(R, S)`` (negative entries: reactants, positive
  entries: products),
* reaction orders ``N`` of shape ``(R, S)`` with ``N >= 0``, either tied to the reactant
  coefficients (``N = clamp(-W_out, 0, max_order)``) or learned separately,
* log rate constants ``ln k`` of shape ``(R,)``.

The mass-action rates and the right-hand side of the ODE are

    r = exp(ln k + ln(clamp(X, eps)) @ N^T)        shape (batch, R)
    dX/dt = r @ W_out                              shape (batch, S)

so one layer with an ``exp`` activation is a chemical kinetics model. Trained through an ODE
solver (torchdiffeq, adaptive ``dopri5`` by default, adjoint optional) on measured time series,
the pruned weights are read back as equations such as ``B + D -> E, k = 0.3``.

Units: concentrations in arbitrary units (a.u.), time in s, so a reaction of total order m has
k in a.u.^(1-m) s^-1.

Public surface (by module):

* :mod:`~amnlib.crnn.mechanism` -- :class:`Mechanism` (printer :meth:`Mechanism.format`, parser
  :func:`parse_mechanism`), :class:`KineticsData`, :func:`generate_data`, :func:`compare`;
* :mod:`~amnlib.crnn.model` -- :class:`CRNN`, :func:`single_thread`;
* :mod:`~amnlib.crnn.training` -- :func:`crnn_loss`, :func:`train`, :func:`warm_start`,
  :func:`prune`, :func:`evaluate` and the pipeline :func:`recover`.

Discovering a mechanism from a user's data (count unknown) is :mod:`amnlib.discovery`. The paper's
chapter-6 experiment (case 1, its sizes and reference numbers, ``run()``, the chapter's studies)
lives in :mod:`amnlib.experiments.crnn`.
"""

from amnlib.crnn.mechanism import (
    CLAMP_MIN,
    KineticsData,
    Mechanism,
    compare,
    generate_data,
    parse_mechanism,
)
from amnlib.crnn.model import CRNN, single_thread
from amnlib.crnn.training import (
    Recovery,
    TrainResult,
    crnn_loss,
    discover,
    evaluate,
    integral_prediction,
    order_penalty,
    plot_trajectories,
    prune,
    recover,
    species_scale,
    train,
    warm_start,
)

__all__ = [
    "CLAMP_MIN", "CRNN", "KineticsData", "Mechanism", "Recovery", "TrainResult",
    "compare", "crnn_loss", "discover", "evaluate", "generate_data",
    "integral_prediction", "single_thread", "order_penalty", "plot_trajectories",
    "parse_mechanism", "prune", "recover", "species_scale", "train", "warm_start",
]
