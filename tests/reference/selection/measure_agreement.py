"""Largest differences from lmerTest / pbkrtest / lme4 over the nine selection references
(ranova both ways, type III and II F tests with Satterthwaite and Kenward-Roger df).

    .venv/bin/python tests/reference/selection/measure_agreement.py

Reuses the references and data loaders of tests/inference/test_selection.py and prints the
maxima that the closing notes quote; the tests hold the tolerances.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import lmmkit  # noqa: E402
import tests.inference.test_selection as T  # noqa: E402


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(b) & (np.abs(b) > 1e-12)
    return float(np.max(np.abs(a[ok] / b[ok] - 1))) if ok.any() else 0.0


def main() -> None:
    fits = {k: lmmkit.lmm(T.REF[k]["formula"], T.DATA[k]()) for k in T.DATA}
    mx = dict.fromkeys(
        ["LRT", "logLik", "F", "DenDF Satterthwaite", "DenDF Kenward-Roger", "p"], 0.0
    )
    for k, fit in fits.items():
        for reduce in (True, False):
            ref = T.REF[k]["ranova" if reduce else "ranova_whole"]
            got = lmmkit.ranova(fit, reduce_terms=reduce).table.loc[T._rows(ref)]
            mx["LRT"] = max(mx["LRT"], _rel(got["LRT"], T._col(ref, "LRT")))
            mx["logLik"] = max(mx["logLik"], _rel(got["logLik"], T._col(ref, "logLik")))
            want = T._col(ref, "Pr(>Chisq)")
            ok = np.isfinite(want)
            if ok.any():
                diff = np.abs(got["Pr(>Chisq)"].to_numpy(float)[ok] - want[ok])
                mx["p"] = max(mx["p"], float(diff.max()))
        for type_ in (3, 2):
            for ddf in ("Satterthwaite", "Kenward-Roger"):
                ref = T.REF[k][f"anova_type{type_}_{ddf}"]
                got = lmmkit.anova(fit, type=type_, ddf=ddf)
                if not len(got):
                    continue
                mx["F"] = max(mx["F"], _rel(got["F value"], T._col(ref, "F value")))
                key = f"DenDF {ddf}"
                mx[key] = max(mx[key], _rel(got["DenDF"], T._col(ref, "DenDF")))
                diff = np.abs(got["Pr(>F)"].to_numpy(float) - T._col(ref, "Pr(>F)"))
                mx["p"] = max(mx["p"], float(diff.max()))
    print(f"{len(fits)} models; largest differences (relative; p absolute):")
    for name, value in mx.items():
        print(f"  {name}: {value:.1e}")


if __name__ == "__main__":
    main()
