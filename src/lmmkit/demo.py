"""The demo: the seed example and the classic sleepstudy fit on bundled data, with plots."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pandas as pd

# lme4 1.1-31's answers for the two demo models (from ../shared/reference/lme4), shown beside
# ours; the test suite checks every digit that matters against the frozen JSON.
LME4 = {
    "mpg ~ hp + (1 | am)": {
        "objective": 167.73782769,
        "(Intercept)": 29.2600915792,
        "hp": -0.0592786970344,
        "sd_am": 3.65254857216,
    },
    "Reaction ~ Days + (Days | Subject)": {
        "objective": 1743.62827196,
        "(Intercept)": 251.405104848,
        "Days": 10.4672859596,
        "sd_Subject": 24.740657995,
    },
}


def run_demo(out: str | Path = "lmmkit-demo") -> None:
    import lmmkit
    from lmmkit.datasets import load_dataset
    from lmmkit.report.plots import caterpillar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print("lmmkit demo: linear mixed models with lme4's formulas and lme4's numbers\n")
    for formula, data_name in [
        ("mpg ~ hp + (1 | am)", "mtcars"),
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    ]:
        data = load_dataset(data_name)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lmmkit.lmm(formula, data)
        seconds = time.perf_counter() - start
        print("=" * 78)
        print(f'lmmkit.lmm("{formula}", {data_name})   [{seconds * 1000:.0f} ms]\n')
        print(res.summary())
        ref = LME4[formula]
        grp = res.varcorr["group"].iloc[0]
        print("\n  agreement with lme4 1.1-31:")
        print(f"    REML criterion   lmmkit {res.objective:.6f}   lme4 {ref['objective']:.6f}")
        for name in res.fixef.index:
            print(f"    {name:<16} lmmkit {res.fixef[name]:.6f}   lme4 {ref[name]:.6f}")
        print(
            f"    SD({grp}){' ' * max(0, 11 - len(grp))}  lmmkit {res.varcorr['sdcor'].iloc[0]:.6f}   lme4 {ref['sd_' + grp]:.6f}"
        )
        stem = data_name
        res.to_json(out / f"{stem}_fit.json")
        fig = caterpillar(res)
        fig.savefig(out / f"{stem}_ranef.png", dpi=110)
        print(f"\n  wrote {out / (stem + '_fit.json')} and {out / (stem + '_ranef.png')}")
    data = load_dataset("sleepstudy")
    res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", data)
    new = pd.DataFrame({"Days": [0, 5, 9, 0, 5, 9], "Subject": ["308"] * 3 + ["new subject"] * 3})
    pred = res.predict(new, allow_new_levels=True)
    print("=" * 78)
    print("Prediction: a known subject gets its own line, an unseen one the population line")
    for (_, row), p in zip(new.iterrows(), pred):
        print(f"    Subject {row['Subject']:<12} Day {row['Days']}:  {p:7.1f} ms")
    print("\nDone. Open the PNG files in", out.resolve())
