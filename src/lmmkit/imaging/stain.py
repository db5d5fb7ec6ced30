"""Stain normalization of pathology tiles and the stain-batch diagnostic.

Library: torchstain (numpy backend): Macenko (2009) and Reinhard (2001) normalizers, a pure-Python
wheel whose only hard dependency is NumPy (PyTorch/TensorFlow backends are optional extras we do
not install). staintools needs spams (a compiled package without wheels for current Python);
HistomicsTK pulls large compiled dependencies. torchstain has no Vahadane normalizer (its
releases ship Macenko, multi-target Macenko and Reinhard), so Vahadane is not offered here.

Stages: fit a normalizer on a reference tile -> normalize tiles -> tile features (optical
density and stain concentrations) -> variance partition of each feature by slide batch
(:func:`lmmkit.variance_partition`) before and after: the share of variance that staining
batches explain should fall.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.imaging.io import ImagingError

__all__ = [
    "fit_stain_normalizer",
    "normalize_tiles",
    "plot_stain_tiles",
    "simulate_stain_batches",
    "stain_batch_diagnostic",
    "tile_features",
]

METHODS = ("macenko", "reinhard")


def _check_tile(tile: Any, where: str) -> np.ndarray:
    t = np.asarray(tile)
    if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8:
        raise ImagingError(
            f"{where}: a tile must be an RGB uint8 array (rows, columns, 3); got shape {t.shape} "
            f"and dtype {t.dtype}."
        )
    return t


def fit_stain_normalizer(reference: np.ndarray, *, method: str = "macenko") -> Any:
    """A torchstain normalizer fitted on a reference tile.

    Parameters
    ----------
    reference
        RGB uint8 tile whose staining the others are mapped to.
    method
        ``macenko`` or ``reinhard``.

    Returns
    -------
    object
        The fitted torchstain normalizer (``normalize_tiles`` applies it).

    Raises
    ------
    ImagingError
        Not an RGB uint8 tile, or an unknown method (Vahadane: not in torchstain).

    Examples
    --------
    >>> from skimage import data
    >>> norm = fit_stain_normalizer(data.immunohistochemistry()[:128, :128])
    """
    from torchstain.base.normalizers import MacenkoNormalizer, ReinhardNormalizer

    ref = _check_tile(reference, "reference")
    if method == "macenko":
        norm = MacenkoNormalizer(backend="numpy")
    elif method == "reinhard":
        norm = ReinhardNormalizer(backend="numpy")
    else:
        raise ImagingError(
            f"stain normalization method {method!r} is not available; use one of "
            f"{', '.join(METHODS)} (torchstain has no Vahadane)."
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        norm.fit(ref)
    norm.lmmkit_method = method
    return norm


def normalize_tiles(tiles: Sequence[np.ndarray], normalizer: Any) -> list[np.ndarray]:
    """Apply a fitted normalizer to every tile (uint8 RGB out).

    Parameters
    ----------
    tiles
        RGB uint8 tiles.
    normalizer
        From :func:`fit_stain_normalizer`.

    Returns
    -------
    list of numpy.ndarray

    Examples
    --------
    >>> from skimage import data
    >>> img = data.immunohistochemistry()
    >>> out = normalize_tiles([img[:64, :64]], fit_stain_normalizer(img[64:192, 64:192]))
    >>> out[0].shape, out[0].dtype
    ((64, 64, 3), dtype('uint8'))
    """
    out = []
    for k, tile in enumerate(tiles):
        t = _check_tile(tile, f"tile {k}")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if getattr(normalizer, "lmmkit_method", "macenko") == "macenko":
                res = normalizer.normalize(I=t, stains=False)
                res = res[0] if isinstance(res, tuple) else res
            else:
                res = normalizer.normalize(t)
        res = np.asarray(res, dtype=float)
        if res.max() <= 1.0 + 1e-6:
            res = res * 255.0
        out.append(np.clip(np.nan_to_num(res), 0, 255).astype(np.uint8))
    return out


def simulate_stain_batches(
    tile: np.ndarray,
    *,
    n_batches: int = 3,
    slides_per_batch: int = 3,
    tile_size: int = 128,
    seed: int = 0,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Stain batches made from one real tile: per batch, scaled stain concentrations.

    The tile is deconvolved into haematoxylin, eosin and DAB concentrations
    (:func:`skimage.color.rgb2hed`); each batch multiplies them by its own factors (0.6-1.4),
    each slide adds a small extra factor; the same sub-tiles (random flips and 90-degree turns) of
    every recomposed image are the slide's tiles, so batches differ in staining, not tissue.

    Parameters
    ----------
    tile
        Real RGB uint8 image (e.g. ``skimage.data.immunohistochemistry()``).
    n_batches, slides_per_batch, tile_size
        Design of the simulated set.
    seed
        Random seed.

    Returns
    -------
    tiles : list of numpy.ndarray
    design : pandas.DataFrame
        ``tile, slide, batch`` per tile, and the batch's stain factors ``h_factor``,
        ``e_factor``, ``d_factor``.

    Examples
    --------
    >>> from skimage import data
    >>> tiles, design = simulate_stain_batches(data.immunohistochemistry(), n_batches=2)
    >>> len(tiles) == len(design), sorted(design["batch"].unique())
    (True, ['batch1', 'batch2'])
    """
    from skimage.color import hed2rgb, rgb2hed

    img = _check_tile(tile, "tile")
    rng = np.random.default_rng(seed)
    hed = rgb2hed(img)
    ny, nx = img.shape[0] // tile_size, img.shape[1] // tile_size
    if ny * nx < 1:
        raise ImagingError(f"the image {img.shape} is smaller than one {tile_size}-pixel tile.")
    tiles, rows = [], []
    picks = rng.choice(ny * nx, size=min(4, ny * nx), replace=False)  # same tissue in every slide
    for b in range(n_batches):
        fb = rng.uniform(0.6, 1.4, 3)
        for s in range(slides_per_batch):
            fs = fb * rng.uniform(0.95, 1.05, 3)
            rgb = (np.clip(hed2rgb(hed * fs), 0, 1) * 255).astype(np.uint8)
            for p in picks:
                y, x = divmod(int(p), nx)
                t = rgb[y * tile_size : (y + 1) * tile_size, x * tile_size : (x + 1) * tile_size]
                t = np.rot90(t, int(rng.integers(4)))
                if rng.random() < 0.5:
                    t = t[:, ::-1]
                tiles.append(np.ascontiguousarray(t))
                rows.append({"tile": f"t{len(rows) + 1:03d}", "slide": f"b{b + 1}s{s + 1}",
                             "batch": f"batch{b + 1}", "h_factor": fb[0], "e_factor": fb[1],
                             "d_factor": fb[2]})  # fmt: skip
    return tiles, pd.DataFrame(rows)


def tile_features(tiles: Sequence[np.ndarray], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Colour and stain features of each tile (features x tiles, as variance_partition takes).

    Features: mean optical density of R, G, B; mean and 90th percentile of the haematoxylin,
    eosin and DAB concentrations (``rgb2hed``); mean L*, a*, b*.

    Parameters
    ----------
    tiles
        RGB uint8 tiles.
    names
        Column names (default ``t001``...).

    Returns
    -------
    pandas.DataFrame
        Features (rows) x tiles (columns).

    Examples
    --------
    >>> from skimage import data
    >>> tile_features([data.immunohistochemistry()[:64, :64]]).shape
    (12, 1)
    """
    from skimage.color import rgb2hed, rgb2lab

    cols = {}
    for k, tile in enumerate(tiles):
        t = _check_tile(tile, f"tile {k}")
        od = -np.log((t.astype(float) + 1.0) / 256.0)
        hed = rgb2hed(t)
        lab = rgb2lab(t)
        feats = {f"od_{c}": float(od[..., i].mean()) for i, c in enumerate("rgb")}
        for i, c in enumerate(("haematoxylin", "eosin", "dab")):
            feats[f"{c}_mean"] = float(hed[..., i].mean())
            feats[f"{c}_p90"] = float(np.percentile(hed[..., i], 90))
        feats.update({f"lab_{c}": float(lab[..., i].mean()) for i, c in enumerate("LAB")})
        cols[names[k] if names is not None else f"t{k + 1:03d}"] = feats
    return pd.DataFrame(cols)


def stain_batch_diagnostic(
    tiles: Sequence[np.ndarray],
    design: pd.DataFrame,
    reference: np.ndarray,
    *,
    methods: Sequence[str] = METHODS,
    formula: str = "~ (1 | batch)",
) -> tuple[pd.DataFrame, dict[str, list[np.ndarray]]]:
    """Variance of tile features explained by slide batch, before and after normalization.

    Parameters
    ----------
    tiles, design
        Tiles and their design (``tile``, ``batch``, optionally ``slide``), e.g. from
        :func:`simulate_stain_batches`.
    reference
        Reference tile the normalizers are fitted on.
    methods
        Normalizations to compare with the raw tiles.
    formula
        Variance-partition formula over the design columns.

    Returns
    -------
    table : pandas.DataFrame
        One row per (method, feature): the ``batch`` fraction (and any other term) from
        :func:`lmmkit.variance_partition`; method ``none`` = raw tiles.
    normalized : dict
        Method -> normalized tiles.

    Examples
    --------
    >>> # see docs/radiomics.md (stain normalization)
    """
    from lmmkit.omics.varpart import variance_partition

    if len(tiles) != len(design):
        raise ImagingError(f"{len(tiles)} tiles but {len(design)} design rows.")
    names = design["tile"].astype(str).tolist()
    samples = design.set_index(pd.Index(names))
    sets = {"none": list(tiles)}
    for m in methods:
        sets[m] = normalize_tiles(tiles, fit_stain_normalizer(reference, method=m))
    parts = []
    for m, ts in sets.items():
        feats = tile_features(ts, names)
        vp = variance_partition(formula, feats, samples, progress=False)
        vp.insert(0, "method", m)
        parts.append(vp.rename_axis("feature").reset_index())
    return pd.concat(parts, ignore_index=True), {m: t for m, t in sets.items() if m != "none"}


def plot_stain_tiles(
    tiles: Sequence[np.ndarray],
    design: pd.DataFrame,
    normalized: dict[str, list[np.ndarray]],
    *,
    per_batch: int = 2,
    path: str | None = None,
) -> Any:
    """Tiles before and after each normalization, ``per_batch`` tiles from every batch.

    Parameters
    ----------
    tiles, design
        Raw tiles and their design.
    normalized
        Method -> normalized tiles (from :func:`stain_batch_diagnostic`).
    per_batch
        Tiles shown per batch.
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

    idx = [i for b in design["batch"].unique()
           for i in np.flatnonzero(design["batch"].to_numpy() == b)[:per_batch]]  # fmt: skip
    rows = {"raw": tiles, **normalized}
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.6 * len(idx), 1.8 * len(rows)),
                             squeeze=False)  # fmt: skip
    for r, (name, ts) in enumerate(rows.items()):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(ts[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(design["batch"].iloc[i]), fontsize=8)
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle("Stain batches before (raw) and after normalization")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
