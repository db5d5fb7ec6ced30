"""
A first mixed model: sleep deprivation
======================================

Eighteen subjects were kept awake for ten days and their reaction time measured every day
(lme4's ``sleepstudy``). Each subject gets their own intercept and slope, correlated, and the
fixed effects are the population line.
"""

import matplotlib.pyplot as plt

import lmmkit
from lmmkit.datasets import load_dataset

sleep = load_dataset("sleepstudy")
res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleep)
print(res.summary())

# %%
# The subjects' own lines (BLUPs added to the fixed effects) against the data.
ranef = res.ranef["Subject"]
fig, axes = plt.subplots(3, 6, figsize=(12, 6), sharex=True, sharey=True)
for ax, (subject, rows) in zip(axes.flat, sleep.groupby("Subject", observed=True)):
    b0 = res.fixef["(Intercept)"] + ranef.loc[subject, "(Intercept)"]
    b1 = res.fixef["Days"] + ranef.loc[subject, "Days"]
    ax.plot(rows["Days"], rows["Reaction"], "o", ms=3)
    ax.plot([0, 9], [b0, b0 + 9 * b1], "-")
    ax.set_title(f"subject {subject}", fontsize=8)
fig.suptitle("sleepstudy: each subject's fitted line (REML)")
fig.supxlabel("days of sleep deprivation")
fig.supylabel("reaction time (ms)")
fig.tight_layout()
