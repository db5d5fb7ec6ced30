"""Pre-specified analysis plans: canonical hashing, locking, verification, running."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.validation.analysis_plan import (
    ALLOWED_KEYS,
    PlanError,
    load_plan,
    lock_plan,
    plan_hash,
    run_plan,
)

PLAN_TOML = """\
# pre-registered 2026-11-01
title = "Treatment and outcome"
outcome = "y"
formula = "y ~ treatment + age + (1 | site)"
primary_endpoint = "treatment"
primary_metric = "rmse"
secondary_metrics = ["r2"]
alpha = 0.05
site = "site"
cv = "loso"

[schema]
y = "numeric"
treatment = "binary"
age = "numeric"
site = "string"
"""


def data(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(6):
        n = 40
        t = rng.integers(0, 2, n)
        age = rng.normal(60, 8, n)
        y = 1 + 0.6 * t + 0.02 * age + rng.normal(0, 0.7) + rng.normal(0, 1, n)
        parts.append(pd.DataFrame({"site": f"s{k}", "treatment": t, "age": age, "y": y}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def plan_path(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text(PLAN_TOML)
    return p


def test_lock_and_load(plan_path):
    h = lock_plan(plan_path)
    assert len(h) == 64
    lock = json.loads((plan_path.parent / "plan.toml.lock").read_text())
    assert lock["sha256"] == h and lock["algorithm"] == "sha256"
    plan = load_plan(plan_path)
    assert plan.sha256 == h and plan.locked and plan.alpha == 0.05
    assert lock_plan(plan_path) == h  # unchanged: no-op
    # formatting and comments do not change the canonical hash; the same plan as JSON agrees
    plan_path.write_text("# another comment\n" + PLAN_TOML.replace(" = ", "="))
    assert load_plan(plan_path).sha256 == h
    jp = plan_path.parent / "plan.json"
    jp.write_text(json.dumps(plan.content, indent=4))
    assert lock_plan(jp) == h


def test_changed_plan_names_expected_and_actual_hash(plan_path):
    h = lock_plan(plan_path)
    plan_path.write_text(PLAN_TOML.replace("alpha = 0.05", "alpha = 0.1"))
    with pytest.raises(PlanError) as exc:
        load_plan(plan_path)
    msg = str(exc.value)
    new = plan_hash(tomllib.loads(plan_path.read_text()))
    assert f"expected sha256 {h}" in msg and f"actual {new}" in msg
    with pytest.raises(PlanError, match="already locked"):
        lock_plan(plan_path)
    assert lock_plan(plan_path, force=True) == new


def test_unknown_key_names_key_and_allowed(plan_path):
    plan_path.write_text(PLAN_TOML.replace('cv = "loso"', 'cv = "loso"\nalpah = 0.01'))
    with pytest.raises(PlanError) as exc:
        lock_plan(plan_path)
    assert "['alpah']" in str(exc.value)
    assert all(k in str(exc.value) for k in ALLOWED_KEYS)


def test_missing_lock_and_bad_values(plan_path, tmp_path):
    with pytest.raises(PlanError, match="is not locked"):
        load_plan(plan_path)
    assert not load_plan(plan_path, require_lock=False).locked
    bad = tmp_path / "bad.toml"
    bad.write_text(PLAN_TOML.replace("alpha = 0.05", "alpha = 5"))
    with pytest.raises(PlanError, match="alpha must be"):
        lock_plan(bad)
    bad.write_text(PLAN_TOML.replace('"rmse"', '"accuracy"'))
    with pytest.raises(PlanError, match="metric 'accuracy'"):
        lock_plan(bad)
    bad.write_text(PLAN_TOML.replace('age = "numeric"', 'age = "float"'))
    with pytest.raises(PlanError, match="schema type of column 'age'"):
        lock_plan(bad)


def test_run_plan(plan_path):
    lock_plan(plan_path)
    d = data()
    res = run_plan(plan_path, d)
    pr = res.primary
    assert pr["endpoint"] == "treatment" and pr["significant"]
    assert pr["ci_low"] < 0.6 < pr["ci_high"] and pr["df"] > 100
    assert pr["metric"] == "rmse" and pr["metric_scheme"] == "leave-one-site-out"
    assert set(res.metrics) == {"rmse", "r2"}
    assert res.plan_sha256 == load_plan(plan_path).sha256
    out = res.to_dict()
    json.dumps(out)
    assert len(out["per_site"]) == 6
    # schema violations are listed
    bad = d.drop(columns="age").assign(treatment=d.treatment + 1)
    with pytest.raises(
        DataError, match=r"'treatment' should be binary.*'age' \(numeric\) is missing"
    ):
        run_plan(plan_path, bad)
