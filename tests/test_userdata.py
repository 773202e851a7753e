"""User files: growth tables, time series and fitness tables written as a user would, read and
validated (every bad input gives an error naming the problem), and corrupt model files."""

from __future__ import annotations

import numpy as np
import pytest

from amnlib.userdata import read_fitness_table, read_growth_table, read_time_series


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


GROWTH = """medium,EX_glc__D_e,EX_fru_e,EX_o2_e,growth
glc,1,0,1,0.85
glc,1,0,1,0.80
fru,0,1,1,0.70
glc_anaerobic,1,0,0,0.21
"""


def test_growth_table_replicates_and_medium(tmp_path, textbook):
    table = read_growth_table(write(tmp_path, "g.csv", GROWTH), textbook)
    assert table.medium_ids == ["glc", "fru", "glc_anaerobic"]
    assert table.exchange_ids == ["EX_glc__D_e", "EX_fru_e", "EX_o2_e"]
    np.testing.assert_allclose(table.growth, [0.825, 0.70, 0.21])
    assert table.replicates.shape == (3, 2) and np.isnan(table.replicates[1, 1])
    assert table.is_presence
    assert table.medium(0, uptake=10.0) == {"EX_glc__D_e": 10.0, "EX_o2_e": 10.0}
    # the medium is COBRApy's vocabulary: COBRApy grows on it
    model = textbook.model.copy()
    model.medium = {**table.medium(2, uptake=10.0), "EX_nh4_e": 1000, "EX_pi_e": 1000,
                    "EX_h2o_e": 1000, "EX_h_e": 1000, "EX_co2_e": 1000}
    assert model.slim_optimize() == pytest.approx(0.2117, abs=1e-3)


def test_growth_table_replicate_columns_and_split_ids(tmp_path, textbook):
    text = "EX_glc__D_e_i,EX_o2_e_i,rep1,rep2\n10,20,0.8,0.9\n5,20,0.4,0.5\n"
    table = read_growth_table(write(tmp_path, "r.csv", text), textbook,
                              replicate_columns=["rep1", "rep2"])
    np.testing.assert_allclose(table.growth, [0.85, 0.45])
    assert not table.is_presence and table.medium(1) == {"EX_glc__D_e": 5.0, "EX_o2_e": 20.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EX_glc_e,growth\n1,0.5\n", r"'EX_glc_e' \(did you mean EX_glc__D_e"),
        ("EX_glc__D_e,EX_glc__D_e,growth\n1,1,0.5\n", "duplicated column"),
        ("EX_glc__D_e,EX_glc__D_e_i,growth\n1,1,0.5\n", "appear in two columns"),
        ("EX_glc__D_e,growth\n1,\n", r"column 'growth', row 2"),
        ("EX_glc__D_e,growth\n1,-0.1\n", "growth rates are >= 0"),
        ("EX_glc__D_e,growth\n-1,0.1\n", "must be >= 0"),
        ("EX_glc__D_e,rate\n1,0.1\n", "no growth column"),
        ("medium,EX_glc__D_e,growth\na,1,0.5\na,0,0.5\n", "different compositions"),
        ("growth\n0.5\n", "no medium columns"),
        ("", "empty"),
    ],
)
def test_growth_table_errors(tmp_path, textbook, text, message):
    with pytest.raises(ValueError, match=message):
        read_growth_table(write(tmp_path, "bad.csv", text), textbook)


def test_growth_table_too_few_media_and_missing_file(tmp_path, textbook):
    with pytest.raises(ValueError, match="3 distinct media, at least 5"):
        read_growth_table(write(tmp_path, "g.csv", GROWTH), textbook, min_media=5)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_growth_table(tmp_path / "nope.csv", textbook)


def test_time_series_long_and_wide_agree(tmp_path):
    rng = np.random.default_rng(3)
    t = np.array([0.0, 0.5, 1.5, 3.0])
    lines_long, lines_wide = ["experiment,time,species,value"], ["experiment,time,A,B"]
    values = rng.uniform(0.1, 1.0, size=(2, 4, 2))
    for e in range(2):
        for k, tk in enumerate(t):
            lines_wide.append(f"run{e},{tk},{values[e, k, 0]},{values[e, k, 1]}")
        for s, name in enumerate("AB"):  # long files are often ordered by species, then time
            for k, tk in enumerate(t):
                lines_long.append(f"run{e},{tk},{name},{values[e, k, s]}")
    long = read_time_series(write(tmp_path, "long.csv", "\n".join(lines_long) + "\n"))
    wide = read_time_series(write(tmp_path, "wide.csv", "\n".join(lines_wide) + "\n"))
    for data in (long, wide):
        assert data.species == ["A", "B"]
        np.testing.assert_allclose(data.t, t)
        np.testing.assert_allclose(data.y, values)
        np.testing.assert_allclose(data.x0, values[:, 0])
    reordered = read_time_series(write(tmp_path, "wide.csv", "\n".join(lines_wide) + "\n"),
                                 species=["B", "A"])
    np.testing.assert_allclose(reordered.y, values[..., ::-1])


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("experiment,time,A\n1,0,1\n1,1,0.5\n2,0,1\n", {}, "other times"),
        ("experiment,time,A\n1,0,1\n1,2,0.5\n1,1,0.2\n", {}, "do not increase"),
        ("experiment,time,A\n1,0,1\n1,0,0.5\n", {}, "repeats experiment"),
        ("experiment,time,A\n1,0,1\n1,1,nan\n", {}, r"column 'A', row 3"),
        ("experiment,time,A\n1,0,1\n1,1,-0.5\n", {}, "negative concentration"),
        ("experiment,time,A\n1,0,1\n", {}, "at least 2 time points"),
        ("experiment,time,A\n1,0,1\n1,1,0.5\n", {"species": ["A", "C"]}, r"\['C'\] are not in"),
        ("experiment,time,species,value\n1,0,A,1\n1,1,A,0.5\n1,0,B,1\n", {},
         "'B' has no value"),
        ("experiment,t,A\n1,0,1\n", {}, "no time column"),
    ],
)
def test_time_series_errors(tmp_path, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_time_series(write(tmp_path, "bad.csv", text), **kwargs)


def test_fitness_table(tmp_path, textbook):
    text = "gene1,gene2,fitness\nb1241,,0.97\nb0351,b1241,0.95\nb2276,,0.0\n"
    table = read_fitness_table(write(tmp_path, "f.csv", text), textbook)
    assert table["kind"].to_list() == ["single", "double", "single"]
    assert table["gene2"].iloc[1] == "b1241" and table["gene2"].isna().iloc[0]
    np.testing.assert_allclose(table["fitness"], [0.97, 0.95, 0.0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gene1,gene2,fitness\nb124,,0.9\n", r"'b124' is not a gene .*did you mean"),
        ("gene1,gene2,fitness\nb1241,b1241,0.9\n", "twice"),
        ("gene1,gene2,fitness\nb1241,b0351,0.9\nb0351,b1241,0.8\n", "same deletion"),
        ("gene1,gene2,fitness\nb1241,,-0.1\n", "must be >= 0"),
        ("gene1,gene2,fitness\nb1241,,\n", "not a finite number"),
        ("gene1,gene2,fitness\n,,0.5\n", "names no gene"),
        ("gene,fitness\nb1241,0.5\n", "no gene1 column"),
    ],
)
def test_fitness_table_errors(tmp_path, textbook, text, message):
    with pytest.raises(ValueError, match=message):
        read_fitness_table(write(tmp_path, "bad.csv", text), textbook)


def test_corrupt_model_file_is_one_line_error(tmp_path, capsys):
    from amnlib.cli import main

    for name, text in (("bad.xml", "<sbml>broken"), ("bad.json", '{"id": ')):
        path = write(tmp_path, name, text)
        code = main(["generate", "--model", str(path), "--size", "2", "--out",
                     str(tmp_path / "x.npz"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        assert "could not be read as" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x.npz").exists()
