"""Robustness of radiomic features to image and segmentation perturbations.

Stages: perturbed extraction (MIRP's perturbations, one type at a time, plus the unperturbed
baseline) -> per perturbation type and feature: ICC(1,1) with its confidence interval
(:func:`lmmkit.icc`, subjects as targets, perturbed versions as "raters") and Lin's concordance
correlation coefficient between the baseline and each perturbed version (mean over versions)
-> a filter that keeps robust features, fitted inside the training folds of site-wise
cross-validation.

Perturbations (Zwanenburg et al. 2019, Sci Rep 9:614, as implemented by MIRP):

* ``noise``: Gaussian noise at the image's own estimated noise level, ``n`` repetitions;
* ``rotation``: rotation about the ROI's axial axis by the given angles (degrees);
* ``translation``: sub-voxel shifts of the grid by the given fractions of a voxel (all
  combinations over the three axes);
* ``volume``: mask growth (> 0) or shrinkage (< 0) by the given distances in mm (erosion and
  dilation; needs isotropic voxels: set ``resample_spacing``);
* ``contour``: supervoxel-based contour randomisation, ``n`` repetitions (supervoxels from
  SLIC on the image; each is kept with a probability given by its overlap with the mask).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.imaging.io import ImagingError
from lmmkit.imaging.radiomics.extract import Case, _as_cases, _as_settings, _stamp, _tidy, load_case
from lmmkit.imaging.radiomics.settings import RadiomicsSettings, SettingsError

__all__ = [
    "Perturbations",
    "RobustFeatureSelector",
    "perturbed_features",
    "plot_robustness",
    "robust_features",
    "robustness",
]


@dataclass(frozen=True)
class Perturbations:
    """Which perturbations to apply (0 or an empty tuple switches a type off).

    Parameters
    ----------
    noise
        Noise repetitions.
    rotation
        Rotation angles in degrees.
    translation
        Grid shifts as fractions of a voxel (combined over the three axes).
    volume
        Mask growth (+) / shrinkage (-) in mm.
    contour
        Supervoxel contour-randomisation repetitions.

    Examples
    --------
    >>> Perturbations(noise=0, rotation=(), translation=(), volume=(), contour=2).types()
    ['contour']
    """

    noise: int = 2
    rotation: tuple[float, ...] = (-10.0, 10.0)
    translation: tuple[float, ...] = (0.5,)
    volume: tuple[float, ...] = (-2.0, 2.0)
    contour: int = 2

    def types(self) -> list[str]:
        """The perturbation types switched on."""
        return [t for t in ("noise", "rotation", "translation", "volume", "contour")
                if getattr(self, t)]  # fmt: skip

    def mirp(self, kind: str) -> dict[str, Any]:
        """MIRP keywords of one perturbation type."""
        if kind == "noise":
            return {"perturbation_noise_repetitions": int(self.noise)}
        if kind == "rotation":
            return {"perturbation_rotation_angles": [float(a) for a in self.rotation]}
        if kind == "translation":
            return {"perturbation_translation_fraction": [float(t) for t in self.translation]}
        if kind == "volume":
            return {"perturbation_roi_adapt_type": "distance",
                    "perturbation_roi_adapt_size": [float(v) for v in self.volume]}  # fmt: skip
        if kind == "contour":
            return {"perturbation_randomise_roi_repetitions": int(self.contour)}
        raise ValueError(f"unknown perturbation type {kind!r}")


_VARIANT_COLUMNS = ("noise_id", "rotation", "translation_x", "translation_y", "translation_z",
                    "randomise_id", "adapt_size")  # fmt: skip


def _perturb_case(shared: tuple[RadiomicsSettings, Perturbations], case: Case) -> pd.DataFrame:
    """Worker: the baseline and every perturbation of one case, long, with type and variant."""
    from lmmkit.imaging.radiomics.mirp_backend import extract

    settings, plan = shared
    image, mask = load_case(case, settings)
    if "volume" in plan.types():
        _check_isotropic(case, settings, image.spacing)
    where = case.describe()
    parts = []
    base = extract(image, mask, settings, where=where)
    for kind in plan.types():
        pert = extract(image, mask, settings, perturbation=plan.mirp(kind), where=where)
        ids = pert[[c for c in _VARIANT_COLUMNS if c in pert.columns]].astype(str)
        variant = ids.apply(lambda r: ",".join(f"{k}={v}" for k, v in r.items()
                                               if v not in ("None", "0.0", "nan")), axis=1)  # fmt: skip
        feats = pert.drop(columns=[c for c in _VARIANT_COLUMNS if c in pert.columns])
        both = pd.concat([base.iloc[[0]], feats], ignore_index=True)
        both.insert(0, "variant", ["baseline", *[f"{kind}:{v or k}" for k, v in
                                                enumerate(variant)]])  # fmt: skip
        both.insert(0, "perturbation", kind)
        parts.append(_tidy(case, both, settings))
    return pd.concat(parts, ignore_index=True)


def perturbed_features(
    images: Any,
    masks: Any = None,
    settings: Any = None,
    *,
    perturbations: Perturbations | None = None,
    subjects: Sequence[Any] | None = None,
    sites: Sequence[Any] | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Features of every case under each perturbation, with the unperturbed baseline.

    Parameters
    ----------
    images, masks, settings, subjects, sites, scheduler, progress
        As in :func:`lmmkit.imaging.radiomics`.
    perturbations
        What to perturb (default :class:`Perturbations`).

    Returns
    -------
    pandas.DataFrame
        The tidy columns of :func:`~lmmkit.imaging.radiomics` plus ``perturbation`` (type) and
        ``variant`` (``baseline`` or the perturbed version); every type repeats the baseline.

    Raises
    ------
    SettingsError
        Mask growth/shrinkage on anisotropic voxels without ``resample_spacing``.

    Examples
    --------
    >>> from lmmkit.imaging.radiomics.simulate import simulate_lesions
    >>> man, imgs = simulate_lesions(3, shape=(16, 16, 16), spacing=(1, 1, 1))
    >>> t = perturbed_features([imgs[k] for k in man.image], [imgs[k] for k in man["mask"]],
    ...     {"families": ["stat"]}, perturbations=Perturbations(noise=0, rotation=(),
    ...     translation=(), volume=(), contour=2), progress=False)  # doctest: +SKIP
    """
    from lmmkit.parallel.executor import get_executor

    settings = _as_settings(settings)
    plan = perturbations or Perturbations()
    if not plan.types():
        raise SettingsError("no perturbation switched on (all of noise ... contour are 0/empty).")
    cases = _as_cases(images, masks, {"subject": subjects, "session": None, "reader": None,
                                      "site": sites})  # fmt: skip
    ex = get_executor(scheduler)
    out = []
    try:
        it: Iterable[pd.DataFrame] = ex.map(_perturb_case, cases, shared=(settings, plan))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(cases), desc="perturbations", unit="case")
        out = list(it)
    finally:
        ex.close()
    table = pd.concat(out, ignore_index=True)
    _stamp(table, settings)
    table.attrs["perturbations"] = {k: getattr(plan, k) for k in plan.types()}
    return table


def _check_isotropic(case: Case, settings: RadiomicsSettings, spacing: tuple[float, ...]) -> None:
    if settings.resample_spacing is not None:
        return
    if max(spacing) - min(spacing) > 1e-6 * max(spacing):
        raise SettingsError(
            f"mask growth/shrinkage (volume perturbation) needs isotropic voxels; the image has "
            f"spacing {spacing} mm {case.describe()}. Set resample_spacing (e.g. 1.0) or "
            "switch volume=() off."
        )


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC (:func:`lmmkit.concordance_correlation`) of the finite pairs; NaN where it is
    undefined for one feature (fewer than 3 pairs, a constant version), 1.0 when both versions
    are the same constant."""
    from lmmkit.errors import DataError
    from lmmkit.validation.agreement import concordance_correlation

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) >= 1 and np.ptp(x) == 0 and np.ptp(y) == 0 and np.allclose(x, y):
        return 1.0
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # the SE is not used here
            return concordance_correlation(x, y).ccc
    except DataError:
        return float("nan")


def robustness(perturbed: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """Per perturbation type and feature: ICC(1,1) with CI and Lin's CCC against the baseline.

    Parameters
    ----------
    perturbed
        From :func:`perturbed_features` (or any table with ``subject``, ``perturbation``,
        ``variant``, ``family``, ``feature``, ``value``).
    level
        Confidence level of the ICC interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``perturbation, family, feature, icc, lower, upper, ccc, n_subjects,
        n_versions``; ``icc`` is NaN (and listed) for features constant or undefined over the
        subjects.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=20)
    >>> rows = [{"subject": s, "perturbation": "noise", "variant": v, "family": "stat",
    ...          "feature": "stat_mean", "value": truth[s] + 0.05 * rng.normal()}
    ...         for s in range(20) for v in ("baseline", "n1", "n2")]
    >>> r = robustness(pd.DataFrame(rows))
    >>> bool(r["icc"].iloc[0] > 0.9 and r["ccc"].iloc[0] > 0.9)
    True
    """
    from lmmkit.validation.reliability import icc

    need = {"subject", "perturbation", "variant", "family", "feature", "value"}
    missing = need - set(perturbed.columns)
    if missing:
        raise ImagingError(f"robustness needs columns {sorted(need)}; missing {sorted(missing)}.")
    keys = [c for c in ("subject", "session", "reader") if c in perturbed.columns
            and perturbed[c].notna().any()]  # fmt: skip
    rows = []
    for (kind, family, feature), g in perturbed.groupby(["perturbation", "family", "feature"],
                                                        sort=False):  # fmt: skip
        target = g[keys].astype(str).agg("|".join, axis=1) if len(keys) > 1 else g[keys[0]]
        d = pd.DataFrame({"target": target.to_numpy(), "version": g["variant"].to_numpy(),
                          "value": g["value"].to_numpy(dtype=float)})  # fmt: skip
        wide = d.pivot_table(index="target", columns="version", values="value", aggfunc="first")
        wide = wide.dropna()
        rec = {"perturbation": kind, "family": family, "feature": feature,
               "icc": np.nan, "lower": np.nan, "upper": np.nan, "ccc": np.nan,
               "n_subjects": len(wide), "n_versions": wide.shape[1]}  # fmt: skip
        vals = wide.to_numpy()
        if (
            len(wide) >= 3
            and wide.shape[1] >= 2
            and np.ptp(vals) > 0
            and vals.std(axis=0).min() > 0
        ):
            long = wide.reset_index().melt(id_vars="target", var_name="version", value_name="v")
            with np.errstate(divide="ignore", invalid="ignore"):  # constant versions: NaN bounds
                res = icc(long, targets="target", raters="version", ratings="v", level=level)
            row = res["ICC1"]
            rec.update(icc=float(row["icc"]), lower=float(row["lower"]),
                       upper=float(row["upper"]))  # fmt: skip
            if "baseline" in wide.columns:
                others = [c for c in wide.columns if c != "baseline"]
                rec["ccc"] = float(np.nanmean([_ccc(wide["baseline"], wide[c]) for c in others]))
        rows.append(rec)
    return pd.DataFrame(rows)


def robust_features(
    table: pd.DataFrame,
    *,
    threshold: float = 0.75,
    metric: str = "lower",
    perturbations: Sequence[str] | None = None,
) -> list[str]:
    """Features whose robustness ``metric`` reaches ``threshold`` under every perturbation.

    Parameters
    ----------
    table
        From :func:`robustness`.
    threshold
        Minimum value (default 0.75: "good" reliability, Koo & Li 2016, applied to the lower
        confidence bound so that small samples do not pass by chance).
    metric
        ``lower`` (ICC's lower confidence bound), ``icc`` or ``ccc``.
    perturbations
        Types to require (default: all in the table).

    Returns
    -------
    list of str
        Robust features, in table order; a feature with NaN under any type is not robust.

    Examples
    --------
    >>> t = pd.DataFrame({"perturbation": ["noise", "noise"], "feature": ["a", "b"],
    ...                   "lower": [0.9, 0.5]})
    >>> robust_features(t)
    ['a']
    """
    if metric not in ("lower", "icc", "ccc"):
        raise ValueError(f"metric must be 'lower', 'icc' or 'ccc'; got {metric!r}.")
    t = table if perturbations is None else table[table["perturbation"].isin(perturbations)]
    ok = t.assign(_ok=t[metric].to_numpy(dtype=float) >= threshold).groupby("feature",
                                                                            sort=False)["_ok"].all()  # fmt: skip
    return [f for f, good in ok.items() if good]


class RobustFeatureSelector:
    """A scikit-learn transformer that keeps features robust on the *training* subjects only.

    Put it first in a pipeline given to :func:`lmmkit.cross_validate_sites`: in each fold
    ``fit`` sees the training rows, whose index holds the subject ids; robustness is computed
    from the perturbation rows of those subjects only, so held-out subjects never influence
    which features are kept.

    Parameters
    ----------
    perturbed
        Output of :func:`perturbed_features` for (at least) every subject in the data.
    threshold, metric
        As in :func:`robust_features`.

    Attributes
    ----------
    features_ : list of str
        Kept features (after ``fit``).
    subjects_ : list
        The subjects robustness was computed on.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline  # doctest: +SKIP
    >>> from sklearn.linear_model import LogisticRegression  # doctest: +SKIP
    >>> model = make_pipeline(RobustFeatureSelector(perturbed), LogisticRegression())  # doctest: +SKIP
    """

    def __init__(self, perturbed: pd.DataFrame, threshold: float = 0.75, metric: str = "lower"):
        self.perturbed = perturbed
        self.threshold = threshold
        self.metric = metric

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"perturbed": self.perturbed, "threshold": self.threshold, "metric": self.metric}

    def set_params(self, **params: Any) -> RobustFeatureSelector:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X: pd.DataFrame, y: Any = None) -> RobustFeatureSelector:
        if not isinstance(X, pd.DataFrame):
            raise ImagingError("RobustFeatureSelector needs a DataFrame indexed by subject.")
        subjects = [str(s) for s in X.index]
        known = set(self.perturbed["subject"].astype(str))
        missing = [s for s in subjects if s not in known]
        if missing:
            raise ImagingError(
                f"{len(missing)} training subject(s) have no perturbation rows (e.g. "
                f"{missing[:3]}); the data's index must hold the subject ids of perturbed_features."
            )
        sub = self.perturbed[self.perturbed["subject"].astype(str).isin(subjects)]
        sub = sub[sub["feature"].isin([str(c) for c in X.columns])]
        keep = robust_features(robustness(sub), threshold=self.threshold, metric=self.metric)
        if not keep:
            raise ImagingError(
                f"no feature reaches {self.metric} >= {self.threshold} on the {len(subjects)} "
                "training subjects; lower threshold= or check the perturbations."
            )
        self.features_ = keep
        self.subjects_ = subjects
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not hasattr(self, "features_"):
            raise ImagingError("RobustFeatureSelector is not fitted.")
        return X[self.features_]

    def fit_transform(self, X: pd.DataFrame, y: Any = None) -> pd.DataFrame:
        return self.fit(X, y).transform(X)


def plot_robustness(table: pd.DataFrame, *, metric: str = "icc", threshold: float | None = 0.75,
                    path: str | None = None) -> Any:  # fmt: skip
    """Box plots of feature robustness by family, one panel per perturbation type.

    Parameters
    ----------
    table
        From :func:`robustness`.
    metric
        ``icc``, ``lower`` or ``ccc``.
    threshold
        Draw this value as a dashed line (None: no line).
    path
        Save the figure here (PNG by suffix).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> t = pd.DataFrame({"perturbation": ["noise"] * 2, "family": ["stat", "cm"],
    ...                   "feature": ["a", "b"], "icc": [0.9, 0.6]})
    >>> plot_robustness(t).axes[0].get_title()
    'noise'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(table["perturbation"]))
    families = list(dict.fromkeys(table["family"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds) + 1, 4.2), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, kind in zip(axes[0], kinds):
        sub = table[table["perturbation"] == kind]
        data = [sub.loc[sub["family"] == f, metric].dropna().to_numpy() for f in families]
        ax.boxplot(data, tick_labels=families, showfliers=True)
        for k, d in enumerate(data, start=1):
            ax.plot(np.full(len(d), k) + np.random.default_rng(k).uniform(-0.15, 0.15, len(d)), d,
                    ".", alpha=0.4, color="tab:blue", markersize=3)  # fmt: skip
        if threshold is not None:
            ax.axhline(threshold, ls="--", color="tab:red", lw=1)
        ax.set_title(kind)
        ax.set_xlabel("feature family")
        ax.tick_params(axis="x", rotation=60)
    axes[0][0].set_ylabel({"icc": "ICC(1,1)", "lower": "ICC(1,1) lower 95% bound",
                           "ccc": "Lin's CCC vs baseline"}.get(metric, metric))  # fmt: skip
    lo = np.nanmin(table[metric].to_numpy(dtype=float)) if len(table) else 0.0
    axes[0][0].set_ylim(min(0.0, lo - 0.05), 1.02)
    fig.suptitle("Feature robustness to perturbations, by family")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
