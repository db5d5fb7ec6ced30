"""``lmmkit select``: step, ranova and compare from the command line, checked against the
lmerTest/lme4 references of tests/inference/test_selection.py (same tolerances: LRT 1e-6
relative, the same final model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmmkit.cli.main import main
from lmmkit.datasets import load_dataset

REFDIR = Path(__file__).resolve().parents[1] / "reference" / "selection"
REF = json.loads((REFDIR / "selection_reference.json").read_text())


@pytest.fixture(scope="module")
def sleep_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("select") / "sleepstudy.csv"
    load_dataset("sleepstudy").to_csv(path, index=False)
    return str(path)


def test_step_writes_lmertest_tables_and_final_model(tmp_path, capsys):
    out = tmp_path / "step.json"
    ref = REF["many"]
    code = main(["select", ref["formula"], "--data", str(REFDIR / "many.csv"), "--json", str(out)])
    assert code == 0
    assert "Model found:" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert got["method"] == "step" and got["completed"] is True
    assert got["formula"] == "y ~ cond + x + (1 | subj)"
    want = ref["step_Satterthwaite"]["random"]
    assert [r["term"] for r in got["random"]] == want["rows"]
    lrt = [r["LRT"] for r in got["random"]][1:]
    np.testing.assert_allclose(lrt, want["LRT"][1:], rtol=1e-6)


def test_ranova_and_refusals(sleep_csv, tmp_path, capsys):
    out = tmp_path / "ranova.json"
    ref = REF["sleepstudy"]
    argv = ["select", ref["formula"], "--data", sleep_csv, "--method", "ranova"]
    assert main([*argv, "--json", str(out), "--quiet"]) == 0
    row = json.loads(out.read_text())["table"]["Days in (Days | Subject)"]
    assert row["LRT"] == pytest.approx(ref["ranova"]["LRT"][1], rel=1e-6)
    capsys.readouterr()
    # the output exists: refused without --overwrite
    assert main([*argv, "--json", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # two formulas for ranova, one for compare
    assert main([*argv[:2], ref["formula"], *argv[2:]]) == 2
    assert "takes one formula" in capsys.readouterr().err
    assert main(["select", ref["formula"], "--data", sleep_csv, "--method", "compare"]) == 2
    assert "two or more formulas" in capsys.readouterr().err


def test_compare_matches_lme4_anova(sleep_csv, tmp_path):
    ref = REF["chains"]["sleepstudy_fixed"]
    out = tmp_path / "cmp.json"
    argv = ["select", *ref["formulas"], "--data", sleep_csv, "--method", "compare"]
    assert main([*argv, "--names", "null", "days", "--no-caic", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["refitted_by_ml"] == ["null", "days"]
    tab = got["table"]
    np.testing.assert_allclose(
        [tab["null"]["logLik"], tab["days"]["logLik"]], ref["refit_ml"]["logLik"], rtol=1e-8
    )
    assert tab["days"]["Chisq"] == pytest.approx(ref["refit_ml"]["Chisq"][1], rel=1e-6)
