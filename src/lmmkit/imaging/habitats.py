"""Habitats: sub-regions of a lesion found by clustering its voxels across sequences.

Stages: voxel features (each sequence standardized per subject over the whole image, optionally
with local mean and SD in a 3 x 3 x 3 neighbourhood) -> a Gaussian mixture (or k-means) fitted on
the lesion voxels of the *training* subjects only, the number of habitats chosen by BIC (mixture)
or silhouette (k-means) -> habitat maps of any subject -> per subject: habitat volume fractions
and per-habitat features (mean standardized intensity per sequence; optionally IBSI features
per habitat through :func:`lmmkit.imaging.radiomics`) as a tidy frame.

Habitats are numbered 1..k by increasing mean of the first sequence, so labels are stable
across refits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.imaging.io import Image, ImagingError, check_pair

__all__ = ["HabitatModel", "fit_habitats", "habitat_table", "plot_habitats"]

Subject = tuple[Sequence[Image], Image]  # (co-registered sequences, lesion mask)


def _voxel_features(
    sequences: Sequence[Image], mask: Image, local: bool, subject: str
) -> np.ndarray:
    from scipy import ndimage

    if not sequences:
        raise ImagingError(f"subject {subject!r} has no image sequences.")
    cols = []
    for k, img in enumerate(sequences):
        if img.shape != sequences[0].shape:
            raise ImagingError(
                f"sequence {k} of subject {subject!r} has shape {img.shape}, sequence 0 "
                f"{sequences[0].shape}: co-register the sequences first."
            )
        check_pair(img, mask, subject=subject)
        a = np.asarray(img.array, dtype=float)
        sd = a.std()
        z = (a - a.mean()) / (sd if sd > 0 else 1.0)
        cols.append(z[mask.array])
        if local:
            mean = ndimage.uniform_filter(z, 3)
            sq = ndimage.uniform_filter(z * z, 3)
            cols.append(mean[mask.array])
            cols.append(np.sqrt(np.maximum(sq - mean**2, 0))[mask.array])
    return np.column_stack(cols)


@dataclass(frozen=True, eq=False)
class HabitatModel:
    """A fitted habitat model (apply it with :meth:`predict`).

    Attributes
    ----------
    estimator
        The fitted scikit-learn GaussianMixture or KMeans.
    n_habitats
        Chosen number of habitats.
    criterion
        Table of the criterion per candidate number (``k``, ``bic`` or ``silhouette``).
    order
        Estimator cluster index for habitats 1..k.
    local
        Whether local mean/SD features were used.
    train_subjects
        Subjects whose voxels fitted the model.
    """

    estimator: Any
    n_habitats: int
    criterion: pd.DataFrame
    order: tuple[int, ...]
    local: bool
    train_subjects: tuple[str, ...]

    def predict(self, sequences: Sequence[Image], mask: Image, *, subject: str = "?") -> Image:
        """Habitat map of one subject: 0 outside the mask, 1..k inside.

        Examples
        --------
        >>> # see fit_habitats
        """
        x = _voxel_features(sequences, mask, self.local, subject)
        raw = self.estimator.predict(x)
        relabel = np.zeros(self.n_habitats, dtype=int)
        relabel[list(self.order)] = np.arange(1, self.n_habitats + 1)
        out = np.zeros(mask.shape, dtype=np.int16)
        out[mask.array] = relabel[raw]
        return mask.with_array(out, habitats=str(self.n_habitats))


def fit_habitats(
    train: Mapping[str, Subject],
    *,
    n_habitats: int | Sequence[int] = (2, 3, 4, 5),
    method: str = "gmm",
    local: bool = False,
    max_voxels: int = 20000,
    seed: int = 0,
) -> HabitatModel:
    """Fit habitats on the lesion voxels of training subjects.

    Parameters
    ----------
    train
        Subject -> (list of co-registered sequence images, lesion mask). Only these voxels fit
        the model: pass training subjects only.
    n_habitats
        A number, or candidates chosen among by the criterion: lowest BIC for ``gmm``, highest
        silhouette (on at most 5,000 voxels) for ``kmeans``.
    method
        ``gmm`` (full-covariance Gaussian mixture) or ``kmeans``.
    local
        Add local mean and SD (3 x 3 x 3) of each standardized sequence to the voxel features.
    max_voxels
        Subsample the pooled training voxels to at most this many (seeded).
    seed
        Random seed.

    Returns
    -------
    HabitatModel

    Raises
    ------
    ImagingError
        No subjects, mismatched sequences, fewer voxels than habitats.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.imaging.io import image_from_array
    >>> rng = np.random.default_rng(0)
    >>> a = np.where(np.arange(8)[None, None, :] < 4, 0.0, 5.0) + rng.normal(0, .3, (4, 8, 8))
    >>> img = image_from_array(a, spacing=(1, 1, 1)); m = img.with_array(np.ones(a.shape, bool))
    >>> model = fit_habitats({"s1": ([img], m)}, n_habitats=(2, 3))
    >>> model.n_habitats
    2
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    if not train:
        raise ImagingError("fit_habitats needs at least one training subject.")
    if method not in ("gmm", "kmeans"):
        raise ImagingError(f"method must be 'gmm' or 'kmeans'; got {method!r}.")
    x = np.vstack([_voxel_features(seqs, m, local, str(s)) for s, (seqs, m) in train.items()])
    rng = np.random.default_rng(seed)
    if len(x) > max_voxels:
        x = x[rng.choice(len(x), max_voxels, replace=False)]
    candidates = [int(n_habitats)] if np.isscalar(n_habitats) else [int(k) for k in n_habitats]
    if len(x) < 2 * max(candidates):
        raise ImagingError(f"{len(x)} training voxels are too few for {max(candidates)} habitats.")
    rows, fitted = [], {}
    for k in candidates:
        if method == "gmm":
            est = GaussianMixture(k, covariance_type="full", random_state=seed, n_init=2).fit(x)
            rows.append({"k": k, "bic": float(est.bic(x))})
        else:
            est = KMeans(k, random_state=seed, n_init=4).fit(x)
            sub = x if len(x) <= 5000 else x[rng.choice(len(x), 5000, replace=False)]
            score = silhouette_score(sub, est.predict(sub)) if k > 1 else np.nan
            rows.append({"k": k, "silhouette": float(score)})
        fitted[k] = est
    crit = pd.DataFrame(rows)
    if len(candidates) == 1:
        best = candidates[0]
    elif method == "gmm":
        best = int(crit.loc[crit["bic"].idxmin(), "k"])
    else:
        best = int(crit.loc[crit["silhouette"].idxmax(), "k"])
    est = fitted[best]
    centers = est.means_ if method == "gmm" else est.cluster_centers_
    order = tuple(int(i) for i in np.argsort(centers[:, 0]))
    return HabitatModel(est, best, crit, order, local, tuple(str(s) for s in train))


def habitat_table(
    model: HabitatModel,
    subjects: Mapping[str, Subject],
    *,
    settings: Any = None,
    design: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Image]]:
    """Habitat fractions and per-habitat features of every subject, as a tidy frame.

    Parameters
    ----------
    model
        From :func:`fit_habitats`.
    subjects
        Subject -> (sequences, mask), training or test.
    settings
        If given, IBSI features of the first sequence inside each habitat are added through
        :func:`lmmkit.imaging.radiomics` with these settings (habitats under 2 voxels skipped and
        counted in ``attrs['skipped']``).
    design
        Optional table indexed by subject with ``session``, ``reader``, ``site`` columns.

    Returns
    -------
    table : pandas.DataFrame
        Tidy columns ``subject, session, reader, site, family, feature, value, settings_id``
        with family ``habitat`` (``habitat{h}_fraction``, ``habitat{h}_seq{j}_mean``) and the
        per-habitat radiomics (feature names prefixed ``habitat{h}_``).
    maps : dict
        Subject -> habitat map.

    Examples
    --------
    >>> # see docs/radiomics.md
    """
    from lmmkit.imaging.radiomics.extract import Case, radiomics

    rows, maps, cases, skipped = [], {}, [], []
    for s, (seqs, m) in subjects.items():
        hmap = model.predict(seqs, m, subject=str(s))
        maps[str(s)] = hmap
        inside = hmap.array[m.array]
        for h in range(1, model.n_habitats + 1):
            sel = hmap.array == h
            rows.append((s, f"habitat{h}_fraction", float(np.mean(inside == h))))
            for j, img in enumerate(seqs):
                a = np.asarray(img.array, float)
                z = (a - a.mean()) / (a.std() or 1.0)
                rows.append((s, f"habitat{h}_seq{j + 1}_mean",
                             float(z[sel].mean()) if sel.any() else np.nan))  # fmt: skip
            if settings is not None:
                if sel.sum() >= 2:
                    cases.append((h, Case(seqs[0], m.with_array(sel), str(s))))
                else:
                    skipped.append((str(s), h))
    cols = ["subject", "session", "reader", "site", "family", "feature", "value", "settings_id"]
    table = pd.DataFrame(rows, columns=["subject", "feature", "value"])
    table = table.assign(session=None, reader=None, site=None, family="habitat", settings_id="")
    parts = [table[cols]]
    for h in range(1, model.n_habitats + 1):
        hc = [c for k, c in cases if k == h]
        if hc:
            t = radiomics([c.image for c in hc], [c.mask for c in hc], settings,
                          subjects=[c.subject for c in hc], progress=False)  # fmt: skip
            parts.append(t.assign(feature=f"habitat{h}_" + t["feature"])[cols])
    table = pd.concat(parts, ignore_index=True)
    if design is not None:
        for col in ("session", "reader", "site"):
            if col in design.columns:
                table[col] = design[col].reindex(table["subject"]).to_numpy()
    table.attrs["n_habitats"] = model.n_habitats
    table.attrs["skipped"] = skipped
    return table, maps


def plot_habitats(
    subjects: Mapping[str, Subject],
    maps: Mapping[str, Image],
    *,
    title: str = "Habitat maps",
    path: str | None = None,
) -> Any:
    """Habitat maps over the first sequence, the lesion's largest slice per subject.

    Parameters
    ----------
    subjects
        Subject -> (sequences, mask).
    maps
        Subject -> habitat map (from :func:`habitat_table`).
    title
        Figure title.
    path
        Save the figure here.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> # see docs/radiomics.md
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    names = [s for s in subjects if s in maps]
    n = len(names)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows), squeeze=False)
    k = max(int(maps[s].array.max()) for s in names)
    cmap = ListedColormap(plt.get_cmap("tab10").colors[:k])
    for ax, s in zip(axes.ravel(), names):
        seqs, m = subjects[s]
        z = int(np.argmax(m.array.sum(axis=(1, 2))))
        ax.imshow(seqs[0].array[z], cmap="gray")
        h = maps[s].array[z].astype(float)
        ax.imshow(np.ma.masked_where(h == 0, h), cmap=cmap, vmin=0.5, vmax=k + 0.5, alpha=0.55)
        ax.contour(m.array[z], levels=[0.5], colors="yellow", linewidths=0.8)
        ax.set_title(f"{s} (slice {z})", fontsize=9)
        ax.set_xlabel("x (voxel)")
        ax.set_ylabel("y (voxel)")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(k)]
    fig.legend(handles, [f"habitat {i + 1}" for i in range(k)], loc="lower center", ncol=k)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
