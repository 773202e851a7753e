"""Gene-deletion fitness data: GPR knockouts, COBRApy deletions, cache, splits, essentials."""

import numpy as np
import pytest

from amnlib import deletions as D


def _fba_fitness(net, genes):
    """Reference: knock the genes out by hand and solve FBA."""
    wt = D.wild_type_growth(net)
    with net.model as model:
        for g in genes:
            model.genes.get_by_id(g).knock_out()
        model.objective = net.biomass_reaction
        sol = model.optimize()
        growth = sol.objective_value if sol.status == "optimal" else 0.0
    return max(growth, 0.0) / wt


def test_gpr_complexes_and_isozymes(textbook):
    # AKGDH = b0726 and b0116 and b0727: one subunit is enough to lose it
    assert "AKGDH" in D.knocked_out_reactions(textbook, ["b0726"])
    # PFK = b3916 or b1723: isozymes, only the double deletion removes it
    assert "PFK" not in D.knocked_out_reactions(textbook, ["b3916"])
    assert "PFK" not in D.knocked_out_reactions(textbook, ["b1723"])
    assert "PFK" in D.knocked_out_reactions(textbook, ["b3916", "b1723"])
    # ACONTa/b share b0118 or b1276
    assert D.knocked_out_reactions(textbook, ["b0118", "b1276"]) == ["ACONTa", "ACONTb"]
    with pytest.raises(ValueError, match="b9999"):
        D.knocked_out_reactions(textbook, ["b9999"])


def test_knockout_mask_masks_both_split_columns(textbook):
    mask = D.knockout_mask(textbook, [(), ("b0118", "b1276"), ("b3916", None)])
    assert mask.shape == (3, textbook.n)
    assert mask[0].sum() == 0 and mask[2].sum() == 0
    on = {textbook.reaction_ids[j] for j in np.flatnonzero(mask[1])}
    assert on == {"ACONTa_for", "ACONTa_rev", "ACONTb_for", "ACONTb_rev"}
    ub = D.knockout_bounds(textbook, mask)
    j = textbook.index("ACONTb_for")
    assert ub[1, j] == 0 and ub[0, j] == 1000


def test_single_deletions_match_hand_knockouts(textbook, tmp_path):
    table = D.single_deletions(textbook, cache=tmp_path)
    assert len(table) == 137 and (table["kind"] == "single").all()
    lethal = set(table.loc[table["fitness"] < D.LETHAL_FITNESS, "gene1"])
    assert len(lethal) == 7 and "b2779" in lethal  # enolase (ENO) is essential on glucose
    row = table.set_index("gene1").loc
    for g in ["b2779", "b0726", "b4025", "b3916"]:
        assert row[g, "fitness"] == pytest.approx(_fba_fitness(textbook, [g]), abs=1e-6)
    assert row["b4025", "fitness"] == pytest.approx(0.9877, abs=1e-3)  # pgi: via the PPP
    # cached copy: identical table read back, no temporary file left behind
    files = list(tmp_path.glob("*.csv"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    again = D.single_deletions(textbook, cache=tmp_path)
    assert again.equals(table)


def test_double_deletions_and_epistasis(textbook, tmp_path):
    genes = ["b3916", "b1723", "b4025", "b0726", "b2779", "b1852"]
    table = D.deletion_table(textbook, genes, cache=tmp_path)
    doubles = table[table["kind"] == "double"]
    assert len(doubles) == 15 and (doubles["gene1"] < doubles["gene2"]).all()
    pairs = doubles.set_index(["gene1", "gene2"])["fitness"]
    for a, b in [("b1723", "b3916"), ("b1852", "b4025"), ("b0726", "b4025")]:
        assert pairs[a, b] == pytest.approx(_fba_fitness(textbook, [a, b]), abs=1e-6)
    # pgi + zwf: both ways out of glucose-6-phosphate are gone -> far below the product
    eps = D.epistasis(table).set_index(["gene1", "gene2"])["epsilon"]
    assert eps["b1852", "b4025"] < -0.5
    # anything with the essential enolase is lethal, so epsilon = 0 - 0 * f_b = 0
    assert eps["b2779", "b3916"] == pytest.approx(0.0, abs=1e-9)


def test_noise_split_and_indicator(textbook, tmp_path):
    genes = D.gene_ids(textbook)[:12]
    t1 = D.deletion_table(textbook, genes, noise=0.05, seed=3, cache=tmp_path)
    t2 = D.deletion_table(textbook, genes, noise=0.05, seed=3, cache=tmp_path)
    assert np.array_equal(t1["fitness"], t2["fitness"]) and (t1["fitness"] >= 0).all()
    resid = t1["fitness"] - t1["fitness_true"]
    assert 0.03 < resid[t1["fitness_true"] > 0.2].std() < 0.07
    train, test = D.split_train_test(t1, 0.5, seed=0)
    assert len(test) == 33 and len(train) == 12 + 33
    assert not set(train) & set(test)
    assert (t1.loc[test, "kind"] == "double").all()
    X = D.gene_indicator(t1, genes)
    assert X.shape == (len(t1), 12) and (X.sum(1) == np.where(t1["kind"] == "single", 1, 2)).all()
    with pytest.raises(ValueError, match="sigma"):
        D.add_noise(np.ones(3), -1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="test_fraction"):
        D.split_train_test(t1, 1.5)


def test_essential_check_against_real_list(ijo1366, tmp_path):
    labels = D.essential_labels(D.gene_ids(ijo1366))
    assert labels.sum() == 16  # 16 of Gerdes et al.'s 39 essential genes are in iJO1366
    listed = [g for g, y in zip(D.gene_ids(ijo1366), labels, strict=True) if y]
    others = [g for g, y in zip(D.gene_ids(ijo1366), labels, strict=True) if not y][::40]
    genes = listed + others
    table = D.single_deletions(ijo1366, genes, cache=tmp_path)
    fitness = table.set_index("gene1").loc[genes, "fitness"].to_numpy()
    res = D.essential_check(genes, fitness)
    assert res["n_essential"] == 16 and res["n_genes"] == len(genes)
    assert res["auc"] > 0.7  # FBA calls most listed genes lethal (ties at f = 0 count half)
    assert res["recall"] == pytest.approx(11 / 16)
    with pytest.raises(ValueError, match="both classes"):
        D.essential_check(D.gene_ids(ijo1366)[:1], np.zeros(1))
