"""Agreement of lmmkit.survival with the frozen R references (survival 3.5-3,
riskRegression 2022.11.28, pec 2022.5.4) and with scikit-survival: the largest differences,
one row per quantity, for docs/survival.md.

    .venv/bin/python benchmarks/survival_agreement.py
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import lmmkit

REPO = Path(__file__).resolve().parents[1]
REF = REPO / "tests" / "reference" / "survival"
DATA = REPO.parent / "shared" / "data" / "survival"


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def absd(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def main() -> None:
    ref = json.loads((REF / "survival_reference.json").read_text())
    mref = json.loads((REF / "metrics_reference.json").read_text())
    read = {
        n: pd.read_csv(DATA / f"{n}.csv")
        for n in ("lung", "cgd", "colon", "kidney", "rats", "veteran")
    }
    read["lung"]["w"] = 1 + read["lung"]["inst"] % 3
    cgd = "Surv(tstart, tstop, status) ~ treat + sex + age + C(inherit, Treatment('autosomal'))"
    fits = {
        "lung_efron": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {}),
        "lung_breslow": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {"ties": "breslow"}),
        "lung_strata": ("Surv(time, status) ~ age + ph.ecog + strata(sex)", "lung", {}),
        "lung_weights": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {"weights": "w"}),
        "lung_cluster": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {"cluster": "inst"}),
        "lung_offset": ("Surv(time, status) ~ sex + ph.ecog + offset(age / 100)", "lung", {}),
        "veteran": (
            "Surv(time, status) ~ trt + C(celltype) + karno + diagtime + age + prior",
            "veteran",
            {},
        ),
        "colon_death": ("Surv(time, status) ~ C(rx) + sex + age + obstruct + nodes", "colon", {}),
        "colon_death_breslow": (
            "Surv(time, status) ~ C(rx) + sex + age + obstruct + nodes",
            "colon",
            {"ties": "breslow"},
        ),
        "cgd_counting": (cgd + " + steroids", "cgd", {"cluster": "id"}),
        "cgd_counting_strata": (
            "Surv(tstart, tstop, status) ~ treat + age + strata(hos.cat)",
            "cgd",
            {},
        ),
    }
    worst: dict[str, float] = {}

    def up(key, v):
        worst[key] = max(worst.get(key, 0.0), v)

    for name, (f, data, kw) in fits.items():
        r = ref["fits"][name]
        d = read[data]
        if data == "colon":
            d = d[d["etype"] == 2]
        fit = lmmkit.coxph(f, d, **kw)
        var = np.array(r["var"])
        naive = np.array(r["naive_var"]) if r["naive_var"] is not None else var
        up("coxph coef (rel)", rel(fit.coef, r["coef"]))
        up("coxph SE, model-based (rel)", rel(fit.naive_se, np.sqrt(np.diag(naive))))
        if r["naive_var"] is not None:
            up("coxph SE, robust sandwich (rel)", rel(fit.se, np.sqrt(np.diag(var))))
        up("coxph loglik null/final (rel)", rel([fit.loglik_null, fit.loglik], r["loglik"]))
        up(
            "coxph score/Wald tests (rel)",
            max(rel(fit.score_test.statistic, r["score"]), rel(fit.wald_test.statistic, r["wald"])),
        )
        c = r["concordance"]
        up("coxph concordance C (abs)", abs(fit.concordance.concordance - c[5]))
        up("coxph concordance SE (abs)", abs(fit.concordance.std_err - c[6]))
        up("basehaz cumulative hazard (abs)", absd(fit.basehaz()["cumhaz"], r["basehaz"]["hazard"]))
        for t in ("martingale", "score", "schoenfeld", "dfbeta"):
            up("residuals mart/score/schoen/dfbeta (abs)", absd(fit.residuals(t), r[f"resid_{t}"]))
        for tr in ("km", "rank", "identity"):
            up(
                "cox.zph chisq (rel)",
                rel(fit.cox_zph(transform=tr).table["chisq"], r["zph"][tr]["chisq"]),
            )
    lung = read["lung"]
    fit = lmmkit.coxph(fits["lung_efron"][0], lung)
    p = ref["predict"]
    up(
        "predict survival(t | newdata) (abs)",
        absd(
            fit.predict(pd.DataFrame(p["newdata"]), type="survival", times=p["times"]),
            p["survival"],
        ),
    )
    for key, kw in {
        "lung_age": {},
        "lung_age_cluster": {"cluster": "inst"},
        "lung_karno_uno": {"timewt": "n/G2"},
        "lung_karno_ymax": {"ymax": 500},
    }.items():
        x = "age" if "age" in key else "ph.karno"
        d = lung.dropna(
            subset=[x, *(v for v in kw.values() if isinstance(v, str) and v in lung.columns)]
        )
        args = {k: (d[v] if k == "cluster" else v) for k, v in kw.items()}
        res = lmmkit.concordance(d["time"], d["status"], d[x], **args)
        rr = ref["concordance"][key]
        up("concordance() C, incl. Uno n/G2 (abs)", abs(res.concordance - rr["C"]))
        up("concordance() variance (abs)", abs(res.var - rr["var"]))
    km = lmmkit.kaplan_meier(lung["time"], lung["status"], group=lung["sex"])
    up(
        "Kaplan-Meier S and log-log CI (abs)",
        max(
            absd(km.table["estimate"], ref["km"]["surv"]),
            absd(km.table["upper"].fillna(0), pd.Series(ref["km"]["upper"]).fillna(0)),
        ),
    )
    na = lmmkit.nelson_aalen(lung["time"], lung["status"], group=lung["sex"])
    up("Nelson-Aalen H (abs)", absd(na.table["estimate"], ref["na"]["cumhaz"]))
    lr = lmmkit.logrank_test(lung["time"], lung["status"], lung["sex"])
    up("log-rank chisq (abs)", abs(lr.statistic - ref["logrank"]["lung_sex"]["chisq"]))
    for name, (f, data) in {
        "kidney": ("Surv(time, status) ~ age + sex + (1 | id)", "kidney"),
        "rats": ("Surv(time, status) ~ rx + (1 | litter)", "rats"),
    }.items():
        r = ref["frailty"][name]
        fr = lmmkit.coxph(f, read[data])
        up("gaussian frailty theta (rel)", rel(next(iter(fr.theta.values())), r["theta_fit"]))
        up("gaussian frailty coef (rel)", rel(fr.coef, r["coef"]))
        up("gaussian frailty SE (rel)", rel(fr.se, np.sqrt(np.diag(np.array(r["var"], ndmin=2)))))
        up(
            "gaussian frailty site effects (abs)",
            absd(next(iter(fr.frailties.values())), r["frail"]),
        )
    ml = read["lung"].dropna(subset=["ph.ecog"]).copy()
    t, e = ml["time"], ml["status"] - 1
    up(
        "time-dependent AUC vs riskRegression (abs)",
        absd(lmmkit.time_dependent_auc(t, e, mref["lp"], mref["times"]).auc, mref["auc"]),
    )
    up(
        "IPCW Brier vs riskRegression (abs)",
        absd(lmmkit.brier_survival(t, e, 1 - np.array(mref["risk"]), mref["times"]), mref["brier"]),
    )
    width = max(len(k) for k in worst)
    print(f"{'quantity':<{width}}  max difference")
    for k, v in worst.items():
        print(f"{k:<{width}}  {v:.1e}")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
