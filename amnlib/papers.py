"""Every number the book attributes to a paper, with its unit and where to find it.

The source documents (``../shared/seeds/`` of the project; the book cites them in
``book/references.md``):

* ``preprint`` -- Faure, Mollet, Liebermeister & Faulon, *Artificial Metabolic Networks: hybrid
  models enabling neural computations with metabolic networks* (preprint of Nat. Commun. 2023);
* ``poster`` -- the poster version, with the AMN loss written out;
* ``pinn_note`` -- a note on a physics-informed flux model trained on gene-deletion fitness;
* ``crnn_slides`` -- slides "Approximating higher order reactions with lower order reactions by
  CRNN" (their author's own trainings of a chemical reaction neural network);
* ``repository`` -- the authors' published code, ``github.com/brsynth/amn_release`` (a file and,
  where the number is a notebook output, the commit whose output it is).

:data:`NUMBERS` maps a dotted key (``"table1.amn_rnn_w.q2_test"``) to a :class:`PaperNumber`
(value, unit, document, where in it). :func:`value` reads one; the ``*_dict`` helpers rebuild the
dictionaries the chapters and benchmarks used to spell out themselves. :data:`FIGURES` lists
every figure and table of the preprint and the items of the other documents, with the chapter
section that reproduces it, the function that does, the numbers compared, and a verdict; the book
page "The papers, figure by figure" (``tools/paper_map.py`` -> ``book/paper_map.md``) is
generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DOCUMENTS",
    "PaperNumber",
    "NUMBERS",
    "value",
    "source",
    "Figure",
    "FIGURES",
    "VERDICTS",
    "table1_dict",
    "genome_dict",
    "reservoir_dict",
    "toy_weights",
]

#: The documents numbers come from (key -> citation).
DOCUMENTS: dict[str, str] = {
    "preprint": "AMN preprint (seeds/amn_paper_preprint.txt)",
    "poster": "AMN poster (seeds/amn_poster.txt)",
    "pinn_note": "PINN fitness-loss note (seeds/pinn_fitness_loss_note.md)",
    "crnn_slides": "CRNN higher-order slides (seeds/crnn_higher_order_slides.md)",
    "repository": "authors' code, github.com/brsynth/amn_release",
    "notes": "project notes (shared/notes/mechanistic-layers.md), file in the repository not "
    "located",
}

#: Commit of ``brsynth/amn_release`` whose notebook outputs are quoted.
REPO_COMMIT = "154b2b63b8e813f72baf174ebc9ec4a1ef372e13"


@dataclass(frozen=True)
class PaperNumber:
    """One published number: ``value`` in ``unit``, found in ``document`` (a key of
    :data:`DOCUMENTS`) at ``where`` (figure, table, section, or file); ``note`` says how it was
    read when that needs saying."""

    value: Any
    unit: str
    document: str
    where: str
    note: str = ""

    def cite(self) -> str:
        """``"preprint, Table 1"``-style citation."""
        return f"{self.document}, {self.where}"


def _n(value: Any, unit: str, document: str, where: str, note: str = "") -> PaperNumber:
    if document not in DOCUMENTS:
        raise ValueError(f"unknown document {document!r}; valid: {sorted(DOCUMENTS)}")
    return PaperNumber(value, unit, document, where, note)


_T1 = "Table 1"
_T1_NOTE = (
    "Table 1 as extracted to text lists the epoch / time / R2 columns of rows 2-8 after the table "
    "body; read in row order"
)


def _table1_row(row: str, model: str, measure: str, nn: str, arch: str, timestep: Any,
                params: int, epochs: int, seconds: float, r2: float, q2: float, q2_test: float,
                sv2: float | None, sv2_test: float | None, r2_std: float, q2_std: float,
                sv2_std: float | None) -> dict[str, PaperNumber]:
    """The numbers of one Table 1 row (all rows: 10,000 pFBA samples, ratio 0.5)."""
    w = f"{_T1}, row {row}"
    out = {
        "model": _n(model, "-", "preprint", w),
        "measure": _n(measure, "-", "preprint", w),
        "nn_type": _n(nn, "-", "preprint", w),
        "architecture": _n(arch, "-", "preprint", w),
        "timestep": _n(timestep, "iterations", "preprint", w),
        "training_set": _n(10_000, "samples", "preprint", w + " (Size)"),
        "ratio": _n(0.5, "-", "preprint", w + " (Ratio)"),
        "parameters": _n(params, "parameters", "preprint", w + " (Nbr Param)"),
        "epochs": _n(epochs, "epochs", "preprint", w + " (Nbr epoch)", _T1_NOTE),
        "seconds_per_epoch": _n(seconds, "s (2.4 GHz 8-core Intel i9, batch 5)", "preprint",
                                w + " (Time per epoch)", _T1_NOTE),
        "r2": _n(r2, "-", "preprint", w + " (R2 X-fold)", _T1_NOTE),
        "r2_std": _n(r2_std, "-", "preprint", w + " (R2 X-fold, +/-)", _T1_NOTE),
        "q2": _n(q2, "-", "preprint", w + " (Q2 X-fold)"),
        "q2_std": _n(q2_std, "-", "preprint", w + " (Q2 X-fold, +/-)"),
        "q2_test": _n(q2_test, "-", "preprint", w + " (Q2 test, 1,000 samples)"),
    }
    if sv2 is not None:
        out["sv2"] = _n(sv2, "(mmol gDW^-1 h^-1)^2", "preprint", w + " (||SV||2 X-fold)")
        out["sv2_std"] = _n(sv2_std, "(mmol gDW^-1 h^-1)^2", "preprint",
                            w + " (||SV||2 X-fold, +/-)")
    if sv2_test is not None:
        out["sv2_test"] = _n(sv2_test, "(mmol gDW^-1 h^-1)^2", "preprint", w + " (||SV||2 test)")
    return out


def _prefix(prefix: str, d: dict[str, PaperNumber]) -> dict[str, PaperNumber]:
    return {f"{prefix}.{k}": v for k, v in d.items()}


#: Every published number the book uses, by dotted key.
NUMBERS: dict[str, PaperNumber] = {
    # ---------------------------------------------------------------- Fig. 1 / S1 (chapter 1)
    "fig1.v1": _n(0.1, "flux units", "preprint", "Fig. 1B/1E caption (v1 = TPI = 0.1)"),
    "fig1.v3": _n(0.5, "flux units", "preprint", "Fig. 1E caption (searching weights for which "
                  "v3 = 0.5)"),
    "fig1.w21": _n(0.74, "-", "preprint", "Fig. 1E caption"),
    "fig1.w31": _n(0.26, "-", "preprint", "Fig. 1E caption"),
    "fig1.w32": _n(0.20, "-", "preprint", "Fig. 1E caption"),
    "fig1.w42": _n(0.80, "-", "preprint", "Fig. 1E caption"),
    "fig1.iterations": _n(30, "iterations", "preprint", "Fig. 1E/1F captions (n = 30)"),
    "figS1.w41_a": _n(0.5, "-", "preprint", "Fig. S1 caption (panel A: w41 = 1/2)"),
    "figS1.w41_b": _n(1 / 3, "-", "preprint", "Fig. S1 caption (panel B: printed '1/3')"),
    # ---------------------------------------------------------------- Fig. 2 (chapter 2)
    "fig2.dt_eb": _n(3.0e-4, "-", "preprint", "Methods, Solving LP/QP with RNN methods "
                     "(printed '3.0 10-4')"),
    "fig2.dt_ub": _n(5.0e-2, "-", "preprint", "Methods, Solving LP/QP with RNN methods "
                     "(printed '5.0-2')"),
    "fig2.decay": _n(0.7, "-", "preprint", "Methods, Solving LP/QP with RNN methods"),
    "fig2.decay_every": _n(10_000, "iterations", "preprint",
                           "Methods, Solving LP/QP with RNN methods (printed '104')"),
    "fig2.iterations_needed": _n(
        400_000, "iterations", "preprint",
        "Results, RNN-EB/UB paragraph ('at least 400,000 (Fig. 2D)')",
        "the iterations for 'satisfactory performances' of the flux R^2 of Fig. 2D, not for the "
        "growth rate of Fig. 2C"),
    "fig2.iterations_run": _n(10_000_000, "iterations", "preprint",
                              "Methods, Solving LP/QP with RNN methods (printed '107')"),
    "fig2.media": _n(50, "media", "preprint", "Methods (50 simulations)"),
    "fig2.objective_scale": _n(100.0, "-", "repository", "Library/Build_Model.py (LP objective "
                               "scaled by k = 100 when solving)"),
    # ---------------------------------------------------------------- Fig. 3 / Table 1 (ch. 3)
    "fig3.dropout": _n(0.25, "-", "preprint", "Table 1 footnote (3)"),
    "fig3.batch_size": _n(5, "samples", "preprint", "Table 1 footnote (3)"),
    "fig3.folds": _n(5, "folds", "preprint", "Table 1 footnote (5)"),
    "fig3.test_size": _n(1000, "samples", "preprint", "Table 1 footnote (6)"),
    **_prefix("table1.ann_dense_all", _table1_row(
        "1", "Ecoli_core", "All (154)", "ANN", "Dense", None, 3610, 500, 1.0, 0.92, 0.92,
        0.94, 0.22, 5.54, 0.00, 0.00, 0.06)),
    **_prefix("table1.ann_dense_biomass", _table1_row(
        "2", "Ecoli_core", "Biomass (1)", "ANN", "Dense", None, 3610, 1000, 1.0, 0.96, 0.95,
        0.96, None, None, 0.02, 0.02, None)),
    **_prefix("table1.ann_sv_all", _table1_row(
        "3", "Ecoli_core", "All (154)", "ANN", "SV", None, 3610, 500, 2.0, 0.92, 0.92, 0.95,
        0.16, 2.52, 0.01, 0.01, 0.03)),
    **_prefix("table1.ann_sv_biomass", _table1_row(
        "4", "Ecoli_core", "Biomass (1)", "ANN", "SV", None, 3610, 1000, 2.0, 0.98, 0.98, 0.99,
        0.04, 0.85, 0.01, 0.01, 0.01)),
    **_prefix("table1.amn_rnn_eb_all", _table1_row(
        "5", "Ecoli_core", "All (154)", "AMN", "RNN-EB", 1, 4740, 500, 6.3, 0.82, 0.83, 0.94,
        1.64, 0.54, 0.12, 0.11, 0.48)),
    **_prefix("table1.amn_rnn_eb_biomass", _table1_row(
        "6", "Ecoli_core", "Biomass (1)", "AMN", "RNN-EB", 5, 4740, 1000, 6.3, 1.00, 1.00, 0.99,
        0.03, 0.45, 0.00, 0.00, 0.02)),
    **_prefix("table1.amn_rnn_w", _table1_row(
        "7", "Ecoli_core", "Biomass (1)", "AMN", "RNN-W", 5, 14320, 500, 11.0, 0.98, 0.98, 0.70,
        0.02, 0.48, 0.01, 0.01, 0.01)),
    **_prefix("table1.iml1515", _table1_row(
        "8", "iML1515", "Biomass (1)", "AMN", "RNN-EB", 1, 289430, 500, 60.0, 1.00, 1.00, 1.00,
        0.06, 0.04, 0.00, 0.00, 0.02)),
    "repo.ecoli_core_qp_q2": _n(
        0.9683, "-", "repository", f"Build_Model_AMN.ipynb @ {REPO_COMMIT[:8]}, cell 'AMN with "
        "QP solver on E. coli core' (5-fold Q2 of the growth rate)",
        "1,000 samples (90% for 5-fold CV), 500 epochs, batch 5, timestep 4, hidden 50"),
    "repo.ecoli_core_lp_q2": _n(
        0.9742, "-", "repository", f"Build_Model_AMN.ipynb @ {REPO_COMMIT[:8]}, cell 'AMN with "
        "LP solver on E. coli core' (5-fold Q2 of the growth rate)",
        "1,000 samples (90% for 5-fold CV), 500 epochs, batch 5, timestep 4, hidden 50"),
    "repo.ecoli_core_timestep": _n(4, "iterations", "repository",
                                   f"Build_Model_AMN.ipynb @ {REPO_COMMIT[:8]} (timestep = 4)"),
    # ---------------------------------------------------------------- Fig. 4 (chapter 4)
    "fig4.media": _n(73, "media", "preprint", "Abstract; Results (73 media compositions)",
                     "the published data set used by the book has 110 media"),
    "fig4.amn_q2": _n(0.78, "-", "preprint", "Fig. 4B; Abstract (R2 = 0.78, aggregated "
                      "validation sets of 10-fold CV x 3 seeds)"),
    "fig4.amn_train_r2": _n(0.96, "-", "preprint", "Results, reservoir paragraph "
                            "(R2 = 0.96 +/- 0.02 on training sets)"),
    "fig4.amn_train_r2_std": _n(0.02, "-", "preprint", "Results, reservoir paragraph"),
    "fig4.folds": _n(10, "folds", "preprint", "Fig. 4B caption (10-fold stratified CV)"),
    "fig4.repeats": _n(3, "seeds", "preprint", "Fig. 4B caption (repeated 3 times)"),
    "fig4.fba_default_uptake": _n(10.0, "mmol gDW^-1 h^-1", "preprint",
                                  "Fig. 4C caption (10 when present, 0 when absent)"),
    "fig4.fba_bfgs_r2": _n(0.47, "-", "preprint", "Fig. 4D; Results ('R2 = 0.47', no "
                           "cross-validation)"),
    "fig4.bfgs_start": _n(5.0, "mmol gDW^-1 h^-1", "preprint",
                          "Methods, Optimization of exchange reactions upper bounds in FBA"),
    "tableS2.media": _n(38, "media", "preprint", "Table S2 caption (38 media with growth "
                        ">= 0.05)"),
    # ---------------------------------------------------------------- poster / notes / slides
    "poster.loss": _n("|P_ref V - V_ref|^2 / n_ref + |SV|^2 / m + |ReLU(P_in V - V_in)|^2 / n_in"
                      " + |ReLU(-V)|^2 / n", "(mmol gDW^-1 h^-1)^2", "poster",
                      "'Loss' panel (reference fluxes, mass balance, uptake bounds, positivity)"),
    "pinn.loss": _n("|v|_1 + l_null |S v|^2 + l_fitness (w^T v - fitness)^2 + l_bounds "
                    "(sum ReLU(-v) + sum ReLU(v - v_ub))", "-", "pinn_note",
                    "'Complete Loss Function' (pFBA L1, null-space, fitness, bounds)"),
    "crnn.max_order": _n(2, "-", "crnn_slides", "'Loss function of chemical reaction neural "
                         "network' (ReLU(n_A + n_B + n_C + n_D - 2) per reaction)"),
    "crnn.case1_k": _n((0.3, 0.1, 0.2, 0.13), "rate constants", "crnn_slides",
                       "'Training result with modified loss function', ground truth column"),
    "crnn.case1_learned_k": _n((0.307, 0.101, 0.206, 0.13), "rate constants", "crnn_slides",
                               "'Training result with modified loss function', learned CRNN "
                               "column (the slides' author's training, order-penalised loss)"),
    "crnn.case1_original_loss_k": _n((0.307, 0.102, 0.206, 0.130), "rate constants",
                                     "crnn_slides", "'Training result with modified loss "
                                     "function', 'Original loss function' table"),
}

#: The learned case-1 mechanism of the slides (their author's training with the modified,
#: order-penalised loss; 'Training result with modified loss function', learned CRNN column).
CRNN_CASE1_LEARNED = """\
B + 1.006 D -> 1.006 E, k = 0.307
2.093 A -> 1.107 B, k = 0.101
1.004 A -> 0.965 C, k = 0.206
0.999 C -> 1.011 D, k = 0.13"""


def value(key: str) -> Any:
    """The published value of ``key`` (``KeyError`` naming close keys if unknown)."""
    try:
        return NUMBERS[key].value
    except KeyError:
        close = [k for k in NUMBERS if k.split(".")[0] == key.split(".")[0]][:8]
        raise KeyError(f"no paper number {key!r}; keys of that group: {close}") from None


def source(key: str) -> str:
    """Where ``key`` is published (``"preprint, Table 1, row 7 (Q2 test, ...)"``)."""
    return NUMBERS[key].cite()


# ------------------------------------------------------------------ dictionaries the code reads
#: Our Table 1 rows -> the preprint's row keys (AMN-QP is the published successor of RNN-EB;
#: AMN-Wt the published name of the Fig. 3C RNN-W AMN).
TABLE1_ROW_KEYS: dict[tuple[str, str], str] = {
    ("ANN Dense", "all"): "table1.ann_dense_all",
    ("ANN Dense", "biomass"): "table1.ann_dense_biomass",
    ("ANN SV", "all"): "table1.ann_sv_all",
    ("ANN SV", "biomass"): "table1.ann_sv_biomass",
    ("AMN-QP", "all"): "table1.amn_rnn_eb_all",
    ("AMN-QP", "biomass"): "table1.amn_rnn_eb_biomass",
    ("AMN-Wt", "biomass"): "table1.amn_rnn_w",
}
_TABLE1_FIELDS = ("parameters", "epochs", "timestep", "seconds_per_epoch", "r2", "q2", "sv2",
                  "q2_test", "sv2_test")


def _row(prefix: str) -> dict[str, Any]:
    return {f: (NUMBERS[f"{prefix}.{f}"].value if f"{prefix}.{f}" in NUMBERS else None)
            for f in _TABLE1_FIELDS}


def table1_dict() -> dict[tuple[str, str], dict[str, Any]]:
    """The paper's numbers for each of our Table 1 rows (``None``: not given). AMN-LP has no
    preprint row: its entry is the published code's 5-fold Q^2 (``repo.ecoli_core_lp_q2``).
    Prior+RNN-W (the book's own variant) has no published counterpart."""
    out = {k: _row(p) for k, p in TABLE1_ROW_KEYS.items()}
    lp = dict.fromkeys(_TABLE1_FIELDS)
    lp["q2"] = value("repo.ecoli_core_lp_q2")
    out[("AMN-LP", "biomass")] = lp
    return out


def genome_dict() -> dict[str, Any]:
    """The preprint's Table 1 iML1515 row (10,000 samples, 500 epochs) and the published
    code's iML1515 AMN-QP validation R^2."""
    return {
        "model": value("table1.iml1515.model"),
        "training_set": value("table1.iml1515.training_set"),
        "epochs": value("table1.iml1515.epochs"),
        "timestep": value("table1.iml1515.timestep"),
        "parameters": value("table1.iml1515.parameters"),
        "seconds_per_epoch": value("table1.iml1515.seconds_per_epoch"),
        "q2": value("table1.iml1515.q2"),
        "q2_test": value("table1.iml1515.q2_test"),
        "sv2_test": value("table1.iml1515.sv2_test"),
    }


def reservoir_dict() -> dict[str, float]:
    """The preprint's Fig. 4 numbers (73 media; the book's data set has 110)."""
    return {
        "amn": value("fig4.amn_q2"),
        "amn_train_r2": value("fig4.amn_train_r2"),
        "fba_bfgs": value("fig4.fba_bfgs_r2"),
    }


def toy_weights() -> dict[str, float]:
    """The Fig. 1E weights ``{"w21": 0.74, ...}``."""
    return {k: value(f"fig1.{k}") for k in ("w21", "w31", "w32", "w42")}


# ------------------------------------------------------------------ the map of figures
#: The one-word verdicts of the paper map.
VERDICTS = ("reproduced", "adapted", "extended", "not reproduced")


@dataclass(frozen=True)
class Figure:
    """One figure / table / item of a source document and where the book reproduces it.

    ``item`` ("Fig. 2D"), ``document`` (key of :data:`DOCUMENTS`), ``what`` (one line),
    ``page`` (the notebook or book page, without suffix) and ``section`` (the heading text of
    the section on that page, "" for the page itself; the link anchor is its docutils id),
    ``function`` (dotted name in amnlib), ``theirs`` (keys of :data:`NUMBERS`), ``ours``
    (``(results file, key, key, ...)`` of our committed number in ``benchmarks/results/``, or
    ``None``), ``verdict`` (one of :data:`VERDICTS`) and ``why`` (what differs and why).
    """

    item: str
    document: str
    what: str
    page: str
    section: str
    function: str
    theirs: tuple[str, ...]
    verdict: str
    why: str
    ours: tuple[str, ...] | None = None
    ours_label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


FIGURES: tuple[Figure, ...] = (
    Figure("Fig. 1A-C", "preprint", "toy glycolysis network, its FBA solution and matrices",
           "notebooks/01_toy_rnn_w", "The toy network (Fig. 1A and 1B)", "amnlib.toy.toy_network",
           ("fig1.v1", "fig1.v3"), "reproduced",
           "same network, same v1 = 0.1; the FBA face is solved with COBRApy"),
    Figure("Fig. 1D-F", "preprint", "RNN-W unrolled, its weights (w21 0.74, w31 0.26, w32 0.20, "
           "w42 0.80) and the 30-iteration heatmap", "notebooks/01_toy_rnn_w",
           "Our weights and the paper's",
           "amnlib.rnnw.fit_weights", ("fig1.w21", "fig1.w31", "fig1.w32", "fig1.w42",
                                       "fig1.iterations"), "reproduced",
           "the weights learned from the FBA-face point of the caption match; from the pFBA "
           "point they differ (pFBA picks another optimum of the same growth)"),
    Figure("Fig. S1", "preprint", "two media give two sets of branching ratios (w41 1/2, 1/3)",
           "notebooks/01_toy_rnn_w", "One W does not fit every flux distribution (Fig. S1)",
           "amnlib.experiments.toy_rnnw.learn_figs1", ("figS1.w41_a", "figS1.w41_b"),
           "reproduced", "the min-rule of the caption gives the same two ratios"),
    Figure("Fig. 2A-C", "preprint", "RNN-EB and RNN-UB growth rates against COBRApy FBA",
           "notebooks/02_rnn_solvers", "Fig. 2C: growth rates",
           "amnlib.experiments.solvers.compare_solvers",
           ("fig2.dt_eb", "fig2.dt_ub", "fig2.decay", "fig2.media"), "adapted",
           "both RNNs use the Yang dynamics (the preprint cites Ghasabi-Oskoei for EB; the "
           "published code uses Yang for both), EB with the UB step 5e-2; 1e5 instead of 1e7 "
           "iterations"),
    Figure("Fig. 2D", "preprint", "flux R^2 against pFBA as iterations proceed",
           "notebooks/02_rnn_solvers", "Our numbers beside the paper's",
           "amnlib.experiments.solvers.compare_solvers",
           ("fig2.iterations_needed", "fig2.iterations_run"), "adapted",
           "the preprint prints no R^2 value, only >= 4e5 iterations for a 'satisfactory' flux "
           "R^2; we report the iterations our solvers need to reach flux R^2 0.90 and 0.95, "
           "beside the growth criterion (1% error)"),
    Figure("Fig. 2 (duals)", "preprint", "M, the dual vector, 'metabolite shadow prices'",
           "notebooks/02_rnn_solvers", "Gradients of the growth rate",
           "amnlib.duals.compare_with_cobrapy", (), "extended",
           "the preprint names M the shadow prices; chapter 2 compares our bound multipliers "
           "and envelope gradients with COBRApy's shadow_prices / reduced_costs (signs, factor 2)"),
    Figure("Fig. 3A-B", "preprint", "AMN = dense prior + mechanistic layer (RNN-EB)",
           "notebooks/03_amn_training", "Architectures (Fig. 3A–C)", "amnlib.models.AMN",
           ("table1.amn_rnn_eb_biomass.q2_test", "table1.amn_rnn_eb_biomass.sv2_test"),
           "adapted", "AMN-QP (published successor of RNN-EB) with network-scaled steps; "
           "batch 100, 40 epochs, hidden 200 instead of batch 5, 500-1,000 epochs",
           ("amn.json", "table1", "AMN-QP / biomass", "q2_test"), "Q2 test, growth rate"),
    Figure("Fig. 3C", "preprint", "AMN with RNN-W inside the recurrent cell (W_in, W_r)",
           "notebooks/03_amn_training", "The Fig. 3C AMN (AMN-Wt)", "amnlib.models.WtLayer",
           ("table1.amn_rnn_w.parameters", "table1.amn_rnn_w.q2_test",
            "table1.amn_rnn_w.sv2_test"), "adapted",
           "ReLU and dropout 0.25 in the input layer, W_r only on the pattern of M2V, W_r "
           "started at 0; Table 1 protocol of the book (batch 100, 40 epochs)",
           ("amn.json", "table1", "AMN-Wt / biomass", "q2_test"), "Q2 test, growth rate"),
    Figure("Table 1", "preprint", "ANN Dense, ANN SV, RNN-EB, RNN-W on E. coli core",
           "notebooks/03_amn_training", "The full protocol",
           "amnlib.experiments.amn.table1", ("table1.ann_dense_all.q2_test",
                                             "table1.amn_rnn_eb_all.q2_test"), "adapted",
           "same data sizes (10,000 + 1,000, 5 folds); our epochs, batch size and hidden "
           "layer differ (CPU budget), so our baselines are stronger",
           ("amn.json", "table1", "ANN Dense / all", "q2_test"), "ANN Dense all, Q2 test"),
    Figure("Table 1 (iML1515)", "preprint", "genome-scale AMN (RNN-EB), 10,000 samples",
           "notebooks/03_amn_training", "Genome scale",
           "amnlib.experiments.amn_genome.train_genome_amn",
           ("table1.iml1515.q2_test", "table1.iml1515.epochs",
            "table1.iml1515.training_set"), "adapted",
           "iJO1366 offline instead of iML1515, 40 instead of 500 epochs",
           ("amn_genome.json", "result", "q2"), "Q2 held out, growth rate"),
    Figure("Fig. 4A-B", "preprint", "AMN reservoir on measured growth rates",
           "notebooks/04_reservoir", "Fig. 4B: the AMN reservoir",
           "amnlib.reservoir.evaluate_reservoir",
           ("fig4.amn_q2", "fig4.media", "fig4.amn_train_r2"), "adapted",
           "the published 110-media data set (the preprint used 73 media); iJO1366 offline",
           ("reservoir.json", "q2", "amn"), "Q2, 10-fold x 3 seeds"),
    Figure("Fig. 4C", "preprint", "out-of-the-box FBA (uptake 10 when present)",
           "notebooks/04_reservoir", "Fig. 4C: out-of-the-box FBA", "amnlib.baselines.fba_default",
           ("fig4.fba_default_uptake",), "not reproduced",
           "our out-of-the-box FBA is far off too (R2 << 0 against the measured rates, about five "
           "times too large), but not uncorrelated: on the 110 media with iJO1366 its squared "
           "correlation with the measurements is 0.53 (preprint: 'uncorrelated', 73 media, "
           "iML1515); we do not know which difference causes it",
           ("reservoir.json", "q2", "fba_default"), "R2 against measured, no fit"),
    Figure("Fig. 4D", "preprint", "FBA with BFGS-optimised uptake bounds",
           "notebooks/04_reservoir", "Fig. 4D: uptake bounds fitted by BFGS",
           "amnlib.baselines.optimize_uptakes",
           ("fig4.fba_bfgs_r2", "fig4.bfgs_start"), "adapted",
           "BFGS starts at 1 (5 leaves iJO1366 O2-limited, zero gradient); 110 media",
           ("reservoir.json", "r2_full_data", "fba_bfgs"), "R2 fitted on all media"),
    Figure("Table S1-S2", "preprint", "optimised and learned uptake fluxes",
           "notebooks/04_reservoir", "Learned uptake fluxes (Table S2 analog)",
           "amnlib.reservoir.learned_uptakes", ("tableS2.media",),
           "adapted", "our tables come from our fits on the 110 media, not the preprint's 73"),
    Figure("Fig. S2", "preprint", "S_int / S_ext matrices of the UB method",
           "notebooks/02_rnn_solvers", "The linear programme", "amnlib.network.MetabolicNetwork",
           (), "adapted", "we write UB as A V = b with bounds on V (same LP), so S_int / S_ext "
           "exist as matrices (MetabolicNetwork.S_int, S_ext) but are not used by the solver"),
    Figure("Poster, Loss", "poster", "AMN loss: reference fluxes + ||SV||^2 + uptake bounds + "
           "positivity", "notebooks/03_amn_training", "The loss", "amnlib.losses.AMNLoss",
           ("poster.loss",), "adapted",
           "same four terms; the growth term is weighted by 100 for the biomass target"),
    Figure("PINN note, losses", "pinn_note", "pFBA L1 + null-space + fitness + bounds losses",
           "notebooks/05_pinn_fitness", "The loss, term by term", "amnlib.pinn.train_pinn",
           ("pinn.loss",), "extended",
           "the note's losses on E. coli core gene-deletion fitness, plus a null-space "
           "projection"),
    Figure("Slides, loss", "crnn_slides", "MAE + order penalty ReLU(sum n - 2)",
           "notebooks/06_crnn", "A reaction as a neuron", "amnlib.crnn.crnn_loss",
           ("crnn.max_order",), "reproduced",
           "same loss"),
    Figure("Slides, learned table", "crnn_slides", "the slides' author's learned case-1 "
           "mechanism (original and modified loss)", "notebooks/06_crnn",
           "Ground truth, learned and published mechanisms", "amnlib.crnn.recover",
           ("crnn.case1_k", "crnn.case1_learned_k"), "reproduced",
           "our training recovers the ground truth closer than the slides' table",
           ("crnn.json", "metrics", "max_rel_k_error"), "max relative k error"),
    Figure("Slides, hidden species", "crnn_slides", "X_i + X_j <-> Z, Z + X_k -> products, "
           "proposed as the exact representation training fails to find",
           "notebooks/06_crnn", "Higher-order reactions from second-order ones",
           "amnlib.experiments.crnn.pre_equilibrium_mechanism", (), "extended",
           "the slides propose it ('one of the parameters should be infinity'); the book "
           "builds it and studies its stiffness"),
)
