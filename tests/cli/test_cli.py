"""The command line: thin wrappers with clear errors and atomic JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import lmmkit
from lmmkit.cli.main import main
from lmmkit.datasets import load_dataset


def test_fit_prints_summary_and_writes_json(tmp_path, capsys) -> None:
    data = tmp_path / "sleep.csv"
    load_dataset("sleepstudy").to_csv(data, index=False)
    out = tmp_path / "fit.json"
    code = main(
        ["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(data), "--json", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in printed
    fit = json.loads(out.read_text())
    direct = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    assert np.isclose(fit["objective"], direct.objective, rtol=1e-10)
    assert set(fit) >= {
        "fixef",
        "fixef_se",
        "vcov",
        "sigma",
        "theta",
        "varcorr",
        "ranef",
        "loglik",
        "aic",
        "bic",
        "nobs",
        "ngroups",
        "is_singular",
        "optimization",
    }
    assert not list(tmp_path.glob(".fit.json.*.tmp"))  # no temporary file left behind


def test_ml_flag(tmp_path, capsys) -> None:
    data = tmp_path / "sleep.csv"
    load_dataset("sleepstudy").to_csv(data, index=False)
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(data), "--ml"]) == 0
    assert "maximum likelihood" in capsys.readouterr().out


def test_errors_are_one_clear_line(tmp_path, capsys) -> None:
    data = tmp_path / "sleep.csv"
    load_dataset("sleepstudy").to_csv(data, index=False)
    assert main(["fit", "Reaction ~ dayz + (1 | Subject)", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "error: Column 'dayz' is not in the data" in err and "Traceback" not in err
    assert main(["fit", "y ~ x + (1|g)", "--data", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_runs_demo(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lmmkit.cli.main", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'lmmkit.lmm("mpg ~ hp + (1 | am)", mtcars)' in proc.stdout
    assert (tmp_path / "sleepstudy_ranef.png").stat().st_size > 10_000


def test_varpart_and_harmonize_commands(tmp_path, capsys) -> None:
    import pandas as pd

    from tests.conftest import shared_path

    expr = pd.read_csv(shared_path("data", "omics", "bladder_exprs.csv.gz"), nrows=12)
    expr.to_csv(tmp_path / "expr.csv", index=False)
    pheno = shared_path("data", "omics", "bladder_pheno.csv")
    out = tmp_path / "vp.tsv"
    code = main(
        [
            "varpart",
            "~ (1 | batch) + (1 | cancer)",
            "--expr",
            str(tmp_path / "expr.csv"),
            "--samples",
            str(pheno),
            "--out",
            str(out),
            "--ratio",
            "batch/cancer",
        ]
    )
    assert code == 0
    table = pd.read_csv(out, sep="\t", index_col=0)
    assert len(table) == 12 and {"batch", "cancer", "Residuals", "batch/cancer"} <= set(
        table.columns
    )
    assert (
        main(
            [
                "harmonize",
                "--expr",
                str(tmp_path / "expr.csv"),
                "--samples",
                str(pheno),
                "--batch",
                "batch",
                "--out",
                str(tmp_path / "h.csv"),
            ]
        )
        == 0
    )
    assert pd.read_csv(tmp_path / "h.csv", index_col=0).shape == (12, 57)
    # `lmmkit combat` is the same command under ComBat's name
    args = ["--expr", str(tmp_path / "expr.csv"), "--samples", str(pheno), "--batch", "batch"]
    assert main(["combat", *args, "--out", str(tmp_path / "c.csv")]) == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "c.csv", index_col=0), pd.read_csv(tmp_path / "h.csv", index_col=0)
    )
    assert (
        main(
            [
                "varpart",
                "~ (1 | plate)",
                "--expr",
                str(tmp_path / "expr.csv"),
                "--samples",
                str(pheno),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Column 'plate' is not in the data" in err and "feature_value ~ (1 | plate)" in err
