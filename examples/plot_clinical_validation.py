"""
Clinical validation of a biomarker across sites
===============================================

A blood biomarker is proposed to flag patients at risk of a poor outcome. Six hospitals
contributed patients; their case mix and assay calibration differ. The question a reviewer
asks is not "what is the AUC?" but "how well does a model built elsewhere do at a *new*
hospital?", so the model is validated leaving whole sites out
(:func:`lmmkit.cross_validate_sites`), then judged on discrimination with DeLong's interval
(:func:`lmmkit.roc_auc`, pROC's numbers), calibration (:func:`lmmkit.calibration`) and net
benefit (:func:`lmmkit.decision_curve`). The data are simulated.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import lmmkit

rng = np.random.default_rng(3)
sites = [f"H{i}" for i in range(1, 7)]
n_per_site = rng.integers(80, 200, len(sites))
site = np.repeat(sites, n_per_site)
site_shift = dict(zip(sites, rng.normal(0, 0.4, len(sites))))
age = rng.normal(62, 11, site.size)
marker = rng.normal(0, 1, site.size) + np.vectorize(site_shift.get)(site) * 0.5
logit = -1.2 + 1.1 * marker + 0.03 * (age - 62) + np.vectorize(site_shift.get)(site)
outcome = (rng.random(site.size) < 1 / (1 + np.exp(-logit))).astype(int)
data = pd.DataFrame({"site": site, "age": age, "marker": marker, "outcome": outcome})

cv = lmmkit.cross_validate_sites(
    LogisticRegression(), data, site="site", outcome="outcome", features=["marker", "age"]
)
print(cv.summary())

# %%
# The pooled held-out predictions: discrimination, calibration and net benefit.
held_out = cv.predictions
roc = lmmkit.roc_auc(held_out["y"], held_out["pred"])
cal = lmmkit.calibration(held_out["y"], held_out["pred"])
print(f"AUC {roc.auc:.3f} (DeLong 95% CI {roc.ci_low:.3f} to {roc.ci_high:.3f})")
print(f"calibration intercept {cal.intercept:.2f}, slope {cal.slope:.2f}, Brier {cal.brier:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
axes[0].plot(roc.fpr, roc.tpr)
axes[0].plot([0, 1], [0, 1], ":", color="grey")
axes[0].set(xlabel="1 - specificity", ylabel="sensitivity",
            title=f"ROC, sites held out (AUC {roc.auc:.2f})")  # fmt: skip
lmmkit.plot_calibration(held_out["y"], held_out["pred"], ax=axes[1])
axes[1].set_title("Calibration of held-out risks")
curve = lmmkit.decision_curve(held_out["y"], held_out["pred"], thresholds=np.arange(0.05, 0.8, 0.01))
lmmkit.plot_decision_curve(curve, ax=axes[2])
axes[2].set_title("Decision curve")
fig.suptitle("A biomarker validated leaving whole hospitals out")
fig.tight_layout()
