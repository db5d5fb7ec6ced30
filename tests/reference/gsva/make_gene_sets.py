"""Build the gene sets of the GSVA references from the bladder probes (seeded, reproducible).

Run from the repository root: ``python tests/reference/gsva/make_gene_sets.py`` (needs ../shared).
Writes ``gene_sets.gmt``: random probe sets of sizes 10-200, sets correlated by construction
(the probes most correlated with a seed probe; the probes most different between cancer and
normal), two overlapping sets, and one set with identifiers absent from the data.
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2].parent / "shared" / "data" / "omics"

expr = pd.read_csv(SHARED / "bladder_exprs.csv.gz", index_col=0)
pheno = pd.read_csv(SHARED / "bladder_pheno.csv", index_col=0)
probes = np.asarray(expr.index)
rng = np.random.default_rng(20240523)
sets: dict[str, list[str]] = {}
for size in (10, 12, 15, 20, 25, 40, 60, 80, 100, 150, 200):
    sets[f"random_{size}"] = list(rng.choice(probes, size=size, replace=False))

x = expr.to_numpy()
z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
variable = np.argsort(-x.std(1))[:50]
for k, size in zip((0, 7), (30, 120)):
    seed = variable[k]
    r = z @ z[seed] / x.shape[1]
    top = np.argsort(-r)[:size]
    sets[f"correlated_{probes[seed]}_{size}"] = list(probes[top])
cancer = (pheno.loc[expr.columns, "cancer"] == "Cancer").to_numpy()
diff = x[:, cancer].mean(1) - x[:, ~cancer].mean(1)
sets["up_in_cancer_50"] = list(probes[np.argsort(-diff)[:50]])
sets["down_in_cancer_50"] = list(probes[np.argsort(diff)[:50]])
sets["mixed_up_down_40"] = sets["up_in_cancer_50"][:20] + sets["down_in_cancer_50"][:20]
sets["overlap_random_100_60"] = sets["random_100"][:50] + sets["random_60"][:30]
sets["with_absent_ids_25"] = list(rng.choice(probes, size=22, replace=False)) + [
    "NOT_A_PROBE_1",
    "NOT_A_PROBE_2",
    "NOT_A_PROBE_3",
]
lines = [f"{name}\tseeded bladder probe set\t" + "\t".join(genes) for name, genes in sets.items()]
(HERE / "gene_sets.gmt").write_text("\n".join(lines) + "\n")
print(f"wrote {len(sets)} sets")
