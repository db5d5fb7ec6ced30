"""Do decoupler or gseapy reproduce R GSVA 1.46 on the bladder references? (run by hand).

Run from the repository root in an environment with decoupler and gseapy installed:
``python tests/reference/gsva/compare_python_tools.py``. Prints the largest absolute
difference from R's scores for each tool and method. Not part of the test suite.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.simplefilter("ignore")
HERE = Path(__file__).resolve().parent
expr = pd.read_csv(HERE.parents[2].parent / "shared/data/omics/bladder_exprs.csv.gz", index_col=0)
lines = [ln.split("\t") for ln in (HERE / "gene_sets.gmt").read_text().splitlines()]
sets = {f[0]: f[2:] for f in lines}
net = pd.DataFrame(
    [(s, g) for s, genes in sets.items() for g in genes if g in expr.index],
    columns=["source", "target"],
)


def report(tool: str, case: str, ours: pd.DataFrame) -> None:
    ref = pd.read_csv(HERE / f"{case}.csv.gz", index_col=0)
    common = [s for s in ref.index if s in ours.index]
    d = np.abs(ours.loc[common, ref.columns].to_numpy() - ref.loc[common].to_numpy())
    print(f"{tool:28s} vs R {case:16s}: max |diff| {d.max():.3g} ({len(common)} sets)")


try:
    import decoupler as dc

    print("decoupler", dc.__version__)
    data = expr.T  # samples x genes
    for method, case in (("gsva", "gsva_gaussian"), ("zscore", "zscore")):
        fn = getattr(dc.mt, method)
        res = fn(data, net, tmin=1, verbose=False)
        scores = res[0] if isinstance(res, tuple) else res
        report(f"decoupler.mt.{method}", case, scores.T)
except Exception as exc:  # noqa: BLE001 - a report script
    print("decoupler failed:", type(exc).__name__, exc)

try:
    import gseapy

    print("gseapy", gseapy.__version__)
    ss = gseapy.ssgsea(
        data=expr, gene_sets=sets, outdir=None, sample_norm_method="rank", min_size=1,
        max_size=5000, weight=0.25, no_plot=True, threads=1, verbose=False,
    )
    es = ss.res2d.pivot(index="Term", columns="Name", values="ES").astype(float)
    nes = ss.res2d.pivot(index="Term", columns="Name", values="NES").astype(float)
    report("gseapy.ssgsea ES", "ssgsea_nonorm", es)
    report("gseapy.ssgsea NES", "ssgsea", nes)
except Exception as exc:  # noqa: BLE001
    print("gseapy failed:", type(exc).__name__, exc)
