"""Data access: local copies verified by checksum, tables parsed as documented."""

import pytest

from amnlib import data


def test_fetch_local_copy_verified():
    path = data.fetch("EXP110.csv")
    assert path.is_file()
    assert data.sha256sum(path) == data.REGISTRY["EXP110.csv"].sha256


def test_corrupt_local_copy_is_refused(tmp_path, monkeypatch):
    good = data.fetch("e_coli_core.csv").read_bytes()
    (tmp_path / "e_coli_core.csv").write_bytes(good[:-20])  # truncated
    monkeypatch.setenv("AMNLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="corrupt"):
        data.fetch("e_coli_core.csv")


def test_unknown_file_and_missing_dir(monkeypatch, tmp_path):
    with pytest.raises(KeyError, match="unknown data file"):
        data.fetch("nope.csv")
    monkeypatch.setenv("AMNLIB_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent"):
        data.fetch("EXP110.csv")


def test_failed_download_leaves_nothing(monkeypatch, tmp_path):
    """No local copy and an unreachable URL: an error, and no file in the cache."""
    monkeypatch.setenv("AMNLIB_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("AMNLIB_CACHE_DIR", str(tmp_path / "cache"))
    entry = data.REGISTRY["EXP110.csv"]
    monkeypatch.setitem(
        data.REGISTRY,
        "EXP110.csv",
        data.DataFile(entry.name, "http://127.0.0.1:9/EXP110.csv", entry.sha256, "", ""),
    )
    with pytest.raises(data.DataUnavailableError, match="127.0.0.1:9"):
        data.fetch("EXP110.csv")
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.name == "EXP110.csv" for p in cache.rglob("*"))


def _offline(monkeypatch, tmp_path):
    """No AMNLIB_DATA_DIR, an empty cache, and a downloader that finds no network."""
    import pooch

    monkeypatch.delenv("AMNLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("AMNLIB_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(url, *args, **kwargs):
        raise ConnectionError(f"Failed to resolve 'raw.githubusercontent.com' for {url}")

    monkeypatch.setattr(pooch, "retrieve", no_network)


def test_offline_without_local_copy_is_one_clear_error(monkeypatch, tmp_path):
    """No network, no local copy: one error naming the file, its URL and AMNLIB_DATA_DIR (not
    the downloader's traceback chain)."""
    _offline(monkeypatch, tmp_path)
    with pytest.raises(data.DataUnavailableError) as info:
        data.load_growth_110()
    message = str(info.value)
    assert "'EXP110.csv'" in message and data.REGISTRY["EXP110.csv"].url in message
    assert "AMNLIB_DATA_DIR is not set" in message
    assert "set AMNLIB_DATA_DIR to a folder holding offline copies" in message
    assert "ConnectionError: Failed to resolve" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # a data folder without the file: the message says that folder lacks it
    monkeypatch.setenv("AMNLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataUnavailableError, match="holds no 'EXP110.csv'"):
        data.fetch("EXP110.csv")


def test_cli_offline_error_is_one_line(monkeypatch, tmp_path, capsys):
    from amnlib.cli import main

    _offline(monkeypatch, tmp_path)
    out = tmp_path / "tb.npz"
    assert main(["generate", "--spec", "e_coli_core", "--size", "4", "--out", str(out),
                 "--no-cache", "--quiet", "--n-jobs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("amnlib generate: error: data file 'e_coli_core.csv'")
    assert "AMNLIB_DATA_DIR" in err and not out.exists()


def test_medium_spec_e_coli_core():
    spec = data.load_medium_spec("e_coli_core")
    assert len(spec) == 20
    assert list(spec.columns) == ["level", "max_value", "ratio_drawing"]
    assert (spec["level"] == 1).sum() == 7 and (spec["level"] == 5).sum() == 13
    assert spec.loc["EX_glc__D_e_i", "max_value"] == 10
    assert spec["ratio_drawing"].iloc[0] == 0.5


def test_medium_spec_iml1515():
    spec = data.load_medium_spec("iML1515")
    assert len(spec) == 38
    assert (spec["level"] == 100).sum() == 10
    assert spec["max_value"].max() == pytest.approx(2.2)


def test_growth_tables():
    exp = data.load_growth_110()
    assert len(exp) == 110
    reps = exp.filter(like="GR_").drop(columns=["GR_AVG", "GR_STD"])
    assert reps.notna().sum(axis=1).between(2, 8).all()
    assert (reps.mean(axis=1) - exp["GR_AVG"]).abs().max() < 1e-9
    media = data.load_media_110()
    assert media.shape == (110, 39)
    assert (media["GR_AVG"] - exp["GR_AVG"].to_numpy()).abs().max() < 1e-8
    assert set(exp.columns[:10]) <= set(media.columns)


def test_essential_genes():
    genes = data.load_essential_genes()
    assert len(genes) == 39
    assert genes["bnumber"].str.match(r"^b\d{4}$").all()


def test_model_loading_errors():
    with pytest.raises(ValueError, match="iJO1366"):
        data._load_model_cached.__wrapped__("no_such_model_xyz_offline.sbml.gz.nope")
