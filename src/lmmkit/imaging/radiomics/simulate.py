"""Synthetic lesions with known effects: the test bed for robustness, harmonization and habitats.

Each subject has one lesion (an ellipsoid with a lumpy border) in a noisy background. The
lesion's grey levels carry the *lesion signal*: ``label = 1`` lesions are brighter and more
heterogeneous (a mixture of two textures, which also makes two habitats). Each site's scanner
adds a *scanner effect*: a gain and offset on intensities, its own noise level and blur. Rescans
(sessions) redraw the noise; readers perturb the mask border. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.imaging.io import Image, image_from_array

__all__ = ["SiteEffect", "simulate_lesions"]


@dataclass(frozen=True)
class SiteEffect:
    """A scanner: ``gain * x + offset``, then Gaussian noise ``noise`` and blur ``blur`` (voxels)."""

    gain: float = 1.0
    offset: float = 0.0
    noise: float = 10.0
    blur: float = 0.0


DEFAULT_SITES = {
    "siteA": SiteEffect(1.0, 0.0, 8.0, 0.0),
    "siteB": SiteEffect(1.25, 40.0, 14.0, 0.6),
    "siteC": SiteEffect(0.85, -30.0, 10.0, 0.3),
}


def _lesion(rng: np.random.Generator, shape: tuple[int, int, int], radius: float) -> np.ndarray:
    from scipy import ndimage

    zz, yy, xx = np.indices(shape, dtype=float)
    c = (np.asarray(shape) - 1) / 2 + rng.uniform(-1.5, 1.5, 3)
    axes = radius * rng.uniform(0.8, 1.2, 3)
    r = np.sqrt(((zz - c[0]) / axes[0]) ** 2 + ((yy - c[1]) / axes[1]) ** 2
                + ((xx - c[2]) / axes[2]) ** 2)  # fmt: skip
    bumps = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    bumps /= np.abs(bumps).max() + 1e-12
    return r + 0.15 * bumps < 1.0


def simulate_lesions(
    n_subjects: int = 24,
    *,
    sites: dict[str, SiteEffect] | None = None,
    shape: tuple[int, int, int] = (32, 32, 32),
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    sessions: int = 1,
    readers: int = 1,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Image]]:
    """Simulate lesion images and masks from several sites with known effects.

    Parameters
    ----------
    n_subjects
        Subjects, assigned to sites in turn; half have ``label = 1``.
    sites
        Site name -> :class:`SiteEffect` (default: three scanners that differ in gain, offset,
        noise and blur).
    shape, spacing
        Volume shape ``(z, y, x)`` and voxel size in mm.
    sessions
        Scans per subject (rescans redraw scanner noise and a sub-voxel shift).
    readers
        Segmentations per scan (readers 2.. grow or shrink the border by one voxel here and there).
    seed
        Random seed.

    Returns
    -------
    manifest : pandas.DataFrame
        One row per (subject, session, reader): ``subject, session, reader, site, label,
        image, mask`` where ``image``/``mask`` are keys into ``images``.
    images : dict
        Key -> :class:`~lmmkit.imaging.io.Image` (images float, masks boolean).

    Examples
    --------
    >>> manifest, images = simulate_lesions(4, shape=(16, 16, 16))
    >>> manifest.loc[0, "subject"], manifest.loc[0, "site"], int(manifest.loc[0, "label"])
    ('s01', 'siteA', 0)
    """
    from scipy import ndimage

    sites = dict(DEFAULT_SITES if sites is None else sites)
    names = list(sites)
    rng = np.random.default_rng(seed)
    rows, store = [], {}
    for i in range(n_subjects):
        subject = f"s{i + 1:02d}"
        site = names[i % len(names)]
        label = int((i // len(names)) % 2)
        eff = sites[site]
        radius = min(shape) * rng.uniform(0.25, 0.33)
        mask = _lesion(rng, shape, radius)
        texture_a = ndimage.gaussian_filter(rng.normal(size=shape), 1.0)
        texture_a *= 15.0 / texture_a.std()
        truth = np.full(shape, 20.0)  # background tissue
        truth[mask] = 100.0 + texture_a[mask]
        if label:
            # a second, brighter and coarser sub-region: the "habitat" of the positive lesions
            part = ndimage.gaussian_filter(rng.normal(size=shape), 3.0) > 0
            texture_b = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
            texture_b *= 30.0 / texture_b.std()
            sub = mask & part
            truth[sub] = 160.0 + texture_b[sub]
        for s in range(sessions):
            srng = np.random.default_rng([seed, i, s])
            scan = ndimage.shift(truth, srng.uniform(-0.3, 0.3, 3), order=1, mode="nearest")
            if eff.blur > 0:
                scan = ndimage.gaussian_filter(scan, eff.blur)
            scan = eff.gain * scan + eff.offset + srng.normal(0, eff.noise, shape)
            key = f"{subject}_ses{s + 1}"
            store[key] = image_from_array(np.round(scan), spacing=spacing,
                                          source=f"<simulated {key}>")  # fmt: skip
            for r in range(readers):
                m = mask
                if r > 0:
                    rrng = np.random.default_rng([seed, i, s, r])
                    grown = ndimage.binary_dilation(mask) if r % 2 else ndimage.binary_erosion(mask)
                    pick = rrng.random(shape) < 0.5
                    m = np.where(pick, grown, mask)
                mkey = f"{key}_r{r + 1}"
                store[mkey] = store[key].with_array(m.astype(bool))
                rows.append({"subject": subject, "session": f"ses{s + 1}", "reader": f"r{r + 1}",
                             "site": site, "label": label, "image": key, "mask": mkey})  # fmt: skip
    return pd.DataFrame(rows), store
