"""`amnlib fit-reservoir` / `amnlib predict` on a growth table written the way a user would.

The table: COBRApy's textbook model, 40 media of 1-3 of 6 carbon sources added to the model's
medium without its glucose, each present source taken up at most at a hidden "true" bound
(:data:`TRUE_BOUNDS`), growth by ``model.slim_optimize()`` plus measurement noise, two replicate
rows per medium. The reservoir, fitted on presence (0/1) only, must predict held-out media, learn
uptakes close to the hidden bounds, and export media that COBRApy grows on.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from amnlib.cli import main
from amnlib.reservoir import reservoir_predict

#: Hidden uptake bounds (mmol/gDW/h) of the carbon sources in the "measured" media.
TRUE_BOUNDS = {"EX_glc__D_e": 6.0, "EX_fru_e": 4.0, "EX_succ_e": 8.0, "EX_mal__L_e": 3.0,
               "EX_pyr_e": 5.0, "EX_ac_e": 2.0}
#: Small sizes for CI (same code paths as the defaults).
SIZES = ["--pretrain-size", "400", "--pretrain-epochs", "30", "--epochs", "200",
         "--bfgs-maxiter", "5", "--ann-epochs", "100", "--trees", "30", "--quiet"]


def _cobra_growth(model, present, bounds=TRUE_BOUNDS) -> float:
    base = {k: v for k, v in model.medium.items() if k not in TRUE_BOUNDS}
    with model:
        model.medium = {**base, **{c: bounds[c] for c in present}}
        return float(model.slim_optimize(error_value=0.0))


def write_growth_table(path: Path, n_media: int = 40, seed: int = 0, noise: float = 0.01,
                       replicates: int = 2) -> Path:
    """One row per replicate: medium id, 0/1 carbon-source columns, growth (h^-1)."""
    import cobra.io

    model = cobra.io.load_model("textbook")
    rng = np.random.default_rng(seed)
    combos = [c for k in (1, 2, 3) for c in itertools.combinations(TRUE_BOUNDS, k)]
    rows, j = [], 0
    for ci in rng.permutation(len(combos)):
        g = _cobra_growth(model, combos[ci])
        if g < 0.05:  # e.g. acetate alone: no growth at its bound
            continue
        for _ in range(replicates):
            rows.append({"medium": f"m{j:02d}", **{c: int(c in combos[ci]) for c in TRUE_BOUNDS},
                         "growth": max(g + rng.normal(0, noise), 0.0)})
        j += 1
        if j == n_media:
            break
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_new_media(path: Path, with_growth: bool = True) -> Path:
    """The 15 media of 4 carbon sources (none in the table), columns in another order."""
    import cobra.io

    model = cobra.io.load_model("textbook")
    rows = []
    for k, combo in enumerate(itertools.combinations(TRUE_BOUNDS, 4)):
        row = {"medium": f"new{k}", **{c: int(c in combo) for c in reversed(list(TRUE_BOUNDS))}}
        if with_growth:
            row["growth"] = _cobra_growth(model, combo)
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, one_thread):
    """Run ``amnlib fit-reservoir`` once (a private cache folder: the pre-training is computed)."""
    root = tmp_path_factory.mktemp("reservoir")
    table = write_growth_table(root / "growth.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMNLIB_CACHE_DIR", str(root / "cache"))
        rc = main(["fit-reservoir", "--model", "textbook", "--growth", str(table),
                   "--out", str(root / "model"), *SIZES])
    assert rc == 0
    return SimpleNamespace(root=root, table=table, out=root / "model",
                           report=json.loads((root / "model" / "report.json").read_text()))


# ------------------------------------------------------------------------------------ fit
def test_fit_reservoir_report(fitted, textbook):
    files = {p.name for p in fitted.out.iterdir()}
    assert {"manifest.json", "amn.pt", "uptake_layer.pt", "model.json", "report.json",
            "parity.png", "media.json", "uptakes.csv", "table.csv"} <= files
    manifest = json.loads((fitted.out / "manifest.json").read_text())
    assert manifest["kind"] == "growth-reservoir"
    assert manifest["network"]["fingerprint"] == textbook.fingerprint()
    space = manifest["medium_space"]
    assert space["table_ids"] == list(TRUE_BOUNDS) and space["presence"] is True
    # the base medium: the model's own medium without the table's exchange (glucose)
    assert space["base"] == {k: v for k, v in textbook.model.medium.items()
                             if k != "EX_glc__D_e"}
    q2 = fitted.report["q2"]
    assert set(q2) == {"reservoir", "fba_default", "fba_scaled", "fba_bfgs",
                       "fba_reservoir_bounds", "ols", "xgboost", "random_forest", "ann"}
    assert all(np.isfinite(v) for v in q2.values())
    # measured (noisy 2-core machine, same seeds): reservoir 0.997, FBA with its uptakes 0.990,
    # BFGS 0.969, scaled FBA 0.835, default FBA -5.3 (every present source at 10: far too high)
    assert q2["reservoir"] > 0.95
    assert q2["fba_reservoir_bounds"] > 0.9
    assert q2["fba_bfgs"] > 0.9
    assert 0.5 < q2["fba_scaled"] < q2["fba_bfgs"]
    assert q2["fba_default"] < 0
    assert fitted.report["pretrain"]["q2"] > 0.9
    assert fitted.report["noise_ceiling"] > 0.95  # two replicates per medium
    assert fitted.report["n_media"] == 40


def test_learned_uptakes_recover_hidden_bounds(fitted):
    """The layer learns uptakes near the bounds that generated the table (acetate, a weak
    contributor, is left out: measured 2.5 for 2.0)."""
    uptakes = pd.read_csv(fitted.out / "uptakes.csv", index_col=0)
    table = pd.read_csv(fitted.out / "table.csv", index_col=0)
    for ex, bound in TRUE_BOUNDS.items():
        if ex == "EX_ac_e":
            continue
        learned = uptakes.loc[table[ex] > 0, ex + "_i"].mean()
        assert learned == pytest.approx(bound, rel=0.1), ex


def test_media_json_grows_in_cobrapy(fitted):
    """The exported media, assigned to a COBRApy model, give the growth the report states."""
    import cobra.io

    from amnlib.metrics import r2

    media = json.loads((fitted.out / "media.json").read_text())
    table = pd.read_csv(fitted.out / "table.csv", index_col=0)
    assert list(media) == list(table.index)
    model = cobra.io.load_model("textbook")
    growth = []
    for medium_id in table.index:
        model.medium = media[medium_id]
        growth.append(model.slim_optimize(error_value=0.0))
    assert r2(table["growth"].to_numpy(), np.array(growth)) == pytest.approx(
        fitted.report["r2_full_data"]["fba_reservoir_bounds"], abs=1e-6)


def test_reload_predicts_the_saved_numbers(fitted):
    from amnlib.growth_workflow import load_growth_model
    from amnlib.metrics import r2

    gm = load_growth_model(fitted.out)
    table = pd.read_csv(fitted.out / "table.csv", index_col=0)
    media = table[list(TRUE_BOUNDS)].to_numpy()
    saved = pd.read_csv(fitted.out / "uptakes.csv", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(gm.uptakes(media, index=table.index).to_numpy(), saved.to_numpy())
    assert r2(table["growth"].to_numpy(), gm.predict(media)) == pytest.approx(
        fitted.report["r2_full_data"]["reservoir"], abs=1e-9)


def test_predict_cli_on_new_media(fitted, capsys):
    media = write_new_media(fitted.root / "new.csv")
    out, mj = fitted.root / "pred.csv", fitted.root / "new_media.json"
    assert main(["predict", "--model-dir", str(fitted.out), "--media", str(media), "--out",
                 str(out), "--media-json", str(mj)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["medium", "predicted_growth", "growth"] and len(pred) == 15
    from amnlib.metrics import r2

    q2 = r2(pred["growth"], pred["predicted_growth"])
    assert q2 > 0.9  # measured 0.972: 4-source media, none seen in training
    assert f"Q^2 against the measured growth: {q2:.3f}" in capsys.readouterr().err
    assert set(json.loads(mj.read_text())) == set(pred["medium"])
    # without a growth column: predictions only, the same numbers
    bare = write_new_media(fitted.root / "bare.csv", with_growth=False)
    assert main(["predict", "--model-dir", str(fitted.out), "--media", str(bare)]) == 0
    printed = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    np.testing.assert_array_equal(printed["predicted_growth"], pred["predicted_growth"])


def test_predict_refuses_another_network(fitted, tmp_path, capsys):
    import cobra.io

    other = cobra.io.load_model("textbook")
    other.remove_reactions([other.reactions.get_by_id("PFK")])
    cobra.io.save_json_model(other, str(tmp_path / "other.json"))
    media = write_new_media(tmp_path / "new.csv", with_growth=False)
    assert main(["predict", "--model-dir", str(fitted.out), "--media", str(media),
                 "--model", str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err
    assert "trained on network 'e_coli_core'" in err and "load it with the model it was" in err


@pytest.mark.parametrize("edit, message", [
    (lambda df: df.rename(columns={"EX_fru_e": "EX_fru"}), "'EX_fru'"),
    (lambda df: df.drop(columns=["EX_pyr_e"]), "['EX_pyr_e'] of the saved model are missing"),
    (lambda df: df.assign(EX_ac_e=2), "fitted on 0/1 presence"),
    (lambda df: df.assign(EX_etoh_e=1), "not a medium column of the saved model"),
])
def test_predict_bad_media(fitted, tmp_path, capsys, edit, message):
    path = tmp_path / "media.csv"
    edit(pd.read_csv(write_new_media(tmp_path / "new.csv"))).to_csv(path, index=False)
    assert main(["predict", "--model-dir", str(fitted.out), "--media", str(path)]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------ bad input
def _bad_tables(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = pd.read_csv(write_growth_table(tmp / "good.csv", n_media=12, replicates=1))
    cases = {
        "unknown_id": (good.rename(columns={"EX_glc__D_e": "EX_glc_e"}),
                       "'EX_glc_e' (did you mean "),
        "nan": (good.assign(growth=good["growth"].where(good.index != 3)), "row 5"),
        "negative": (good.assign(growth=np.where(good.index == 2, -0.1, good["growth"])),
                     "growth rates are >= 0"),
        "too_few": (good.head(6), "6 distinct media are too few for 5-fold"),
        "no_growth": (good.drop(columns=["growth"]), "no growth column"),
    }
    out = {}
    for name, (df, msg) in cases.items():
        df.to_csv(tmp / f"{name}.csv", index=False)
        out[name] = (tmp / f"{name}.csv", msg)
    dup = tmp / "duplicated.csv"
    text = (tmp / "good.csv").read_text().splitlines()
    dup.write_text("\n".join([text[0] + ",growth"] + [r + ",0.5" for r in text[1:]]) + "\n")
    out["duplicated"] = (dup, "duplicated column(s) ['growth']")
    out["missing"] = (tmp / "absent.csv", "does not exist")
    return out


def test_fit_reservoir_bad_input(tmp_path, capsys):
    for name, (path, message) in _bad_tables(tmp_path).items():
        out = tmp_path / f"model_{name}"
        rc = main(["fit-reservoir", "--model", "textbook", "--growth", str(path), "--out",
                   str(out), *SIZES])
        err = capsys.readouterr().err
        assert rc == 2, name
        assert message in err, (name, err)
        assert not out.exists(), name
    assert not list(tmp_path.glob(".model_*"))  # no temporary folder left either
    bad = tmp_path / "corrupt.xml"
    bad.write_text("<sbml><model id='x'>")
    assert main(["fit-reservoir", "--model", str(bad), "--growth", str(tmp_path / "good.csv"),
                 "--out", str(tmp_path / "m")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_fit_reservoir_refuses_a_non_empty_out(fitted, capsys):
    assert main(["fit-reservoir", "--model", "textbook", "--growth", str(fitted.table),
                 "--out", str(fitted.out), *SIZES]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_interrupted_runs_leave_nothing(fitted, tmp_path, monkeypatch, capsys):
    """Ctrl-C during the fit, or while the directory is written: no model directory, no
    temporary folder; an uninterrupted save of the same model reloads to the same numbers."""
    import amnlib.growth_workflow as gw
    import amnlib.plotting

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gw, "fit_growth", interrupt)
    out = tmp_path / "model"
    assert main(["fit-reservoir", "--model", "textbook", "--growth", str(fitted.table),
                 "--out", str(out), *SIZES]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.undo()

    gm = gw.load_growth_model(fitted.out)
    table = pd.read_csv(fitted.out / "table.csv", index_col=0)
    from amnlib.userdata import read_growth_table

    growth = read_growth_table(fitted.table, gm.network)
    fit = gw.GrowthFit(gm.network, gm.space, growth, gw.ReservoirSettings(),
                       SimpleNamespace(amn=gm.model.amn, q2=gm.report["pretrain"]["q2"]),
                       gm.model, gm.report, gm.predict(growth.media),
                       gm.uptakes(growth.media, index=growth.medium_ids))
    monkeypatch.setattr(amnlib.plotting, "parity_figure", interrupt)
    with pytest.raises(KeyboardInterrupt):
        gw.save_growth_model(fit, out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    gw.save_growth_model(fit, out)
    again = gw.load_growth_model(out)
    media = table[list(TRUE_BOUNDS)].to_numpy()
    np.testing.assert_array_equal(again.predict(media), gm.predict(media))


# ------------------------------------------------------------------------------ pieces
def test_merge_strata():
    from amnlib.validation import merge_strata

    labels = np.array([1] * 6 + [2] * 7 + [3] * 2 + [4] * 1)
    merged = merge_strata(labels, 5)
    assert np.bincount(merged).min() >= 5
    assert merged.tolist() == [0] * 6 + [1] * 10  # 3 and 4 (3 rows) join 2
    assert merge_strata(np.array([1, 1, 2]), 5).tolist() == [0, 0, 0]


def test_generate_with_user_presence(textbook, tmp_path):
    """Experimental mode over a user's compositions: only present compounds are drawn, the
    compositions are part of the cache identity."""
    from amnlib.simulate import draw_media, generate

    base = ["EX_co2_e", "EX_h_e", "EX_h2o_e", "EX_nh4_e", "EX_o2_e", "EX_pi_e"]
    spec = pd.DataFrame({"level": [5, 5] + [1] * 6, "max_value": [10.0, 10.0] + [1000.0] * 6},
                        index=["EX_glc__D_e_i", "EX_succ_e_i", *(b + "_i" for b in base)])
    presence = np.array([[1, 0, *[1] * 6], [0, 1, *[1] * 6]])
    X = draw_media(spec, size=20, experimental=True, presence=presence).to_numpy()
    assert (X[:10, 1] == 0).all() and (X[10:, 0] == 0).all()  # 10 samples of each medium
    assert (X[:10, 0] > 0).all() and (X[10:, 1] > 0).all()
    assert set(np.unique(X[:, :2])) == {0.0, 2.0, 4.0, 6.0, 8.0, 10.0}
    assert (X[:, 2:] == 1000).all()
    kw = dict(size=10, experimental=True, n_jobs=1, progress=False, cache_dir=tmp_path)
    a = generate(textbook, spec, presence=presence, **kw)
    b = generate(textbook, spec, presence=presence[::-1], **kw)
    assert a.metadata["cache_key"] != b.metadata["cache_key"]
    assert (a.X[a.medium_index == 0, 1] == 0).all()
    with pytest.raises(ValueError, match="needs experimental=True"):
        draw_media(spec, size=2, presence=presence)
    with pytest.raises(ValueError, match="presence must be"):
        draw_media(spec, size=2, experimental=True, presence=presence[:, :2])


def test_too_few_media_is_checked_before_any_computation(textbook, tmp_path, monkeypatch):
    import amnlib.growth_workflow
    from amnlib.growth_workflow import ReservoirSettings, fit_growth
    from amnlib.userdata import read_growth_table

    table = read_growth_table(write_growth_table(tmp_path / "g.csv", n_media=9, replicates=1),
                              textbook)
    monkeypatch.setattr(amnlib.growth_workflow, "MediumFBA", None)  # any computation would fail
    with pytest.raises(ValueError, match="9 distinct media are too few for 5-fold"):
        fit_growth(textbook, table, ReservoirSettings(folds=5), log=None)


def test_bound_table_through_the_api(textbook, tmp_path, one_thread, monkeypatch):
    """A table of uptake bounds (not 0/1): FBA with the table's own bounds is the truth here,
    the reservoir learns within each column's range; fit -> save -> load predicts the same
    numbers; bounds above the training range are flagged."""
    import cobra.io

    from amnlib.growth_workflow import (
        ReservoirSettings,
        fit_growth,
        load_growth_model,
        predict_media,
        read_media_table,
        save_growth_model,
    )
    from amnlib.userdata import read_growth_table

    monkeypatch.setenv("AMNLIB_CACHE_DIR", str(tmp_path / "cache"))
    model = cobra.io.load_model("textbook")
    rng = np.random.default_rng(1)
    rows = []
    for j in range(20):
        bounds = {"EX_glc__D_e": float(rng.integers(1, 9)), "EX_succ_e": float(rng.integers(0, 9))}
        with model:
            model.medium = {**{k: v for k, v in model.medium.items() if k != "EX_glc__D_e"},
                            **bounds}
            rows.append({"medium": f"b{j}", **bounds, "growth": model.slim_optimize()})
    pd.DataFrame(rows).to_csv(tmp_path / "bounds.csv", index=False)
    table = read_growth_table(tmp_path / "bounds.csv", textbook)
    settings = ReservoirSettings(pretrain_size=300, pretrain_epochs=30, epochs=150, folds=4,
                                 bfgs_maxiter=3, bfgs_cv_maxiter=3, ann_epochs=50, trees=20)
    fit = fit_growth(textbook, table, settings, log=None)
    assert not fit.space.presence
    np.testing.assert_array_equal(fit.space.scale, table.media.max(axis=0))
    q2 = fit.report["q2"]
    assert q2["fba_default"] > 0.999  # the table's bounds are the truth: exact up to rounding
    assert q2["reservoir"] > 0.85  # measured 0.944 (BFGS 0.982, OLS 1.000, XGBoost 0.635)
    save_growth_model(fit, tmp_path / "model")
    gm = load_growth_model(tmp_path / "model", textbook)
    np.testing.assert_array_equal(gm.predict(table.media),
                                  reservoir_predict(fit.model, fit.space.design(table.media)))
    new = pd.DataFrame({"EX_succ_e": [2.0, 40.0], "EX_glc__D_e": [3.0, 3.0]})
    new.to_csv(tmp_path / "new.csv", index=False)
    frame, summary = predict_media(gm, read_media_table(tmp_path / "new.csv", gm.space,
                                                        gm.network))
    assert summary["off_range"] == 1 and "q2" not in summary
    assert frame["predicted_growth"].iloc[0] == pytest.approx(
        reservoir_predict(fit.model, fit.space.design(np.array([[3.0, 2.0]])))[0])


def test_medium_space_refuses_demands_and_empty_bound_columns(textbook, tmp_path):
    """Checked before any computation: a demand reaction is no medium column; a bound column
    that is 0 everywhere has no range to learn."""
    import cobra.io

    from amnlib.growth_workflow import medium_space
    from amnlib.network import MetabolicNetwork
    from amnlib.userdata import read_growth_table

    model = cobra.io.load_model("textbook")
    model.add_boundary(model.metabolites.get_by_id("akg_c"), type="demand")
    net = MetabolicNetwork(model)
    df = pd.DataFrame({"EX_glc__D_e": [1, 0, 1], "DM_akg_c": [0, 1, 1], "growth": [0.5, 0.1, 0.6]})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"\['DM_akg_c'\] are boundary reactions .* not exchanges"):
        medium_space(net, read_growth_table(tmp_path / "t.csv", net))
    df = pd.DataFrame({"EX_glc__D_e": [5.0, 2.0], "EX_succ_e": [0.0, 0.0], "growth": [0.5, 0.2]})
    df.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"\['EX_succ_e'\] are 0 in every medium"):
        medium_space(textbook, read_growth_table(tmp_path / "b.csv", textbook))
    with pytest.raises(ValueError, match="uptake_max must be a positive"):
        medium_space(textbook, read_growth_table(tmp_path / "b.csv", textbook), uptake_max=0)
