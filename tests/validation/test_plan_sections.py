"""The plan's [survival] and [radiomics] sections: checked at lock and run, run against R's
coxph, recorded in the reproducibility record and drawn in the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lmmkit.errors import DataError  # noqa: E402
from lmmkit.validation.plan import PlanError, load_plan, lock_plan, plan_history, run_plan  # noqa: E402

REF = Path(__file__).resolve().parents[1] / "reference" / "plan"
DATA = REF / "survival_trial.csv"
SID = "ee4117edf086"  # RadiomicsSettings(bin_count=16).settings_id

PLAN = """\
outcome = "score"
formula = "score ~ time * programme + (1 | patient)"
primary_endpoint = "time:programmenew"
alpha = 0.05
diagnostics = []
data = "trial.csv"

[schema]
patient = "string"
programme = "categorical"
time = "integer"
score = "numeric"
age = "numeric"
texture = "numeric"
os = "numeric"
death = "binary"

[survival]
formula = "Surv(os, death) ~ programme + age + texture"
endpoint = "programmenew"
subject = "patient"
"""

RADIOMICS = f"""
[radiomics]
settings_id = "{SID}"
extractor_version = "0.0-locked"

[radiomics.settings]
bin_count = 16
"""


def _plan(tmp_path: Path, text: str, data: pd.DataFrame | None = None) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(text)
    if data is not None:
        data.to_csv(tmp_path / "trial.csv", index=False)
    else:
        shutil.copy(DATA, tmp_path / "trial.csv")
    return p


def test_survival_endpoint_against_r_coxph(tmp_path):
    """The section's Cox fit on one row per patient agrees with R survival's coxph (Efron
    ties, Wald interval) and cox.zph (make_survival_reference.R)."""
    ref = json.loads((REF / "survival_reference.json").read_text())
    p = _plan(tmp_path, PLAN)
    lock_plan(p)
    (entry,) = plan_history(p)
    assert any("survival.endpoint 'programmenew' is a coded column of the Cox design" in v
               for v in entry.validated)  # fmt: skip
    assert any("every variable of the Cox formula" in v for v in entry.validated)
    res = run_plan(p)
    out = res.sections["survival"]
    v = out.values
    i = ref["names"].index("programmenew")
    assert v["n_used"] == ref["n"] == 150 and v["events"] == ref["nevent"]
    assert v["log hazard ratio"] == pytest.approx(ref["coef"][i], rel=1e-6)
    assert v["p_value"] == pytest.approx(ref["p"][i], rel=1e-5)
    assert v["HR lower 95%"] == pytest.approx(ref["lower"][i], rel=1e-6)
    assert v["HR upper 95%"] == pytest.approx(ref["upper"][i], rel=1e-6)
    assert v["significant"] is (ref["p"][i] < 0.05)
    assert v["concordance"] == pytest.approx(ref["concordance"], rel=1e-6)
    hr = out.tables["Hazard ratios"]
    np.testing.assert_allclose(hr.loc[ref["names"], "coef"], ref["coef"], rtol=1e-6)
    np.testing.assert_allclose(hr.loc[ref["names"], "se(coef)"], ref["se"], rtol=1e-5)
    zph = out.tables["Proportional hazards test (cox.zph)"]
    np.testing.assert_allclose(zph["p"].to_numpy(), ref["zph_p"], rtol=1e-4)
    assert v["rows per subject collapsed"] == "450 rows -> 150 subjects"
    # the figures have titles and labelled axes
    assert len(out.figures) == 2
    for caption, draw in out.figures.items():
        fig = draw()
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), caption
        plt.close(fig)
    assert json.loads(json.dumps(res.to_dict()))["sections"]["survival"]["values"]["events"] == 85


def test_survival_names_checked_at_lock_and_run(tmp_path):
    # an undeclared variable of the Cox formula, with the closest declared one
    bad = PLAN.replace("programme + age + texture", "programme + agee")
    with pytest.raises(
        PlanError, match=r"survival.formula: variable 'agee' is not declared.*'age'"
    ):
        lock_plan(_plan(tmp_path, bad))
    # a Cox formula that does not parse names the key
    bad = PLAN.replace('"Surv(os, death) ~ programme + age + texture"', '"os ~ programme"')
    with pytest.raises(PlanError, match="survival.formula does not parse as a Cox formula"):
        lock_plan(_plan(tmp_path, bad))
    # the endpoint as a term is refused with its coded column, with and without the data
    bad = PLAN.replace('endpoint = "programmenew"', 'endpoint = "programme"')
    with pytest.raises(PlanError, match=r"survival.endpoint 'programme' is a term.*'programmenew'"):
        lock_plan(_plan(tmp_path, bad))
    (tmp_path / "nodata").mkdir()
    p = tmp_path / "nodata" / "plan.toml"
    p.write_text(bad)
    with pytest.raises(
        PlanError, match=r"survival.endpoint 'programme' is a term.*programme<level>"
    ):
        lock_plan(p)
    # without data the level is deferred, and a wrong one is refused when the data are read
    p.write_text(bad.replace('endpoint = "programme"', 'endpoint = "programmenwe"'))
    lock_plan(p)
    (entry,) = plan_history(p)
    assert any(d.startswith("survival.endpoint") for d in entry.deferred)
    with pytest.raises(PlanError, match="Did you mean 'programmenew'"):
        run_plan(p, DATA)
    # an unknown key of the section, with the closest one
    bad = PLAN.replace('subject = "patient"', 'subjct = "patient"')
    with pytest.raises(PlanError, match=r"unknown key\(s\) \['subjct'\] in \[survival\]"):
        lock_plan(_plan(tmp_path, bad))


def test_survival_one_row_per_subject_and_missing_rule(tmp_path):
    d = pd.read_csv(DATA)
    varying = d.copy()
    varying.loc[1, "age"] = 99.0  # patient P000's second visit
    with pytest.raises(PlanError, match=r"vary within a subject \(e.g. patient 'P000'\)"):
        lock_plan(_plan(tmp_path, PLAN, varying))
    # nothing dropped silently: a missing survival time is counted, or refused
    miss = d.copy()
    miss.loc[miss["patient"] == "P001", "os"] = np.nan
    p = _plan(tmp_path, PLAN, miss)
    lock_plan(p)
    out = run_plan(p).sections["survival"]
    assert out.values["n_dropped_missing"] == 1 and out.values["n_used"] == 149
    assert any(n.startswith("1 row(s) with a missing Cox column") and "dropped" in n
               for n in out.notes)  # fmt: skip
    p.write_text(PLAN.replace("alpha = 0.05", 'alpha = 0.05\nmissing = "raise"'))
    lock_plan(p, force=True, reason="missing values refused")
    refused = r'1 row\(s\) with a missing Cox column \({.os.: 1}\) .*missing = "raise"'
    with pytest.raises(DataError, match=refused):
        run_plan(p)


def test_radiomics_settings_recorded(tmp_path):
    p = _plan(tmp_path, PLAN + RADIOMICS)
    lock_plan(p)
    (entry,) = plan_history(p)
    assert f"radiomics settings hash to settings_id {SID}" in entry.validated
    assert f"every row of the data has settings_id {SID}" in entry.validated
    plan = load_plan(p)
    res = run_plan(plan)
    rec = res.provenance["sections"]["radiomics"]
    assert rec["settings_id"] == SID and rec["extractor"] == "mirp"
    assert rec["extractor_version_locked"] == "0.0-locked"
    assert any("locked with mirp 0.0-locked" in n for n in res.sections["radiomics"].notes)
    assert res.to_dict()["provenance"]["sections"]["radiomics"]["settings_id"] == SID
    from lmmkit.report.plan_report import render_plan_report

    text = render_plan_report(res, plan)
    record = text[text.index("<h2>Reproducibility record</h2>") : text.index("<h3>Numerical")]
    assert "[radiomics] settings_id" in record and SID in record
    assert "<h2>Radiomics settings</h2>" in text and "<h2>Survival endpoint: programmenew" in text
    assert text.count("<figure>") == 2  # the survival figures (diagnostics = [])


def test_radiomics_settings_refused(tmp_path):
    # invalid settings name the key and the setting
    bad = PLAN + RADIOMICS.replace("bin_count = 16", "bin_cuont = 16")
    with pytest.raises(PlanError, match=r"radiomics.settings: .*unknown radiomics setting "
                                        r"'bin_cuont'.*'bin_count'"):  # fmt: skip
        lock_plan(_plan(tmp_path, bad))
    # settings edited after their id was recorded
    bad = PLAN + RADIOMICS.replace("bin_count = 16", "bin_count = 32")
    with pytest.raises(PlanError, match="the settings were changed after locking"):
        lock_plan(_plan(tmp_path, bad))
    bad = PLAN + RADIOMICS.replace(SID, "not-an-id")
    with pytest.raises(PlanError, match="radiomics.settings_id must be 12 lowercase hex digits"):
        lock_plan(_plan(tmp_path, bad))
    # data whose features were computed under other settings
    d = pd.read_csv(DATA)
    d.loc[d["patient"] == "P003", "settings_id"] = "0123456789ab"
    with pytest.raises(PlanError, match=r"settings_id column holds \['0123456789ab', "
                                        rf"'{SID}'\].*features computed under other"):  # fmt: skip
        lock_plan(_plan(tmp_path, PLAN + RADIOMICS, d))


def test_errors_name_file_line_and_key(tmp_path):
    """Every problem names the plan file, the line of the key it is about and the key."""
    bad = PLAN.replace("alpha = 0.05", "alpha = 1.5").replace(
        'subject = "patient"', 'subject = "patient"\nties = "exact"'
    )
    p = _plan(tmp_path, bad + RADIOMICS.replace("bin_count = 16", "bin_cuont = 16"))
    lines = p.read_text().splitlines()
    with pytest.raises(PlanError) as exc:
        lock_plan(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: ")

    def line_of(text: str) -> int:
        return next(i for i, x in enumerate(lines, 1) if x.startswith(text))

    assert f"line {line_of('alpha =')}: alpha must be strictly between 0 and 1" in msg
    assert f"line {line_of('ties =')}: survival.ties: 'exact' is not allowed" in msg
    # an unknown key of a section and a rule about a sub-table name their own lines
    bad = PLAN.replace('subject = "patient"', 'subjct = "patient"')
    p.write_text(bad)
    lines = bad.splitlines()
    with pytest.raises(
        PlanError, match=rf"line {line_of('subjct')}: unknown key\(s\) \['subjct'\]"
    ):
        lock_plan(p)
    p.write_text(PLAN + RADIOMICS.replace("bin_count = 16", "bin_cuont = 16"))
    lines = p.read_text().splitlines()
    with pytest.raises(PlanError, match=rf"line {line_of('[radiomics.settings]')}: radiomics"):
        lock_plan(p)
    # names checked against the data: the line of the key that names them
    p.write_text(PLAN.replace('endpoint = "programmenew"', 'endpoint = "programme"'))
    lines = p.read_text().splitlines()
    n = line_of('endpoint = "programme"')
    with pytest.raises(PlanError, match=rf"line {n}: survival.endpoint 'programme' is a term"):
        lock_plan(p)


def test_km_groups_do_not_split_equal_risks(tmp_path):
    """With one binary covariate the linear predictor has two values: the Kaplan-Meier
    figure shows the two arms (quantile groups would split one arm arbitrarily), and its
    log-rank p is the arms' log-rank test."""
    from lmmkit.survival.nonparametric import logrank_test

    p = _plan(tmp_path, PLAN.replace("programme + age + texture", "programme"))
    lock_plan(p)
    out = run_plan(p).sections["survival"]
    (caption,) = [c for c in out.figures if c.startswith("Kaplan-Meier")]
    assert caption.endswith("(2 groups)")
    fig = out.figures[caption]()
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["low", "high"]
    d = pd.read_csv(DATA).drop_duplicates("patient")
    lr = logrank_test(d["os"], d["death"], d["programme"])
    assert legend.get_title().get_text() == f"risk group (log-rank p = {lr.p_value:.2g})"
    plt.close(fig)


def test_model_selection_runs_step_as_pre_specified(tmp_path):
    """[model_selection] runs lmmkit.step with the plan's ddf and the section's settings
    (step itself is checked against lmerTest in tests/inference); the endpoint is kept."""
    import lmmkit
    from tests.validation.test_analysis_plan import PLAN_TOML, data

    p = tmp_path / "plan.toml"
    p.write_text(PLAN_TOML + '\n[model_selection]\nmethod = "step"\nkeep = ["treatment"]\n')
    lock_plan(p)
    d = data()
    res = run_plan(p, d)
    out = res.sections["model_selection"]
    direct = lmmkit.step(lmmkit.lmm("y ~ treatment + age + (1 | site)", d), keep=["treatment"])
    assert out.values["model found"] == direct.formula
    assert out.headline == f"model found: {direct.formula}"
    pd.testing.assert_frame_equal(
        out.tables["Backward reduced fixed-effect table"], direct.fixed, check_names=False
    )
    assert "treatment" in out.tables["Fixed effects of the model found"].index
    assert "treatment: p_value" in out.values
    from lmmkit.report.plan_report import render_plan_report

    text = render_plan_report(res, load_plan(p))
    assert "<h2>Pre-specified model selection (step)</h2>" in text
    assert "Backward reduced random-effect table" in text
