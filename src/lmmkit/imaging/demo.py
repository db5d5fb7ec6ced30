"""``lmmkit imaging-demo``: the imaging-biomarker lifecycle on a synthetic multi-site cohort, on
CPU in a few minutes, written as an HTML report with its figures and tables.

Steps (site4, the most distorted scanner, is held out from every training step):

1. **Images in**: the cohort is written as NIfTI files and read back through the shared
   readers (:func:`lmmkit.imaging.dataset.read_cohort`: every image-mask pair checked).
2. **Segmentation**: a 3-D U-Net (encoder shared with a classification head, trained here on
   segmentation only) with Dice + cross-entropy; Dice and HD95 per held-out subject.
3. **Saliency**: a 3-D classifier (global max pooling) of a large necrotic core; Grad-CAM
   (captum) on the held-out
   site, the lesion-hit test against chance, the layer's grid drawn.
4. **Hand-off**: deep features of the segmentation encoder (no outcome used to train it) for
   every acquisition, as a tidy frame; test-retest ICC per feature (:func:`lmmkit.icc`);
   reliable features harmonized across sites (:func:`lmmkit.combat`, no outcome used);
   leave-one-site-out validation of a logistic model for the binary outcome
   (:func:`lmmkit.cross_validate_sites`); its decision curve (:func:`lmmkit.decision_curve`);
   a locked analysis plan run on the deep score (:func:`lmmkit.run_plan`).
5. **Across sites**: FedAvg client drift on a linear model of an image measurement beside
   :func:`lmmkit.multisite_fit`, which reaches the pooled mixed-model fit exactly.
"""

from __future__ import annotations

import datetime as _dt
import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DemoResult", "run_imaging_demo"]

HELD_OUT = "site4"


@dataclass(frozen=True, eq=False)
class DemoResult:
    """What the demo wrote: the report path, its tables and figure files, and timings."""

    report: Path
    tables: dict[str, pd.DataFrame] = field(repr=False)
    figures: dict[str, Path] = field(repr=False)
    seconds: dict[str, float] = field(repr=False)


def _plan_text() -> str:
    return "\n".join(
        [
            'title = "Deep imaging score and the binary outcome (imaging demo)"',
            'outcome = "deep_score"',
            'formula = "deep_score ~ y + age + (1 | site)"',
            'primary_endpoint = "y"',
            'primary_metric = "rmse"',
            "alpha = 0.05",
            'site = "site"',
            'cv = "loso"',
            "",
            "[schema]",
            'deep_score = "numeric"',
            'y = "binary"',
            'age = "numeric"',
            'site = "categorical"',
            "",
        ]
    )


def run_imaging_demo(
    out: str | Path,
    *,
    quick: bool = False,
    n_per_site: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: Any = None,
) -> DemoResult:
    """Run the lifecycle and write ``out/report.html`` with its figures and CSV tables.

    Parameters
    ----------
    out : path
        Output folder (created).
    quick : bool
        Smaller cohort and fewer epochs (the test's setting, about a minute).
    n_per_site, epochs : int, optional
        Override the cohort size per site and the training epochs.
    seed : int
    device : optional
        See :func:`lmmkit.imaging.device.get_device`.

    Returns
    -------
    DemoResult
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lmmkit._io import write_text_atomic
    from lmmkit.imaging.dataset import read_cohort, write_cohort
    from lmmkit.imaging.device import seed_everything
    from lmmkit.imaging.features import extract_features, feature_reliability, features_wide
    from lmmkit.imaging.federated import drift_study, exact_multisite
    from lmmkit.imaging.metrics import segmentation_table
    from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    from lmmkit.imaging.nets.multitask import MultiTaskUNet
    from lmmkit.imaging.plots import (
        plot_drift,
        plot_gradcam_overlay,
        plot_learning_curves,
        plot_segmentation_overlay,
    )
    from lmmkit.imaging.saliency import grad_cam, lesion_hit_test
    from lmmkit.imaging.synthetic import make_multisite
    from lmmkit.imaging.train import (
        normalize_intensity,
        segment,
        train_classifier,
        train_segmentation,
    )
    from lmmkit.omics.combat import combat
    from lmmkit.validation.analysis_plan import load_plan, lock_plan, run_plan
    from lmmkit.validation.cross_validation import cross_validate_sites
    from lmmkit.validation.decision_curve import decision_curve, plot_decision_curve

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    n = n_per_site or (6 if quick else 16)
    ep = epochs or (4 if quick else 12)
    secs: dict[str, float] = {}
    tables: dict[str, pd.DataFrame] = {}
    figs: dict[str, Path] = {}
    t0 = time.perf_counter()

    def tick(name: str) -> None:
        nonlocal t0
        secs[name] = time.perf_counter() - t0
        t0 = time.perf_counter()

    def save(name: str, fig: Any) -> None:
        import matplotlib.pyplot as plt

        path = outdir / f"{name}.png"
        tmp = outdir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
        tmp.replace(path)
        figs[name] = path

    # 1. images in ------------------------------------------------------------------------
    seed_everything(seed)
    cohort = make_multisite(n, shape=(32, 32, 32), n_rescans=2, seed=seed)
    manifest = write_cohort(cohort, outdir / "images")
    data = read_cohort(manifest, sequences=list(cohort.sequences))
    table = data.table
    x = normalize_intensity(data.images, ids=table["image_id"].tolist())
    masks = data.masks
    first = (table["rescan"] == 0).to_numpy()
    held = (table["site"] == HELD_OUT).to_numpy()
    tr, te = first & ~held, first & held
    tick("images in (write + read NIfTI)")

    # 2. segmentation ----------------------------------------------------------------------
    seg_net, seg_hist = train_segmentation(
        x[tr], masks[tr], net=MultiTaskUNet(x.shape[1], widths=(8, 16, 32)),
        val=(x[te], masks[te]), epochs=ep, lr=1e-2, seed=seed, device=device,
    )  # fmt: skip
    pred = segment(seg_net, x[te])
    seg_table = segmentation_table(pred, masks[te], ids=table["image_id"][te], empty="nan",
                                   spacing=data.spacing)  # fmt: skip
    tables["segmentation"] = seg_table
    save("segmentation_overlay", plot_segmentation_overlay(
        data.images[te], masks[te], pred, ids=list(table["image_id"][te]),
        dice=list(seg_table["dice"]),
    ))  # fmt: skip
    tick("segmentation")

    # 3. saliency ---------------------------------------------------------------------------
    core = (table["heterogeneity"].to_numpy() > 0.5).astype(int)  # necrotic core: local evidence
    seed_everything(seed)
    cls_net = ImageClassifier(ConvEncoder(3, x.shape[1], widths=(8, 16, 32), strides=(2, 2, 1),
                                          pool="max"))  # fmt: skip
    cls_net, cls_hist = train_classifier(cls_net, x[tr], core[tr], val=(x[te], core[te]),
                                         epochs=ep + 4, lr=3e-3, seed=seed, device=device)  # fmt: skip
    cam = grad_cam(cls_net, x[te], layer="encoder.blocks.0")
    hits = lesion_hit_test(cam.maps, masks[te], ids=table["image_id"][te])
    tables["gradcam"] = pd.DataFrame(
        [{"layer": cam.layer, "grid": "x".join(map(str, cam.grid)),
          "cell_voxels": cam.cell[0], "hits": hits.hits, "images": hits.n,
          "hit_rate": hits.hit_rate, "chance_rate": hits.chance_rate, "p_value": hits.p_value}]
    ).set_index("layer")  # fmt: skip
    save("gradcam_overlay", plot_gradcam_overlay(data.images[te], cam, masks[te],
                                                 ids=list(table["image_id"][te])))  # fmt: skip
    save("learning_curves", plot_learning_curves(
        {"U-Net (Dice+CE)": seg_hist, "classifier (CE)": cls_hist}
    ))  # fmt: skip
    tick("saliency")

    # 4. hand-off to the statistics ---------------------------------------------------------
    tidy = extract_features(seg_net, data)
    tidy.to_csv(outdir / "deep_features.csv", index=False)
    # features that vary within every site (dead ReLU channels are constant; ComBat needs a
    # within-site variance): the others are dropped and counted
    wide_all = features_wide(tidy[tidy["rescan"] == 0])
    subj = table[first].set_index("image_id").loc[wide_all.index]
    varies = wide_all.groupby(subj["site"].to_numpy()).std().min() > 1e-6
    rel = feature_reliability(tidy[tidy["feature"].isin(varies.index[varies])])
    tables["feature_icc"] = rel.sort_values("icc", ascending=False).head(10)
    # good reliability (ICC >= 0.75, Koo & Li 2016); at least 5 features (ComBat's
    # empirical-Bayes priors pool across features)
    reliable = rel.index[rel["icc"] >= 0.75].tolist()
    if len(reliable) < 5:
        reliable = rel["icc"].nlargest(5).index.tolist()
    wide = wide_all[reliable]
    harmonized = combat(wide.T, subj["site"]).T
    cv_data = harmonized.join(subj[["y", "site", "age"]])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = cross_validate_sites(clf, cv_data, site="site", outcome="y",
                              features=list(harmonized.columns))  # fmt: skip
    tables["cross_validation"] = cv.per_site
    dc = decision_curve(cv.predictions["y"], cv.predictions["pred"],
                        thresholds=np.arange(0.05, 0.96, 0.05))  # fmt: skip
    tables["decision_curve"] = dc.to_frame().iloc[::3].set_index("threshold")
    fig = plot_decision_curve(dc, label="deep features (LOSO)")
    fig.axes[0].set_title("Decision curve, held-out sites' predictions")
    save("decision_curve", fig)
    pc1 = np.linalg.svd(StandardScaler().fit_transform(harmonized), full_matrices=False)[0][:, 0]
    plan_data = pd.DataFrame({"deep_score": pc1 * np.sqrt(len(pc1)), "y": subj["y"].to_numpy(),
                              "age": subj["age"].to_numpy(), "site": subj["site"].to_numpy()})  # fmt: skip
    plan_path = outdir / "plan.toml"
    write_text_atomic(plan_path, _plan_text())
    lock_plan(plan_path, force=True)
    plan_res = run_plan(load_plan(plan_path), plan_data)
    tables["analysis_plan"] = pd.DataFrame([plan_res.primary]).set_index("endpoint")
    n_const = int((~varies).sum())
    tick("hand-off (ICC, ComBat, site CV, decision curve, plan)")

    # 5. across sites -------------------------------------------------------------------------
    m = masks.astype(bool)
    fed = table[first].copy()
    fed["t2_mean"] = [float(data.images[i, 1][m[i]].mean()) for i in np.flatnonzero(first)]
    drift = drift_study(fed[["heterogeneity", "age", "z_size"]].to_numpy(), fed["t2_mean"].to_numpy(),
                        fed["site"].to_numpy(), local_epochs=(1, 5, 20), rounds=300)  # fmt: skip
    tables["fedavg_drift"] = drift.set_index(["scheme", "local_epochs"])
    tables["exact_multisite"] = exact_multisite(
        fed, "t2_mean ~ heterogeneity + age + z_size + (1 | site)", site="site"
    )
    save("fedavg_drift", plot_drift(drift))
    tick("across sites (FedAvg drift, exact multi-site)")

    for name, t in tables.items():
        t.to_csv(outdir / f"{name}.csv")
    report = _write_report(outdir, tables, figs, secs, hits, seg_table, cv, n, ep, n_const,
                           len(reliable))
    return DemoResult(report, tables, figs, secs)


def _write_report(outdir: Path, tables: dict[str, pd.DataFrame], figs: dict[str, Path],
                  secs: dict[str, float], hits: Any, seg: pd.DataFrame, cv: Any, n: int,
                  ep: int, n_const: int, n_reliable: int) -> Path:  # fmt: skip
    from lmmkit._io import write_text_atomic
    from lmmkit.report.html import _CSS, _table

    def img(name: str, caption: str) -> str:
        return (f'<figure><img src="{figs[name].name}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip

    timing = pd.DataFrame({"seconds": secs}).rename_axis("step")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lmmkit imaging demo</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>lmmkit imaging demo: the imaging-biomarker lifecycle</h1>",
        f"<p class='meta'>{_dt.datetime.now():%Y-%m-%d %H:%M}; synthetic cohort, 4 sites x {n} "
        f"subjects x 2 rescans, 32<sup>3</sup> voxels, 2 sequences; {ep} epochs; held-out "
        f"site {HELD_OUT} (the most distorted scanner).</p>",
        "<h2>1. Segmentation (U-Net, Dice + cross-entropy)</h2>",
        f"<p>Held-out site: mean Dice {seg['dice'].mean():.3f}, median HD95 "
        f"{seg['hd95'].median():.2f} mm (lmmkit.dice / lmmkit.hausdorff).</p>",
        f"<div class='figs'>{img('segmentation_overlay', 'true (green) vs predicted (red)')}"
        f"{img('learning_curves', 'learning curves')}</div>",
        _table(seg),
        "<h2>2. Saliency (Grad-CAM through captum)</h2>",
        f"<p>The map's maximum lies in the lesion in {hits.hits} of {hits.n} held-out images "
        f"({hits.hit_rate:.0%}) against {hits.chance_rate:.1%} by chance (exact "
        f"Poisson-binomial p = {hits.p_value:.2g}). The map lives on the layer's grid (bottom "
        "row): that grid, not the upsampling, is the resolution limit.</p>",
        img("gradcam_overlay", "Grad-CAM overlays"),
        _table(tables["gradcam"]),
        "<h2>3. Deep features into lmmkit's statistics</h2>",
        "<p>Features of the segmentation encoder (trained without the outcome), one tidy row "
        "per acquisition and feature (deep_features.csv). Test-retest ICC(3,1) per feature "
        "(top 10):</p>",
        _table(tables["feature_icc"]),
        f"<p>{len(tables['feature_icc'])} of the top features shown; {n_const} constant "
        "feature(s) dropped before the ICC. {n_reliable} reliable features (ICC &ge; 0.75, at least the top 5), ComBat-harmonized across sites (no "
        "outcome used), logistic regression for the binary outcome, leave-one-site-out "
        f"(lmmkit.cross_validate_sites): pooled AUC {cv.pooled.get('auc', float('nan')):.3f}.</p>",
        _table(tables["cross_validation"]),
        img("decision_curve", "decision curve of the held-out predictions"),
        _table(tables["decision_curve"]),
        "<p>Locked analysis plan (plan.toml + plan.toml.lock) run on the deep score "
        "(first principal component of the harmonized features):</p>",
        _table(tables["analysis_plan"]),
        "<h2>4. Training across sites</h2>",
        "<p>FedAvg (simulation loop) on a linear model of the lesion's mean T2 intensity: the "
        "distance from the pooled least-squares optimum grows with local epochs, more for "
        "by-site clients than for IID ones. lmmkit.multisite_fit on per-site summaries reaches "
        "the pooled mixed-model fit to rounding.</p>",
        f"<div class='figs'>{img('fedavg_drift', 'client drift')}</div>",
        _table(tables["fedavg_drift"]),
        _table(tables["exact_multisite"]),
        "<h2>Timing (seconds)</h2>",
        _table(timing),
        "</body></html>",
    ]
    path = outdir / "report.html"
    write_text_atomic(path, "\n".join(parts))
    return path
