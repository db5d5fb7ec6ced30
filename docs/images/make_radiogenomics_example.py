"""The radiogenomics example of docs/pathway-scores.md: all probes against pathway scores as
the expression block, inside leave-one-site-out cross-validation (run from the repository
root: ``python docs/images/make_radiogenomics_example.py``; needs ../shared).

Real expression (bladder, 22,283 probes x 57 samples) and real sites (its 5 processing
batches); the outcome and 10 "radiomic" features are simulated, 30 times: the outcome
depends on the mean expression of 3 of 150 seeded random probe sets (standing in for
pathways: bladderbatch ships no gene annotation) plus noise, the radiomic features are
noisy copies of the same latent score. Pathway scores are GSVA scores of the 150 sets,
computed once without the outcome. Model: standardize + L2 logistic regression.
"""

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import lmmkit  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1].parent / "shared" / "data" / "omics"
expr = pd.read_csv(SHARED / "bladder_exprs.csv.gz", index_col=0)
pheno = pd.read_csv(SHARED / "bladder_pheno.csv", index_col=0).loc[expr.columns]
rng = np.random.default_rng(2024)
probes = expr.index.to_numpy()
sets = {f"set{i:03d}": list(rng.choice(probes, rng.integers(20, 101), replace=False)) for i in range(150)}
scores = lmmkit.pathway_scores(expr, sets, method="gsva").features()  # samples x sets
z = expr.sub(expr.mean(axis=1), axis=0).div(expr.std(axis=1), axis=0)
site = pheno["batch"].astype(str).to_numpy()

rows = []
for rep in range(30):
    r = np.random.default_rng(rep)
    signal = r.choice(list(sets), 3, replace=False)
    latent = sum(z.loc[sets[s]].mean().to_numpy() for s in signal)
    latent = (latent - latent.mean()) / latent.std() + r.normal(0, 0.7, len(latent))
    y = (latent > np.median(latent)).astype(int)
    radiomics = pd.DataFrame(
        latent[:, None] * 0.3 + r.normal(0, 1, (len(latent), 10)),
        index=expr.columns,
        columns=[f"radiomic{i}" for i in range(10)],
    )
    for block, features in (("all probes", expr.T), ("pathway scores", scores)):
        data = pd.concat([features, radiomics], axis=1)
        data.columns = data.columns.astype(str)
        cols = list(data.columns)
        data["y"], data["site"] = y, site
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cv = lmmkit.cross_validate_sites(
                model, data, site="site", outcome="y", features=cols, outcome_type="binary"
            )
        auc = cv.per_site["auc"].dropna()
        rows.append(
            {
                "replicate": rep,
                "block": block,
                "n_features": len(cols),
                "pooled_auc": cv.pooled["auc"],
                "fold_auc_mean": auc.mean(),
                "fold_auc_sd": auc.std(ddof=1),
            }
        )
res = pd.DataFrame(rows)
summary = res.groupby("block").agg(
    n_features=("n_features", "first"),
    pooled_auc_mean=("pooled_auc", "mean"),
    pooled_auc_sd_over_replicates=("pooled_auc", "std"),
    fold_auc_mean=("fold_auc_mean", "mean"),
    fold_auc_sd_within_replicate=("fold_auc_sd", "mean"),
)
print(summary.round(3).to_string())
fig, ax = plt.subplots(figsize=(6.5, 4.5))
for k, (block, part) in enumerate(res.groupby("block")):
    ax.scatter(np.full(len(part), k) + np.random.default_rng(k).uniform(-0.12, 0.12, len(part)),
               part["pooled_auc"], s=16, alpha=0.7, color=f"C{k}")
    ax.errorbar(k + 0.25, part["pooled_auc"].mean(), yerr=part["pooled_auc"].std(), fmt="o",
                color="black", capsize=4)
ax.set_xticks([0, 1], [f"all probes\n(22,283 + 10 radiomic)", "pathway scores\n(150 GSVA + 10 radiomic)"])
ax.axhline(0.5, color="grey", lw=0.7)
ax.set_ylabel("Held-out AUC, leave-one-site-out (pooled)")
ax.set_title("Bladder expression block: all probes vs pathway scores (30 simulated outcomes)")
fig.savefig(HERE / "radiogenomics_cv.png", dpi=110, bbox_inches="tight")
