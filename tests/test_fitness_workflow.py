"""`amnlib fit-pinn` on a fitness table written as a user would (COBRApy deletions to CSV):
held-out accuracy, save/load round trip, predictions of unmeasured doubles, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amnlib.cli import main


@pytest.fixture(scope="module")
def fitness_csv(tmp_path_factory):
    """Singles and doubles of 12 textbook genes from COBRApy, relative to the wild type, four
    doubles left out (the user never measured them), written with pandas."""
    import cobra
    from cobra.flux_analysis import double_gene_deletion, single_gene_deletion

    model = cobra.io.load_model("textbook")
    genes = sorted(np.random.default_rng(7).choice(sorted(g.id for g in model.genes), 12,
                                                   replace=False))
    wt = model.slim_optimize()
    rows = [(sorted(ids)[0], "", g) for ids, g in
            zip(single_gene_deletion(model, genes, processes=1)["ids"],
                single_gene_deletion(model, genes, processes=1)["growth"], strict=True)]
    doubles = double_gene_deletion(model, genes, processes=1)
    for ids, g in zip(doubles["ids"], doubles["growth"], strict=True):
        if len(ids) == 2:
            rows.append((*sorted(ids), g))
    df = pd.DataFrame(rows, columns=["gene1", "gene2", "fitness"])
    df["fitness"] = (df["fitness"].fillna(0.0).clip(lower=0.0) / wt).round(5)
    # COBRApy's row order follows set iteration (string hashing differs between processes)
    df = df.sort_values(["gene1", "gene2"]).reset_index(drop=True)
    left_out = df[df["gene2"] != ""].iloc[[3, 10, 20, 40]]
    path = tmp_path_factory.mktemp("user") / "fitness.csv"
    df.drop(left_out.index).to_csv(path, index=False)
    return path, left_out


def test_fit_pinn_cli_round_trip(fitness_csv, tmp_path, capsys):
    from amnlib.fitness import load_fitness_model, predict_deletions
    from amnlib.network import MetabolicNetwork

    path, left_out = fitness_csv
    out = tmp_path / "model"
    code = main(["fit-pinn", "--model", "textbook", "--fitness", str(path), "--out", str(out),
                 "--epochs", "150", "--seed", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "held-out doubles: Pearson r" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["validation"]["n_held_out"] == 12
    assert report["validation"]["pearson_r"] > 0.9
    assert report["validation"]["rmse"] < 0.3  # 0.218 measured: one lethal pair of 12 misses
    assert report["validation"]["sv2"] < 1e-6
    assert (out / "parity.png").stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "fitness-pinn" and "torch" in manifest["versions"]
    # the four unmeasured doubles are predicted, and close to COBRApy's
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 4
    merged = preds.merge(left_out, on=["gene1", "gene2"])
    assert len(merged) == 4
    assert merged["predicted"].between(-0.1, 1.1).all()
    # four pairs from a 12-gene table: single pairs can be off (0.40 seen), the mean is not
    assert np.abs(merged["predicted"] - merged["fitness"]).mean() < 0.3
    # a reloaded model predicts the same numbers
    net = MetabolicNetwork.load("textbook")
    trained = load_fitness_model(out, net)
    again = predict_deletions(trained, net, list(zip(preds["gene1"], preds["gene2"],
                                                     strict=True)))
    np.testing.assert_allclose(again["predicted"], preds["predicted"], atol=1e-6)


def test_load_on_another_network_fails(fitness_csv, tmp_path):
    import cobra

    from amnlib.fitness import fit_fitness, load_fitness_model, save_fitness_model, sized_config
    from amnlib.network import MetabolicNetwork
    from amnlib.userdata import read_fitness_table

    net = MetabolicNetwork.load("textbook")
    table = read_fitness_table(fitness_csv[0], net)
    fit = fit_fitness(net, table, sized_config(len(table), epochs=2), validation_fraction=0,
                      log=None)
    out = save_fitness_model(fit, net, tmp_path / "m")
    model = cobra.io.load_model("textbook")
    model.remove_reactions([model.reactions.get_by_id("FRD7")])
    with pytest.raises(ValueError, match="trained on network 'e_coli_core'"):
        load_fitness_model(out, MetabolicNetwork(model))
    with pytest.raises(ValueError, match="exists and is not empty"):
        save_fitness_model(fit, net, out)


def test_fit_pinn_refuses_bad_input_and_leaves_nothing(fitness_csv, tmp_path, capsys,
                                                        monkeypatch):
    bad = tmp_path / "bad.csv"
    bad.write_text("gene1,gene2,fitness\nb1241,,0.9\nb9999,,0.5\n")
    out = tmp_path / "model"
    assert main(["fit-pinn", "--model", "textbook", "--fitness", str(bad), "--out",
                 str(out)]) == 2
    assert "row 3: 'b9999' is not a gene" in capsys.readouterr().err
    assert not out.exists()
    # an interrupted save leaves neither the directory nor its temporary folder
    import torch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    assert main(["fit-pinn", "--model", "textbook", "--fitness", str(fitness_csv[0]), "--out",
                 str(out), "--epochs", "1", "--quiet"]) == 130
    assert capsys.readouterr().err == "amnlib fit-pinn: interrupted; no model directory written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
