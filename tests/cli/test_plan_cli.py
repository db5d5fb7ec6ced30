"""`lmmkit plan lock` / `lmmkit plan run`: lock before unblinding, refuse a changed plan,
write the self-contained HTML report (checked in headless Chromium when available)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.cli.main import main
from lmmkit.validation.analysis_plan import load_plan, run_plan
from tests.browser import ARTIFACTS, screenshot
from tests.validation.test_analysis_plan import PLAN_TOML

# the validation tests' plan, with the missing-data rule and every diagnostic named
PLAN = PLAN_TOML.replace(
    'cv = "loso"\n',
    'cv = "loso"\nmissing = "drop"\n'
    'diagnostics = ["checks", "residuals", "qq", "ranef_qq", "caterpillar", "influence"]\n',
)
assert "missing = " in PLAN


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    parts = []
    for k in range(6):
        n = 30
        t = rng.integers(0, 2, n)
        age = rng.normal(60, 8, n)
        y = 1 + 0.6 * t + 0.02 * age + rng.normal(0, 0.7) + rng.normal(0, 1, n)
        parts.append(pd.DataFrame({"site": f"s{k}", "treatment": t, "age": age, "y": y}))
    d = pd.concat(parts, ignore_index=True)
    d.loc[5, "age"] = np.nan  # one row dropped and counted
    return d


@pytest.fixture
def files(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    data = tmp_path / "data.csv"
    _data().to_csv(data, index=False)
    return plan, data


def test_lock_then_run_writes_report_and_json(files, tmp_path, capsys):
    plan, data = files
    assert main(["plan", "lock", str(plan)]) == 0
    report, js = tmp_path / "report.html", tmp_path / "out.json"
    rc = main(["plan", "run", str(plan), "--data", str(data), "--report", str(report),
               "--json", str(js)])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    h = load_plan(plan).sha256
    assert h[:12] in out and "report:" in out
    text = report.read_text()
    assert h in text and "verified against lock 1 of its lock history" in text
    for section in ("Primary endpoint", "Reproducibility record", "Lock history", "Fixed effects",
                    "Named checks", "Diagnostics", "influence", "Cross-validation by site",
                    "The plan"):  # fmt: skip
        assert section in text, section
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == 5  # residuals, QQ, ranef QQ, caterpillar, influence
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert "http://" not in text and "https://" not in text
    # the JSON is run_plan's own answer
    got = json.loads(js.read_text())
    ref = run_plan(plan, pd.read_csv(data))
    assert got["plan_sha256"] == h
    assert got["primary"]["estimate"] == pytest.approx(ref.primary["estimate"], rel=1e-12)
    assert len(got["per_site"]) == 6
    assert got["primary"]["n_dropped_missing"] == 1 and got["primary"]["n_used"] == 179
    # the reproducibility record: data file hash, versions, lock history; every level's influence
    prov = got["provenance"]
    assert prov["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert prov["data"]["sha256"] in text
    assert prov["environment"]["lmmkit"] == lmmkit.__version__
    assert prov["environment"]["dependencies"]["numpy"] == np.__version__
    assert [e["sha256"] for e in prov["plan"]["history"]] == [h]
    assert len(got["diagnostics"]["influence"]["site"]) == 6
    # outputs are not overwritten silently
    assert main(["plan", "run", str(plan), "--data", str(data), "--report", str(report)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_changed_plan_is_refused(files, tmp_path, capsys):
    plan, data = files
    assert main(["plan", "lock", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "checked: the formula's response is the outcome 'y'" in out
    assert "deferred to the run: the plan names no data file" in out
    h1 = load_plan(plan).sha256
    plan.write_text(PLAN.replace("alpha = 0.05", "alpha = 0.1"))
    assert main(["plan", "run", str(plan), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "does not match its lock" in err and "expected sha256" in err
    # re-locking a changed plan needs --force and --reason, and keeps the earlier lock
    assert main(["plan", "lock", str(plan)]) == 2
    assert "--force --reason" in capsys.readouterr().err
    assert main(["plan", "lock", str(plan), "--force"]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert main(["plan", "lock", str(plan), "--force", "--reason", "alpha corrected",
                 "--data", str(data)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"replaces sha256 {h1}" in out and "reason: alpha corrected" in out
    assert "checked: primary_endpoint 'treatment' is a coded fixed-effect column" in out
    assert main(["plan", "lock", str(plan)]) == 0
    assert "unchanged since its lock" in capsys.readouterr().out
    report = tmp_path / "r.html"
    assert main(["plan", "run", str(plan), "--data", str(data), "--report", str(report)]) == 0
    text = report.read_text()
    assert "Lock history (2 locks)" in text and h1 in text and "alpha corrected" in text


def test_unlocked_unknown_key_and_bad_diagnostics(files, capsys):
    plan, data = files
    assert main(["plan", "run", str(plan), "--data", str(data)]) == 2
    assert "is not locked" in capsys.readouterr().err
    plan.write_text(PLAN.replace('cv = "loso"', 'cv = "loso"\nmisssing = "raise"'))
    assert main(["plan", "lock", str(plan)]) == 2
    assert "unknown key(s) ['misssing']" in capsys.readouterr().err
    plan.write_text(PLAN.replace('"influence"]', '"leverage"]'))
    assert main(["plan", "lock", str(plan)]) == 2
    assert "diagnostics: 'leverage' is not allowed" in capsys.readouterr().err


def test_data_from_the_plan_and_no_factor_option(files, tmp_path, capsys):
    plan, data = files
    plan.write_text(PLAN.replace("[schema]", f'data = "{data.name}"\n\n[schema]'))
    assert main(["plan", "lock", str(plan)]) == 0
    report = tmp_path / "r.html"
    assert main(["plan", "run", str(plan), "--report", str(report)]) == 0  # data from the plan
    assert f"on {data}" in capsys.readouterr().out
    assert main(["plan", "run", str(plan), "--factor", "site", "--overwrite",
                 "--report", str(report)]) == 2  # fmt: skip
    assert "declare it in the plan's [schema]" in capsys.readouterr().err


def test_missing_rule_raise_refuses_missing_rows(files, capsys):
    plan, data = files
    plan.write_text(PLAN.replace('missing = "drop"', 'missing = "raise"'))
    assert main(["plan", "lock", str(plan)]) == 0
    assert main(["plan", "run", str(plan), "--data", str(data)]) == 2
    assert "missing values" in capsys.readouterr().err


def test_plan_report_renders_in_headless_chromium(files):
    plan, data = files
    assert main(["plan", "lock", str(plan)]) == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = ARTIFACTS / "plan_report.html"
    args = ["plan", "run", str(plan), "--data", str(data), "--report", str(report)]
    assert main([*args, "--overwrite"]) == 0
    img = screenshot(report, ARTIFACTS / "plan_report.png", 1200, 2400)
    assert img.shape == (2400, 1200)
    assert 0.01 < float((img < 200).mean()) < 0.9 and img.std() > 20


def test_plan_run_prints_the_sections(tmp_path, capsys):
    """`plan run` prints one line per plan section: the survival endpoint's hazard ratio
    and the radiomics settings' id; lock errors name the file and the line."""
    from tests.validation.test_plan_sections import DATA, PLAN, RADIOMICS, SID

    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN + RADIOMICS)
    (tmp_path / "trial.csv").write_bytes(DATA.read_bytes())
    assert main(["plan", "lock", str(plan)]) == 0
    out = capsys.readouterr().out
    assert f"radiomics settings hash to settings_id {SID}" in out
    assert main(["plan", "run", str(plan), "--report", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\[survival\] programmenew: hazard ratio 0\.61\d* \(95% CI", out)
    assert f"[radiomics] settings_id {SID}; all 450 rows have settings_id" in out
    plan.write_text(PLAN.replace("alpha = 0.05", "alpha = 5"))
    assert main(["plan", "lock", str(plan), "--force", "--reason", "x"]) == 2
    assert f"{plan}: line 4: alpha must be strictly between 0 and 1" in capsys.readouterr().err
