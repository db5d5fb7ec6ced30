"""Pre-specified analysis plans: canonical hashing, locking, verification, running."""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError
from lmmkit.validation.analysis_plan import (
    ALLOWED_KEYS,
    PlanError,
    load_plan,
    lock_plan,
    plan_hash,
    plan_history,
    run_plan,
)
from lmmkit.validation.plan import schema
from lmmkit.validation.plan.schema import validate_plan

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
    assert lock_plan(plan_path, force=True, reason="alpha corrected") == new


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
    with pytest.raises(PlanError, match="primary_metric: 'accuracy' is not allowed"):
        lock_plan(bad)
    bad.write_text(PLAN_TOML.replace('age = "numeric"', 'age = "float"'))
    with pytest.raises(PlanError, match="schema.age: 'float' is not allowed"):
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


# --------------------------------------------------------------------------- names at lock time
TRIAL_PLAN = """\
outcome = "score"
formula = "score ~ time * programme + (1 | patient)"
primary_endpoint = "time:programme"
alpha = 0.05
data = "trial.csv"

[schema]
patient = "string"
programme = "categorical"
time = "integer"
score = "numeric"
"""


def trial(n_patients: int = 40, seed: int = 0, visits: int = 4) -> pd.DataFrame:
    """Patients on the control or the new programme, seen at ``visits`` visits."""
    rng = np.random.default_rng(seed)
    patient = np.repeat([f"P{i:04d}" for i in range(n_patients)], visits)
    new = np.repeat(rng.random(n_patients) < 0.5, visits)
    time = np.tile(np.arange(visits), n_patients)
    b0 = np.repeat(rng.normal(0, 1, n_patients), visits)
    score = 10 + b0 + (0.5 - 0.3 * new) * time + rng.normal(0, 0.8, len(time))
    return pd.DataFrame({"patient": patient, "programme": np.where(new, "new", "control"),
                         "time": time, "score": score})  # fmt: skip


def _write(tmp_path, text: str, data: pd.DataFrame | None = None):
    p = tmp_path / "plan.toml"
    p.write_text(text)
    if data is not None:
        data.to_csv(tmp_path / "trial.csv", index=False)
    return p


def test_term_endpoint_refused_at_lock_without_data(tmp_path):
    # the plan's data file does not exist yet: the term is refused from [schema] alone
    p = _write(tmp_path, TRIAL_PLAN)
    with pytest.raises(PlanError) as exc:
        lock_plan(p)
    msg = str(exc.value)
    assert "primary_endpoint 'time:programme' is a term, not a coded column" in msg
    assert "'time:programme<level>'" in msg and "reference" in msg
    assert not (tmp_path / "plan.toml.lock").exists()
    # the coded column locks; the level's existence is deferred to the run
    p.write_text(TRIAL_PLAN.replace('"time:programme"', '"time:programmenew"'))
    lock_plan(p)
    (entry,) = plan_history(p)
    assert entry.data_sha256 is None and entry.data_file.endswith("trial.csv")
    assert any("does not exist at lock time" in d for d in entry.deferred)
    assert any("level(s) ['new']" in d for d in entry.deferred)
    assert any("declared in [schema]" in v for v in entry.validated)
    # at run time the deferred checks are made against the data
    d = trial()
    d.to_csv(tmp_path / "trial.csv", index=False)
    res = run_plan(p)
    assert any("coded fixed-effect column" in v for v in res.provenance["checked_at_run"])
    # a level the data do not have is refused at run time, with the coded columns
    (tmp_path / "typo").mkdir()
    p2 = _write(tmp_path / "typo", TRIAL_PLAN.replace('"time:programme"', '"time:programmenwe"'))
    lock_plan(p2)
    with pytest.raises(PlanError, match="Did you mean 'time:programmenew'"):
        run_plan(p2, d)


def test_term_endpoint_refused_at_lock_with_data(tmp_path):
    d = trial()
    p = _write(tmp_path, TRIAL_PLAN, d)
    with pytest.raises(PlanError) as exc:
        lock_plan(p)
    msg = str(exc.value)
    assert "the design codes it as ['time:programmenew']" in msg
    assert "Did you mean 'time:programmenew'?" in msg
    # the reference level has no column
    p.write_text(TRIAL_PLAN.replace('"time:programme"', '"time:programmecontrol"'))
    with pytest.raises(PlanError, match=r"not a fixed effect.*Did you mean 'time:programmenew'"):
        lock_plan(p)
    p.write_text(TRIAL_PLAN.replace('"time:programme"', '"time:programmenew"'))
    h = lock_plan(p)
    (entry,) = plan_history(p)
    assert entry.sha256 == h and entry.reason == "first lock"
    assert entry.data_sha256 == hashlib.sha256((tmp_path / "trial.csv").read_bytes()).hexdigest()
    assert any("coded fixed-effect column of the design" in v for v in entry.validated)
    assert not any("presence and types" in x for x in entry.deferred)


def test_every_name_checked_with_did_you_mean(tmp_path):
    bad = (TRIAL_PLAN.replace('outcome = "score"', 'outcome = "scroe"')
           .replace("time * programme", "time * programme + age")
           .replace("alpha = 0.05", 'alpha = 0.05\nsite = "centre"'))  # fmt: skip
    p = _write(tmp_path, bad)
    with pytest.raises(PlanError) as exc:
        lock_plan(p)
    msg = str(exc.value)
    # every problem in one message
    assert "outcome 'scroe' is not a column declared in [schema]. Did you mean 'score'?" in msg
    assert "variable 'age' is not declared in [schema]" in msg
    assert "its response 'score' is not the outcome 'scroe'" in msg
    assert "site 'centre' is not a column declared in [schema]" in msg
    # a misspelt key gets the closest known key
    p.write_text(TRIAL_PLAN.replace("alpha = 0.05", "alpha = 0.05\nprimary_metrc = 'rmse'"))
    with pytest.raises(PlanError, match="Did you mean 'primary_metric'"):
        lock_plan(p)
    # data that break the schema are refused at lock time when they are there
    p = _write(tmp_path, TRIAL_PLAN.replace('"time:programme"', '"time:programmenew"'),
               trial().drop(columns="time"))  # fmt: skip
    with pytest.raises(PlanError, match=r"column 'time' \(integer\) is missing"):
        lock_plan(p)


def test_schema_categorical_columns_are_factors(tmp_path):
    # an integer-coded arm declared categorical is a factor, as R's factor(arm)
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 8)
    arm = np.repeat(rng.integers(1, 4, 12), 8)
    y = 1 + 0.8 * (arm == 3) + np.repeat(rng.normal(0, 0.5, 12), 8) + rng.normal(0, 1, len(g))
    d = pd.DataFrame({"g": g, "arm": arm, "y": y})
    p = tmp_path / "plan.toml"
    p.write_text('outcome = "y"\nformula = "y ~ arm + (1 | g)"\nprimary_endpoint = "arm3"\n'
                 'alpha = 0.05\n[schema]\ny = "numeric"\narm = "categorical"\n'
                 'g = "categorical"\n')  # fmt: skip
    lock_plan(p, data=d)
    res = run_plan(p, d)
    ref = lmmkit.lmm("y ~ arm + (1 | g)", d.assign(arm=d["arm"].astype(str)))
    assert list(res.coefficients.index) == ["(Intercept)", "arm2", "arm3"]
    assert res.primary["estimate"] == pytest.approx(ref.fixef["arm3"], rel=1e-10)


# --------------------------------------------------------------------------- the lock history
def test_force_needs_a_reason_and_keeps_the_history(plan_path):
    h1 = lock_plan(plan_path)
    plan_path.write_text(PLAN_TOML.replace("alpha = 0.05", "alpha = 0.01"))
    with pytest.raises(PlanError, match="already locked"):
        lock_plan(plan_path)
    with pytest.raises(PlanError, match="needs a reason"):
        lock_plan(plan_path, force=True)
    h2 = lock_plan(plan_path, force=True, reason="alpha corrected before unblinding")
    assert lock_plan(plan_path, force=True, reason="again") == h2  # unchanged: no new entry
    history = plan_history(plan_path)
    assert [e.sha256 for e in history] == [h1, h2]
    assert [e.reason for e in history] == ["first lock", "alpha corrected before unblinding"]
    assert all(e.lmmkit_version == lmmkit.__version__ and e.locked_at for e in history)
    plan = load_plan(plan_path)
    assert plan.sha256 == h2 and plan.history == history
    rec = json.loads((plan_path.parent / "plan.toml.lock").read_text())
    assert rec["sha256"] == h2 and [e["sha256"] for e in rec["history"]] == [h1, h2]
    # going back to the first version is a change too, appended
    plan_path.write_text(PLAN_TOML)
    assert lock_plan(plan_path, force=True, reason="reverted") == h1
    assert [e.sha256 for e in plan_history(plan_path)] == [h1, h2, h1]


def test_lock_format_1_is_read(plan_path):
    h = plan_hash(tomllib.loads(PLAN_TOML))
    (plan_path.parent / "plan.toml.lock").write_text(
        json.dumps(
            {"format": "lmmkit.plan_lock/1", "sha256": h, "locked_at": "2026-01-01T00:00:00Z"}
        )
    )
    (entry,) = plan_history(plan_path)
    assert entry.sha256 == h and load_plan(plan_path).locked
    plan_path.write_text(PLAN_TOML.replace("alpha = 0.05", "alpha = 0.01"))
    lock_plan(plan_path, force=True, reason="new alpha")
    assert [e.sha256 for e in plan_history(plan_path)][0] == h


# --------------------------------------------------------------------------- provenance
def test_run_records_data_hash_and_versions(plan_path):
    import formulaic
    import nlopt
    import numba
    import scipy
    import sklearn

    lock_plan(plan_path)
    csv = plan_path.parent / "data.csv"
    data().to_csv(csv, index=False)
    res = run_plan(plan_path, csv)
    prov = res.provenance
    assert prov["data"]["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert prov["data"]["n_rows"] == 240 and prov["data"]["file"] == str(csv)
    env = prov["environment"]
    assert env["lmmkit"] == lmmkit.__version__
    versions = {"numpy": np, "scipy": scipy, "pandas": pd, "formulaic": formulaic,
                "nlopt": nlopt, "numba": numba, "scikit-learn": sklearn}  # fmt: skip
    for name, module in versions.items():
        assert env["dependencies"][name] == module.__version__, name
    assert prov["plan"]["sha256"] == res.plan_sha256 and len(prov["plan"]["history"]) == 1
    back = json.loads(json.dumps(res.to_dict()))
    assert back["provenance"]["data"]["sha256"] == prov["data"]["sha256"]
    # a data frame has no file: its content is hashed instead
    res2 = run_plan(plan_path, data())
    assert res2.provenance["data"]["file"] is None
    assert len(res2.provenance["data"]["frame_sha256"]) == 64
    assert res2.primary["estimate"] == pytest.approx(res.primary["estimate"], rel=1e-9)


def test_pinned_data_hash(plan_path):
    csv = plan_path.parent / "data.csv"
    data().to_csv(csv, index=False)
    digest = hashlib.sha256(csv.read_bytes()).hexdigest()
    pinned = f'data = "data.csv"\ndata_sha256 = "{digest}"\n\n[schema]'
    plan_path.write_text(PLAN_TOML.replace("[schema]", pinned))
    lock_plan(plan_path)
    assert run_plan(plan_path).provenance["data"]["sha256"] == digest
    data(seed=1).to_csv(plan_path.parent / "other.csv", index=False)
    with pytest.raises(PlanError, match=f"pins the data to sha256 {digest}"):
        run_plan(plan_path, plan_path.parent / "other.csv")


# --------------------------------------------------------------------------- the schema
REPO = Path(__file__).resolve().parents[2]


def test_validator_reads_the_schema(plan_path):
    """Every key of PLAN_SCHEMA is enforced as declared: required keys, types, allowed
    values and defaults (so the documented table is what the validator does)."""
    content = tomllib.loads(PLAN_TOML)
    top = schema.section("")
    for key in top.keys:
        path = key.name
        if key.required:
            with pytest.raises(PlanError, match=f"required key {path} is missing"):
                validate_plan({k: v for k, v in content.items() if k != path}, "p")
        wrong = 3.5 if key.type != "number" else "text"
        with pytest.raises(PlanError, match=f"{path} must be"):
            validate_plan({**content, path: wrong}, "p")
        if key.allowed is not None:
            value = ["nonsense"] if key.type == "list of strings" else "nonsense"
            with pytest.raises(PlanError, match=f"{path}: 'nonsense' is not allowed"):
                validate_plan({**content, path: value}, "p")
    settings = validate_plan(content, "p")
    for key in top.keys:
        if key.name not in content and key.default is not None and not key.required:
            assert settings[key.name] == key.default, key.name
    sections = {"schema", "model_selection", "survival", "radiomics"}
    assert {s.name for s in schema.PLAN_SCHEMA[1:]} == sections
    assert set(ALLOWED_KEYS) == {k.name for k in top.keys} | sections


def test_docs_table_is_generated_from_the_schema(tmp_path):
    text = schema.schema_markdown()
    lines = text.splitlines()
    for sec in schema.PLAN_SCHEMA:
        title = "### Top level" if not sec.name else f"### `[{sec.name}]`"
        start = next(i for i, line in enumerate(lines) if line.startswith(title))
        for key in sec.keys or (sec.entries,):
            i = lines.index(f"* - `{key.name}`", start)  # the key in its own section
            allowed, default, meaning = (x.removeprefix("  - ") for x in lines[i + 1 : i + 4])
            assert allowed.startswith(key.type) and meaning == key.doc, key.name
            assert (default == "**required**") == key.required, key.name
            for value in key.allowed or ():
                assert f"`{value}`" in allowed, (key.name, value)
    # the docs build writes exactly this text, and the page includes it
    import importlib.util

    spec = importlib.util.spec_from_file_location("_plangen", REPO / "docs" / "_plangen.py")
    plangen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plangen)
    out = plangen.write_plan_schema(tmp_path / "plan-schema.md")
    assert out.read_text() == text
    page = (REPO / "docs" / "analysis-plan.md").read_text()
    assert "```{include} _generated/plan-schema.md" in page
    assert "analysis-plan" in (REPO / "docs" / "index.md").read_text()


def _extra_runner(context):
    """The runner of the test section below: a table of the kept terms' estimates."""
    from lmmkit.validation.plan import SectionOutput

    keep = context.settings["keep"]
    table = context.fit.fixef.loc[keep].to_frame("estimate")
    return SectionOutput("Extra section", tables={"kept terms": table},
                         values={"threshold": context.settings["threshold"],
                                 "rows": len(context.data)})  # fmt: skip


def test_a_new_section_is_one_entry(plan_path, monkeypatch):
    from lmmkit.report.plan_report import render_plan_report

    extra = schema.Section(
        "extra",
        "A section added by one entry.",
        keys=(
            schema.Key("threshold", "number", "A number.", default=0.5),
            schema.Key("keep", "list of strings", "Terms.", default=[], names="term"),
        ),
        runner="tests.validation.test_analysis_plan:_extra_runner",
    )
    monkeypatch.setattr(schema, "PLAN_SCHEMA", (*schema.PLAN_SCHEMA, extra))
    assert "`[extra]` (optional)" in schema.schema_markdown()
    plan_path.write_text(PLAN_TOML + '\n[extra]\nkeep = ["treatment", "age"]\n')
    lock_plan(plan_path)
    plan = load_plan(plan_path)
    assert plan["extra"] == {"keep": ["treatment", "age"], "threshold": 0.5}  # default filled
    res = run_plan(plan, data())
    out = res.sections["extra"]
    assert list(out.tables["kept terms"].index) == ["treatment", "age"]
    assert out.values == {"threshold": 0.5, "rows": 240}
    assert res.to_dict()["sections"]["extra"]["values"]["rows"] == 240
    text = render_plan_report(res, plan)
    assert "<h2>Extra section</h2>" in text and "kept terms" in text
    # its keys are checked like any other: unknown key, wrong type, a name that is not a term
    bad = plan_path.parent / "bad.toml"
    bad.write_text(PLAN_TOML + "\n[extra]\nthreshhold = 0.7\n")
    with pytest.raises(PlanError, match=r"unknown key\(s\) \['threshhold'\] in \[extra\]"):
        lock_plan(bad)
    bad.write_text(PLAN_TOML + '\n[extra]\nthreshold = "high"\n')
    with pytest.raises(PlanError, match="extra.threshold must be a finite number"):
        lock_plan(bad)
    bad.write_text(PLAN_TOML + '\n[extra]\nkeep = ["treatmnt"]\n')
    with pytest.raises(PlanError, match="extra.keep 'treatmnt' is not a term.*'treatment'"):
        lock_plan(bad)


# --------------------------------------------------------------------------- the example
EXAMPLE = REPO / "docs" / "examples"
TRIAL_REF = REPO / "tests" / "reference" / "plan" / "trial_reference.json"


def test_example_plan_locks_and_runs(tmp_path):
    """docs/examples/trial-plan.toml is complete (every top-level key) and runs; its primary
    endpoint agrees with lmerTest's Kenward-Roger test (make_trial_reference.R)."""
    for name in ("trial-plan.toml", "trial.csv"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    plan_path = tmp_path / "trial-plan.toml"
    content = tomllib.loads(plan_path.read_text())
    # every top-level key the format knows, and the required sections
    required = {sec.name for sec in schema.PLAN_SCHEMA[1:] if sec.required}
    assert set(content) == {k.name for k in schema.section("").keys} | required
    lock_plan(plan_path)
    (entry,) = plan_history(plan_path)
    assert entry.data_sha256 == content["data_sha256"]  # the pinned file was checked at lock
    assert not entry.deferred
    res = run_plan(plan_path)
    ref = json.loads(TRIAL_REF.read_text())
    i = ref["names"].index(content["primary_endpoint"])
    pr = res.primary
    assert pr["n_used"] == ref["n"] and pr["n_dropped_missing"] == 360 - ref["n"]
    assert pr["estimate"] == pytest.approx(ref["estimate"][i], rel=1e-5)
    assert pr["std_error"] == pytest.approx(ref["kr_se"][i], rel=1e-4)
    assert pr["df"] == pytest.approx(ref["kr_df"][i], rel=1e-3)
    assert pr["p_value"] == pytest.approx(ref["kr_p"][i], rel=1e-3)
    assert set(res.metrics) == {"rmse", "mae", "r2"}
    assert set(res.diagnostics["influence"]) == {"site", "patient"}
    assert res.provenance["data"]["sha256"] == content["data_sha256"]


# --------------------------------------------------------------------------- model selection
def test_model_selection_must_be_pre_specified(plan_path):
    # a plan without [model_selection] refuses to select, saying why
    plan = load_plan(plan_path, require_lock=False)
    with pytest.raises(PlanError, match="does not pre-specify model selection.*refuses to select"):
        schema.selection_settings(plan.settings, plan.path)
    # the section is checked like any other
    bad = PLAN_TOML + '\n[model_selection]\nmethod = "stepwise"\nalpha_fixd = 0.1\n'
    with pytest.raises(PlanError) as exc:
        validate_plan(tomllib.loads(bad), "p")
    assert "model_selection.method: 'stepwise' is not allowed" in str(exc.value)
    assert "unknown key(s) ['alpha_fixd'] in [model_selection]" in str(exc.value)
    # elimination must keep the primary endpoint's term
    sel = '\n[model_selection]\nmethod = "step"\nkeep = ["age"]\n'
    with pytest.raises(PlanError, match="model_selection.keep must name the term of the primary"):
        validate_plan(tomllib.loads(PLAN_TOML + sel), "p")
    content = tomllib.loads(PLAN_TOML + sel.replace('["age"]', '["treatment"]'))
    import importlib.util

    if importlib.util.find_spec("lmmkit.inference.step") is None:
        with pytest.raises(PlanError, match="lmmkit.inference.step"):
            validate_plan(content, "p")
    else:
        settings = validate_plan(content, "p")
        assert schema.selection_settings(settings)["alpha_random"] == 0.1
