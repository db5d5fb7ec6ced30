"""The coxph command and the survival plots (smoke tests with the numbers checked)."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import lmmkit  # noqa: E402
from lmmkit.cli.main import main  # noqa: E402
from lmmkit.survival import plots  # noqa: E402


def test_cli_coxph_json(tmp_path, capsys, surv_data):
    lung = surv_data("lung")
    path = tmp_path / "lung.csv"
    lung.to_csv(path, index=False)
    out = tmp_path / "fit.json"
    code = main(
        [
            "coxph",
            "Surv(time, status) ~ age + sex + ph.ecog",
            "--data",
            str(path),
            "--json",
            str(out),
            "--zph",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "n= 227, number of events= 164" in printed and "GLOBAL" in printed
    d = json.loads(out.read_text())
    direct = lmmkit.coxph("Surv(time, status) ~ age + sex + ph.ecog", lung)
    assert abs(d["coef"]["sex"] - direct.coef["sex"]) < 1e-14
    assert d["n_dropped"] == 1


def test_cli_coxph_frailty_and_error(tmp_path, capsys, surv_data):
    kidney = surv_data("kidney")
    path = tmp_path / "kidney.csv"
    kidney.to_csv(path, index=False)
    out = tmp_path / "fr.json"
    assert (
        main(
            [
                "coxph",
                "Surv(time, status) ~ age + sex + (1 | id)",
                "--data",
                str(path),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert "Variance of random effect (id)" in capsys.readouterr().out
    assert abs(json.loads(out.read_text())["theta"]["id"] - 0.5691225) < 1e-6
    assert main(["coxph", "Surv(time, stat) ~ age", "--data", str(path)]) == 2
    assert "Did you mean 'status'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lung_fit(surv_data):
    lung = surv_data("lung").dropna(subset=["ph.ecog"])
    return lung, lmmkit.coxph("Surv(time, status) ~ age + sex + ph.ecog", lung)


def _labelled(fig):
    ax = fig.axes[0]
    return ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_plots_have_titles_and_labels(lung_fit):
    lung, fit = lung_fit
    t, e, lp = lung["time"], lung["status"] - 1, fit.linear_predictors
    assert _labelled(plots.plot_km_by_risk_group(t, e, lp))
    assert _labelled(plots.plot_km(lmmkit.kaplan_meier(t, e, group=lung["sex"])))
    r = lmmkit.time_dependent_auc(t, e, lp, [200, 400])
    assert _labelled(plots.plot_time_auc(r))
    risk = 1 - fit.predict(type="survival", times=[365])[:, 0]
    cal = lmmkit.survival_calibration(t, e, risk, 365, n_groups=5)
    assert _labelled(plots.plot_survival_calibration(cal))
    dc = lmmkit.survival_decision_curve(t, e, risk, 365)
    assert _labelled(plots.plot_survival_decision_curve(dc, 365))
    assert _labelled(plots.plot_zph(fit.cox_zph(), "sex"))
    legend = plots.plot_km_by_risk_group(t, e, lp).axes[0].get_legend()
    assert [x.get_text() for x in legend.get_texts()] == ["low", "middle", "high"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_zph_x_is_transformed_time(lung_fit):
    _, fit = lung_fit
    z = fit.cox_zph(transform="identity")
    assert np.all(np.diff(z.x) >= 0) and z.x.min() > 0  # event times, ascending
