"""``lmmkit signature PLAN.toml``: one library call plus input and output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.cli.main import main


def _data(tmp_path):
    rng = np.random.default_rng(4)
    n_sites, per, p = 5, 24, 15
    n = n_sites * per
    X = rng.standard_normal((n, p))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(p)])
    df["age"] = rng.normal(60, 8, n)
    df["site"] = np.repeat([f"h{i}" for i in range(n_sites)], per)
    df["y"] = (X[:, 0] - X[:, 1] + rng.standard_normal(n) > 0).astype(int)
    path = tmp_path / "features.csv"
    df.to_csv(path, index=False)
    return df


def test_signature_plan_runs_and_matches_the_library(tmp_path, capsys):
    df = _data(tmp_path)
    feats = [f"f{j}" for j in range(15)]
    (tmp_path / "plan.toml").write_text(
        '[data]\npath = "features.csv"\nsite = "site"\noutcome = "y"\n'
        f"features = {json.dumps(feats)}\n"
        '[signature]\nharmonize = "none"\nfilter = "none"\n'
        '[output]\njson = "out/sig.json"\npredictions = "out/pred.csv"\n'
    )
    (tmp_path / "out").mkdir()
    assert main(["signature", str(tmp_path / "plan.toml")]) == 0
    assert "Held-out: auc" in capsys.readouterr().out
    got = json.loads((tmp_path / "out" / "sig.json").read_text())
    ref = lmmkit.signature(df, outcome="y", site="site", features=feats, harmonize=None,
                           filter=None)  # fmt: skip
    assert got["metrics"]["auc"] == pytest.approx(ref.metrics["auc"], abs=1e-12)
    pred = pd.read_csv(tmp_path / "out" / "pred.csv", index_col=0)
    np.testing.assert_allclose(pred["pred"], ref.predictions["pred"], atol=1e-12)


def test_fusion_plan(tmp_path, capsys):
    _data(tmp_path)
    feats = [f"f{j}" for j in range(15)]
    (tmp_path / "plan.toml").write_text(
        '[data]\npath = "features.csv"\nsite = "site"\noutcome = "y"\n'
        f'[fusion]\nmodalities = {{ radiomic = {json.dumps(feats)}, clinical = ["age"] }}\n'
        'harmonize = { radiomic = "combat", clinical = "none" }\n'
        '[output]\njson = "fusion.json"\n'
    )
    assert main(["signature", str(tmp_path / "plan.toml")]) == 0
    got = json.loads((tmp_path / "fusion.json").read_text())
    assert set(got["table"]) == {"radiomic", "clinical", "early", "late"}


def test_bad_plans_are_clear_errors(tmp_path, capsys):
    _data(tmp_path)
    plan = tmp_path / "plan.toml"
    plan.write_text('[data]\npath = "features.csv"\nsite = "site"\n')
    assert main(["signature", str(plan)]) == 2
    assert "[data] lacks 'outcome'" in capsys.readouterr().err
    plan.write_text(
        '[data]\npath = "features.csv"\nsite = "site"\noutcome = "y"\n[signature]\nlasso = true\n'
    )
    assert main(["signature", str(plan)]) == 2
    assert "unknown option(s) ['lasso']" in capsys.readouterr().err
    plan.write_text("[data\n")
    assert main(["signature", str(plan)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    base = '[data]\npath = "features.csv"\nsite = "site"\noutcome = "y"\n'
    for text, message in [
        (base + "[report]\nhtml = 1\n", "unknown section(s) ['report']"),
        (base.replace('"y"', '["t", "s", "u"]'), "outcome must be a column name or [time, status]"),
        (base + "feature = ['f1']\n", "[data] has unknown key(s) ['feature']"),
        (base + "[output]\ncsv = 'x.csv'\n", "[output] has unknown key(s) ['csv']"),
        (base + "features = ['f1']\n[fusion]\nmodalities = { a = ['f1'] }\n",
         "features is not used with [fusion]"),
        (base.replace("features.csv", "absent.csv"), "absent.csv"),
        (base + "[signature]\nalpha = 2.0\n", "alpha"),
    ]:  # fmt: skip
        plan.write_text(text)
        assert main(["signature", str(plan)]) == 2
        assert message in capsys.readouterr().err
