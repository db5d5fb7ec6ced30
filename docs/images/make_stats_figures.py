"""Figures of docs/agreement.md and docs/cost-effectiveness.md (run from the repository root:
``python docs/images/make_stats_figures.py``; needs ../shared for the aSAH data)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

import lmmkit  # noqa: E402

HERE = Path(__file__).resolve().parent
REF = HERE.parents[1] / "tests" / "reference" / "agreement"

pefr = pd.read_csv(REF / "pefr.csv")
ba = lmmkit.bland_altman("wright1", "mini1", data=pefr)
lmmkit.plot_bland_altman(ba, title="PEFR, Wright - mini Wright meter (Bland & Altman 1986)").savefig(
    HERE / "bland_altman_pefr.png", dpi=110, bbox_inches="tight"
)
co = pd.read_csv(REF / "cardiac_output.csv")
ba2 = lmmkit.bland_altman("rv", "ic", data=co, subject="subject")
lmmkit.plot_bland_altman(
    ba2, title="Cardiac output, RV - IC, 12 subjects x 3-6 pairs (Bland & Altman 2007)"
).savefig(HERE / "bland_altman_cardiac_output.png", dpi=110, bbox_inches="tight")

asah = pd.read_csv(HERE.parents[1].parent / "shared" / "data" / "clinical" / "aSAH.csv")
y = (asah["outcome"] == "Poor").astype(int).to_numpy()
inputs = lmmkit.CEAInputs(
    cost_tp=lmmkit.gamma_from_moments(12_000, 2_000),
    cost_fn=lmmkit.gamma_from_moments(20_000, 4_000),
    cost_fp=lmmkit.gamma_from_moments(12_000, 2_000),
    cost_tn=lmmkit.gamma_from_moments(2_000, 400),
    qaly_tp=6.0,
    qaly_fn=4.5,
    qaly_fp=11.8,
    qaly_tn=12.0,
    cost_test=lmmkit.lognormal_from_moments(80, 20),
)
psa = lmmkit.probabilistic_sensitivity(inputs, y, asah["s100b"], n_draws=1000, seed=1)
lmmkit.plot_frontier(psa.base, title="aSAH, s100b: efficiency frontier (illustrative inputs)").savefig(
    HERE / "cea_frontier.png", dpi=110, bbox_inches="tight"
)
lmmkit.plot_ce_plane(psa, wtp=20_000).savefig(HERE / "cea_plane.png", dpi=110, bbox_inches="tight")
lmmkit.plot_ceac(psa).savefig(HERE / "cea_ceac.png", dpi=110, bbox_inches="tight")
print(psa.base.frontier[["sensitivity", "specificity", "cost", "effect", "icer"]].round(4))
print(psa.best.loc[[0.0, 10_000.0, 20_000.0, 50_000.0, 100_000.0]])
