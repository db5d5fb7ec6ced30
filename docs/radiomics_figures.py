"""Make the figures and tables of docs/radiomics.md.

    python docs/radiomics_figures.py [--shared ../shared] [--only robustness,habitats,...]

Writes docs/figures/radiomics/*.png and prints the tables pasted into the page. Runs in about
15 minutes on 2 cores (the robustness perturbations take most of it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "figures" / "radiomics"


def robustness() -> None:
    from lmmkit.imaging.radiomics.simulate import simulate_lesions
    from lmmkit.imaging.robustness import (
        Perturbations,
        perturbed_features,
        plot_robustness,
        robust_features,
    )
    from lmmkit.imaging.robustness import robustness as rob

    # small lesions (12^3 volumes, 100-300 voxels): MIRP's morphology family (Moran's I over all
    # voxel pairs in pure Python) costs seconds per extraction, and each case is extracted ~10 times
    man, imgs = simulate_lesions(12, shape=(12, 12, 12), spacing=(1, 1, 1), seed=21)
    t = perturbed_features([imgs[k] for k in man["image"]], [imgs[k] for k in man["mask"]],
                           {"bin_count": 16}, subjects=man["subject"].tolist(),
                           perturbations=Perturbations(noise=2, rotation=(-10.0, 10.0),
                                                       translation=(0.5,), volume=(-1.0, 1.0),
                                                       contour=2))  # fmt: skip
    table = rob(t)
    plot_robustness(table, path=OUT / "robustness.png")
    keep = robust_features(table)
    summary = table.groupby(["perturbation", "family"])["icc"].median().unstack(0).round(2)
    print("median ICC(1,1) by family and perturbation:\n", summary.to_string())
    print(
        f"robust (lower 95% bound >= 0.75 under every perturbation): {len(keep)} of "
        f"{table['feature'].nunique()}"
    )


def habitats() -> None:
    from lmmkit.imaging.habitats import fit_habitats, habitat_table, plot_habitats
    from lmmkit.imaging.radiomics.simulate import simulate_lesions

    man, imgs = simulate_lesions(16, shape=(24, 24, 24), spacing=(1, 1, 1), seed=4)
    rng = np.random.default_rng(9)
    subjects = {}
    for _, r in man.iterrows():
        t1 = imgs[r["image"]]
        t2 = t1.with_array(-0.7 * t1.array + rng.normal(0, 8, t1.shape))
        subjects[r["subject"]] = ([t1, t2], imgs[r["mask"]])
    names = list(subjects)
    model = fit_habitats({s: subjects[s] for s in names[:10]}, n_habitats=(1, 2, 3, 4, 5))
    print("BIC by number of habitats:\n", model.criterion.to_string(index=False))
    test = {s: subjects[s] for s in names[10:]}
    table, maps = habitat_table(model, test)
    plot_habitats(test, maps, title=f"Habitat maps of test subjects (k = {model.n_habitats}, "
                  "fitted on 10 training subjects)", path=OUT / "habitats.png")  # fmt: skip
    frac = table[table["feature"].str.endswith("fraction")].pivot(index="subject",
                                                                  columns="feature", values="value")  # fmt: skip
    frac["label"] = man.set_index("subject").loc[frac.index, "label"]
    print(frac.round(2).to_string())


def combat() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import lmmkit
    from lmmkit.imaging import radiomics, to_wide
    from lmmkit.imaging.radiomics.simulate import simulate_lesions

    man, imgs = simulate_lesions(30, shape=(20, 20, 20), spacing=(1, 1, 1), seed=11)
    m = man.assign(image=man["image"].map(imgs), mask=man["mask"].map(imgs))
    table = radiomics(m, settings={"families": ["stat", "ih", "cm"], "bin_count": 16})
    wide = to_wide(table, index=["subject", "site"])
    samples = wide.index.to_frame(index=False).set_index("subject", drop=False)
    samples["label"] = man.set_index("subject").loc[samples.index, "label"]
    expr = wide.T
    expr.columns = samples.index
    after = lmmkit.combat(expr, samples["site"], covariates=samples[["label"]])
    vp_b = lmmkit.variance_partition("~ (1 | site) + label", expr, samples, progress=False)
    vp_a = lmmkit.variance_partition("~ (1 | site) + label", after, samples, progress=False)
    cols = ["site", "label"]
    print("variance fractions before / after ComBat (median over features):")
    print(pd.DataFrame({"before": vp_b[cols].median(), "after": vp_a[cols].median()}).round(3))
    feats = ["stat_mean", "cm_contrast_d1_3d_v_mrg"]
    fig, axes = plt.subplots(1, 2 * len(feats), figsize=(13, 3.8))
    for j, f in enumerate(feats):
        for k, (name, data) in enumerate((("before ComBat", expr), ("after ComBat", after))):
            ax = axes[2 * j + k]
            for s_i, site in enumerate(sorted(samples["site"].unique())):
                for lab, mk in ((0, "o"), (1, "^")):
                    sel = (samples["site"] == site) & (samples["label"] == lab)
                    y = data.loc[f, sel.to_numpy()]
                    ax.plot(np.full(len(y), s_i) + (lab - 0.5) * 0.3, y, mk,
                            color=f"C{lab}", alpha=0.7)  # fmt: skip
            ax.set_xticks(range(3), sorted(samples["site"].unique()))
            ax.set_xlabel("site (scanner)")
            ax.set_ylabel(f)
            ax.set_title(f"{name}\nsite share {(vp_b if k == 0 else vp_a).loc[f, 'site']:.2f}",
                         fontsize=9)  # fmt: skip
    fig.legend([plt.Line2D([], [], marker="o", ls="", color="C0"),
                plt.Line2D([], [], marker="^", ls="", color="C1")],
               ["label 0", "label 1 (lesion signal)"], loc="lower center", ncol=2)  # fmt: skip
    fig.suptitle("Simulated scanner effect removed by ComBat, lesion signal kept")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(OUT / "combat.png", dpi=110)


def stain() -> None:
    from skimage import data

    from lmmkit.imaging.stain import (
        plot_stain_tiles,
        simulate_stain_batches,
        stain_batch_diagnostic,
    )

    img = data.immunohistochemistry()
    tiles, design = simulate_stain_batches(img, n_batches=3, slides_per_batch=3, seed=1)
    table, normalized = stain_batch_diagnostic(tiles, design, img[192:320, 192:320])
    plot_stain_tiles(tiles, design, normalized, path=OUT / "stain.png")
    print("share of variance explained by stain batch:")
    print(table.pivot(index="feature", columns="method", values="batch").round(3).to_string())


def real_images(shared: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage import color, data, filters, morphology

    from lmmkit.imaging import image_from_array, radiomics, read_image, read_mask
    from lmmkit.imaging.radiomics.conformance import ibsi_settings

    ct_dir = shared / "data" / "imaging" / "ibsi1_ct_phantom"
    ct, gtv = read_image(ct_dir / "image.nii.gz"), read_mask(ct_dir / "mask.nii.gz")
    ihc = data.immunohistochemistry()
    hema = color.rgb2hed(ihc)[..., 0]
    nuclei = morphology.remove_small_objects(hema > filters.threshold_otsu(hema), max_size=30)
    tissue = image_from_array(np.round(1000 * hema), spacing=(0.5, 0.5), source="skimage ihc")
    from lmmkit.imaging.radiomics import RadiomicsSettings

    ct_table = radiomics([ct], [gtv], ibsi_settings("D").with_(families=("stat", "cm", "szm")),
                         subjects=["IBSI CT phantom"])  # fmt: skip
    tile_settings = RadiomicsSettings(dimensions="2d", texture_aggregation=("2d_average",),
                                      families=("stat", "cm", "szm"), bin_count=32)  # fmt: skip
    tile_table = radiomics([tissue], [tissue.with_array(nuclei[None])], tile_settings,
                           subjects=["skimage IHC (haematoxylin)"])  # fmt: skip
    for t in (ct_table, tile_table):
        show = t[
            t["feature"].isin(
                [
                    "stat_mean",
                    "stat_var",
                    "cm_contrast_d1_3d_avg",
                    "cm_contrast_d1_2d_avg",
                    "szm_sze_3d",
                    "szm_sze_2d",
                ]
            )
        ]
        print(t["subject"].iloc[0], t.attrs["settings_id"], t["feature"].nunique(), "features")
        print(show[["feature", "value"]].to_string(index=False))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    z = int(np.argmax(gtv.array.sum(axis=(1, 2))))
    axes[0].imshow(ct.array[z], cmap="gray", vmin=-1000, vmax=400)
    axes[0].contour(gtv.array[z], levels=[0.5], colors="red", linewidths=1)
    axes[0].set_title(f"IBSI 1 CT phantom, GTV-1 (slice {z})")
    axes[1].imshow(ihc)
    axes[1].contour(nuclei, levels=[0.5], colors="yellow", linewidths=0.4)
    axes[1].set_title("scikit-image IHC tile, Otsu haematoxylin mask")
    for ax in axes:
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
    fig.tight_layout()
    fig.savefig(OUT / "real_images.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--only", default="real,combat,stain,habitats,robustness")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = {"real": lambda: real_images(args.shared), "combat": combat, "stain": stain,
            "habitats": habitats, "robustness": robustness}  # fmt: skip
    for name in args.only.split(","):
        print(f"\n== {name}")
        jobs[name]()


if __name__ == "__main__":
    main()
