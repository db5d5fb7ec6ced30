"""The self-contained HTML report, rendered by real headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lmmkit.report.html import render_validation_report, validation_report  # noqa: E402
from tests.browser import ARTIFACTS, screenshot  # noqa: E402


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=400)
    p = 1 / (1 + np.exp(-(-0.5 + 1.2 * x)))
    y = (rng.random(400) < p).astype(int)
    return y, p


def test_report_is_self_contained(tmp_path):
    y, p = _data()
    per_site = pd.DataFrame(
        {"n": [200, 200], "auc": [0.8, 0.75]}, index=pd.Index(["A", "B<"], name="site")
    )
    path = validation_report(
        y, p, tmp_path / "r.html", title="Test <report>", metrics={"CV AUC": 0.78},
        tables={"Per-site metrics": per_site}, notes=["held-out sites"],
    )  # fmt: skip
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == 3
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text  # nothing external
    assert "Test &lt;report&gt;" in text and "B&lt;" in text and "CV AUC" in text
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file
    assert render_validation_report(y, p).count("<figure>") == 3


def test_report_renders_in_headless_chromium():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    y, p = _data(1)
    html_path = validation_report(y, p, ARTIFACTS / "validation_report.html", title="lmmkit report")
    shot = ARTIFACTS / "validation_report.png"
    img = screenshot(html_path, shot, 1200, 1600)
    assert shot.stat().st_size > 20_000
    assert img.shape == (1600, 1200)
    nonwhite = float((img < 200).mean())
    assert 0.01 < nonwhite < 0.9, nonwhite  # text, tables and plots were drawn
    assert img.std() > 20


# --------------------------------------------------------------------------- real sizes
def _trial(n_patients: int, seed: int = 0, visits: int = 4) -> pd.DataFrame:
    """A clinic trial: patients on the control or the new programme, ``visits`` visits."""
    rng = np.random.default_rng(seed)
    new = np.repeat(rng.random(n_patients) < 0.5, visits)
    time = np.tile(np.arange(visits, dtype=float), n_patients)
    b0 = np.repeat(rng.normal(0, 1.0, n_patients), visits)
    b1 = np.repeat(rng.normal(0, 0.3, n_patients), visits)
    y = 10 + b0 + (0.5 + b1 - 0.3 * new) * time + rng.normal(0, 0.8, len(time))
    return pd.DataFrame({"patient": np.repeat([f"P{i:04d}" for i in range(n_patients)], visits),
                         "programme": np.where(new, "new", "control"), "time": time, "y": y})  # fmt: skip


def _with_survival(trial: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """The trial with one survival time per patient and the features' settings_id."""
    from lmmkit.imaging.radiomics import RadiomicsSettings

    first = trial.drop_duplicates("patient")
    rng = np.random.default_rng(seed)
    hazard = 0.05 * np.exp(-0.5 * (first["programme"] == "new").to_numpy())
    t, c = rng.exponential(1 / hazard), rng.uniform(5, 40, len(first))
    surv = pd.DataFrame({"patient": first["patient"].to_numpy(), "os": np.minimum(t, c),
                         "death": (t <= c).astype(int)})  # fmt: skip
    out = trial.merge(surv, on="patient", how="left")
    return out.assign(settings_id=RadiomicsSettings(bin_count=16).settings_id)


@pytest.fixture(scope="module")
def fits():
    import lmmkit

    out = {}
    for n in (300, 3000):
        out[n] = lmmkit.lmm("y ~ time * programme + (time | patient)", _trial(n))
    return out


def _no_overlap(fig) -> None:
    """The figure's title and panel titles do not overlap any panel."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    axes = [a for a in fig.axes if a.get_visible()]
    titles = [fig._suptitle] if fig._suptitle is not None else []
    for ax in axes:
        box = ax.get_window_extent(r)
        for t in titles:
            assert not t.get_window_extent(r).overlaps(box), t.get_text()
        for other in axes:
            if other is not ax and other.title.get_text():
                assert not other.title.get_window_extent(r).overlaps(box), other.title.get_text()


def test_caterpillar_readable_at_300_and_3000_levels(fits):
    from lmmkit.report.plots import caterpillar

    for n, fit in fits.items():
        fig = caterpillar(fit)
        width, height = fig.get_size_inches()
        assert height <= 9 and width <= 9, (n, width, height)
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert len(labels) == 25 and f"{n - 24:,} others (strip)" in labels
        # the 12 lowest and 12 highest conditional modes are the ones named
        modes = fit.ranef["patient"]["(Intercept)"].sort_values()
        named = [x for x in labels if not x.endswith("(strip)")]
        assert set(named) == set(modes.index[:12]) | set(modes.index[-12:])
        assert f"{n:,} levels" in fig._suptitle.get_text()
        _no_overlap(fig)
        plt.close(fig)


def test_influence_sorted_plot_and_number_format():
    import lmmkit
    from lmmkit.report.diagnostic_plots import cluster_influence_plot
    from lmmkit.report.html import format_column, format_number

    d = _trial(120, seed=3)
    f = "y ~ time * programme + (1 | patient)"
    infl = lmmkit.cluster_influence(f, d, "patient", full_fit=lmmkit.lmm(f, d))
    fig = cluster_influence_plot(infl, top=20)
    width, height = fig.get_size_inches()
    assert height <= 9, height
    overview, dots = fig.axes[0], fig.axes[1]
    assert len(overview.lines[0].get_xdata()) == 120  # every level against its rank
    cooks = overview.lines[0].get_ydata()
    assert np.all(np.diff(cooks) <= 0)  # sorted
    labels = [t.get_text() for t in dots.get_yticklabels()]
    top = infl["cooks"].sort_values(ascending=False).index[:20]
    assert labels == [str(x) for x in top[::-1]]  # most influential at the top
    _no_overlap(fig)
    plt.close(fig)
    # numbers: zero up to rounding is 0 at the column's decimals, not -3.867e-11
    assert format_column([0.0117, -3.867e-11, 0.00627]) == ["0.0117", "0.0000", "0.0063"]
    assert format_column([1234.5, 2.25, -0.004]) == ["1234", "2", "0"]
    assert format_number(-3.867e-11) == "-3.867e-11" and format_number(0.05) == "0.05"
    assert format_number(123456.0) == "123456" and format_number(float("nan")) == "&ndash;"


def test_validation_plots_have_titles_and_use_their_axes():
    from lmmkit.validation.calibration import plot_calibration
    from lmmkit.validation.decision_curve import decision_curve, plot_decision_curve

    rng = np.random.default_rng(0)
    x = rng.normal(size=600)
    p = 1 / (1 + np.exp(-(-3 + 0.8 * x)))  # low risks only: max p is about 0.37
    y = (rng.random(600) < p).astype(int)
    fig = plot_calibration(y, p)
    ax = fig.axes[0]
    assert "Calibration" in ax.get_title()
    assert ax.get_xlim()[1] < 0.5 and ax.get_xlim()[1] > p.max()
    fig2 = plot_decision_curve(decision_curve(y, p))
    ax2 = fig2.axes[0]
    assert ax2.get_title().startswith("Decision curve")
    assert ax2.get_xlim()[1] < 0.5 and "cut at" in ax2.get_xlabel()
    plt.close(fig)
    plt.close(fig2)


def _png_heights(text: str) -> list[int]:
    out = []
    for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text):
        raw = base64.b64decode(b)
        out.append(int.from_bytes(raw[20:24], "big"))  # IHDR height
    return out


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("<h2>", start + len(heading))
    return text[start : end if end > 0 else None]


PLAN = """\
title = "Programme trial, {n} patients"
outcome = "y"
formula = "y ~ time * programme + ({re} | patient)"
primary_endpoint = "time:programmenew"
alpha = 0.05
diagnostics = {diagnostics}

[schema]
patient = "string"
programme = "categorical"
time = "numeric"
y = "numeric"
os = "numeric"
death = "binary"

[survival]
formula = "Surv(os, death) ~ programme"
endpoint = "programmenew"
subject = "patient"

[radiomics]
settings_id = "ee4117edf086"

[radiomics.settings]
bin_count = 16
"""


@pytest.mark.slow  # 35-60 s each on a loaded 2-core machine
@pytest.mark.parametrize(
    ("n", "re_term", "diagnostics"),
    [(300, "1", '["checks", "residuals", "qq", "ranef_qq", "caterpillar", "influence"]'),
     (3000, "time", '["checks", "residuals", "qq", "ranef_qq", "caterpillar"]')],
)  # fmt: skip
def test_plan_report_at_real_sizes_in_chromium(tmp_path, n, re_term, diagnostics):
    """The whole report at 300 and 3,000 patients: every figure of a bounded size, the
    influence section a sorted plot and a 10-row table; screenshots in tests/artifacts."""
    from lmmkit.report.plan_report import plan_report
    from lmmkit.validation.plan import load_plan, lock_plan, run_plan

    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(PLAN.format(n=n, re=re_term, diagnostics=diagnostics))
    csv = tmp_path / "trial.csv"
    _with_survival(_trial(n)).to_csv(csv, index=False)
    lock_plan(plan_path, data=csv)
    plan = load_plan(plan_path)
    result = run_plan(plan, csv)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = plan_report(result, plan, ARTIFACTS / f"plan_report_{n}.html")
    text = report.read_text()
    heights = _png_heights(text)
    assert heights and max(heights) <= 1300, heights
    record = _section(text, "<h2>Reproducibility record</h2>")
    assert hashlib.sha256(csv.read_bytes()).hexdigest() in record
    assert "numpy" in record and np.__version__ in record and "Lock history (1 lock)" in record
    if "influence" in diagnostics:
        infl = _section(text, "<h2>Leave-one-patient-out influence")
        rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", infl.split("<tbody>")[1])
        assert len(rows) == 10
        table = infl.split("<table>")[1]
        assert not re.search(r"\de-\d", table), "scientific notation in the influence table"
        header = re.findall(r"<th>(.*?)</th>", table)
        cooks_col = header.index("Cook&#x27;s distance")
        cells = [re.findall(r"<td>(.*?)</td>", r) for r in table.split("<tr>")[2:]]
        cooks = [float(c[cooks_col]) for c in cells]
        assert cooks == sorted(cooks, reverse=True)
        assert "most influential by Cook's distance" in infl
    # the plan's sections: the settings' id in the record, the survival figures drawn
    assert "[radiomics] settings_id" in record and "ee4117edf086" in record
    surv = _section(text, "<h2>Survival endpoint: programmenew</h2>")
    assert f"{4 * n} rows -&gt; {n} subjects" in surv
    assert surv.count("<figure>") == 2 and "predicted risk group (2 groups)" in surv
    shot = ARTIFACTS / f"plan_report_{n}.png"
    img = screenshot(report, shot, 1200, 7000)
    assert img.shape == (7000, 1200)
    assert 0.01 < float((img < 200).mean()) < 0.9 and img.std() > 20
