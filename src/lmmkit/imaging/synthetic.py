"""A synthetic multi-site imaging cohort with a known ground truth.

Each subject has one lesion in a 3-D volume seen in two (or more) sequences, scanned at a site
whose scanner distorts the image; outcomes (binary and survival) are driven by the lesion's
properties and a clinical covariate through known coefficients.

Generative model (per subject i at site s)
------------------------------------------
* **Lesion size**: ``log r_i ~ N(log r0 + size_shift_s, size_sd)``; the lesion is an ellipsoid
  with radii ``r_i * a_k`` (``a_k`` in [0.75, 1.25], random orientation of axes) whose boundary
  is perturbed by smooth noise of amplitude ``irregularity`` (shape varies from round to lobular).
  ``z_size = (log r_i - log r0) / size_sd``.
* **Heterogeneity** ``h_i ~ U(0, 1)``: the fraction of the lesion's radius taken by a necrotic
  core (dark on the first sequence, bright on the second) and the amplitude of a fine texture
  inside the lesion. ``z_het = (h_i - 1/2) / sqrt(1/12)``.
* **Clinical**: ``age ~ N(60 + age_shift_s, 10)``, ``z_age = (age - 60) / 10``; ``sex ~ Bernoulli(1/2)``
  (no effect: a null covariate).
* **Linear predictor**: ``eta = beta_size z_size + beta_het z_het + beta_age z_age``.
  Binary outcome ``y ~ Bernoulli(expit(beta0 + eta))``; survival time
  ``T ~ Exponential(rate = base_hazard * exp(eta))``, censored by an independent
  ``Exponential(censor_rate)`` and by the end of follow-up, times rounded to
  ``time_resolution`` (ties, as in real follow-up data).
* **Scanner** of site s (:class:`ScannerSpec`): the clean image ``x`` becomes
  ``gain * blur(x * bias_field) + offset + noise``, with a smooth multiplicative bias field
  of amplitude ``bias`` and Gaussian noise of SD ``noise``.
* **Rescans**: ``n_rescans`` acquisitions of the same lesion on the same scanner, each with its
  own noise, bias field orientation and a shift of up to one voxel (test-retest for ICC).

Every quantity above is in :attr:`SyntheticCohort.table` and :attr:`SyntheticCohort.truth`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from lmmkit.errors import DataError

__all__ = ["ScannerSpec", "SyntheticCohort", "default_scanners", "make_multisite"]

_MIN_SIDE = 16


@dataclass(frozen=True)
class ScannerSpec:
    """The acquisition effects of one site's scanner.

    Parameters
    ----------
    name : str
        Site (and scanner) label.
    gain, offset : float
        Intensity scaling ``gain * x + offset``.
    noise : float
        SD of additive Gaussian noise (tissue has intensity about 1).
    blur : float
        SD (voxels) of the Gaussian point-spread function.
    bias : float
        Amplitude of the smooth multiplicative bias field (0 = none).
    size_shift : float
        Shift of the site's mean log lesion radius (case mix: a non-IID site).
    age_shift : float
        Shift of the site's mean age in years (case mix).

    Examples
    --------
    >>> ScannerSpec("A", gain=1.2).gain
    1.2
    """

    name: str
    gain: float = 1.0
    offset: float = 0.0
    noise: float = 0.05
    blur: float = 0.0
    bias: float = 0.0
    size_shift: float = 0.0
    age_shift: float = 0.0


def default_scanners(n_sites: int = 4) -> tuple[ScannerSpec, ...]:
    """``n_sites`` scanners of increasing distortion; the last one is the strongly shifted
    scanner used as the held-out site in the adaptation and validation studies.

    Parameters
    ----------
    n_sites : int, default 4
        Number of sites (at least 2).

    Returns
    -------
    tuple of ScannerSpec

    Examples
    --------
    >>> [s.name for s in default_scanners(3)]
    ['site1', 'site2', 'site3']
    """
    if int(n_sites) < 2:
        raise DataError(f"default_scanners: n_sites={n_sites!r}; a multi-site cohort needs >= 2.")
    n = int(n_sites)
    out = []
    for k in range(n):
        t = k / (n - 1)
        out.append(
            ScannerSpec(
                name=f"site{k + 1}",
                gain=1.0 + 0.6 * t,
                offset=0.3 * t,
                noise=0.05 + 0.10 * t,
                blur=0.8 * t,
                bias=0.25 * t,
                size_shift=0.15 * (t - 0.5),
                age_shift=16.0 * (t - 0.5),
            )
        )
    return tuple(out)


@dataclass(frozen=True, eq=False)
class SyntheticCohort:
    """Images, masks and the subject table of a synthetic multi-site cohort.

    Attributes
    ----------
    images : ndarray, shape (n, n_sequences, D, H, W), float32
        One row per acquisition (subject x rescan), channels are sequences.
    masks : ndarray, shape (n, D, H, W), uint8
        The true lesion mask of each acquisition (moved with its rescan shift).
    table : DataFrame
        One row per acquisition: ``image_id``, ``subject``, ``rescan``, ``site``, ``scanner``,
        ``age``, ``sex``, ``radius``, ``heterogeneity``, ``lesion_voxels``, ``z_size``,
        ``z_het``, ``z_age``, ``eta``, ``y`` (binary), ``time``, ``event``.
    sequences : tuple of str
    spacing : tuple of float
        Voxel size (mm) along (D, H, W).
    truth : dict
        The generating coefficients (``beta0``, ``beta_size``, ``beta_het``, ``beta_age``,
        ``base_hazard``, ...).
    scanners : tuple of ScannerSpec
    """

    images: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    sequences: tuple[str, ...]
    spacing: tuple[float, float, float]
    truth: dict[str, float]
    scanners: tuple[ScannerSpec, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, rows: Any) -> SyntheticCohort:
        """The cohort restricted to ``rows`` (a boolean mask or integer positions).

        Examples
        --------
        >>> c = make_multisite(2, shape=(16, 16, 16), seed=0)
        >>> len(c.subset(c.table["site"] == "site1"))
        2
        """
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return SyntheticCohort(
            images=self.images[idx],
            masks=self.masks[idx],
            table=self.table.iloc[idx].reset_index(drop=True),
            sequences=self.sequences,
            spacing=self.spacing,
            truth=self.truth,
            scanners=self.scanners,
        )

    def first_scans(self) -> SyntheticCohort:
        """Only the first acquisition (``rescan == 0``) of every subject."""
        return self.subset(self.table["rescan"].to_numpy() == 0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    sd = f.std()
    return f / sd if sd > 0 else f


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    if amplitude == 0:
        return np.ones(shape)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    lin = sum(d * g for d, g in zip(direction, grids))
    quad = sum(g * g for g in grids) / 3.0
    return 1.0 + amplitude * (0.7 * lin + 0.3 * (quad - quad.mean()))


def _lesion(
    rng: np.random.Generator, shape: tuple[int, int, int], radius: float, het: float,
    irregularity: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A lesion mask and its normalized radial coordinate (< 1 inside)."""
    axes = radius * rng.uniform(0.75, 1.25, 3)
    margin = int(np.ceil(axes.max() * (1 + irregularity))) + 2
    lo = np.full(3, margin)
    hi = np.array(shape) - margin
    centre = np.where(hi > lo, rng.uniform(lo, np.maximum(hi, lo + 1)), np.array(shape) / 2)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    grids = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    local = (grids - centre) @ q
    d = np.sqrt(((local / axes) ** 2).sum(-1))
    d = d + irregularity * _smooth_noise(rng, shape, 2.0) * np.clip(d, 0, 1.5)
    mask = d < 1.0
    if not mask.any():  # a lesion of at least one voxel
        mask[tuple(np.round(centre).astype(int))] = True
        d[tuple(np.round(centre).astype(int))] = 0.0
    return mask, d


def _clean_images(
    rng: np.random.Generator, shape: tuple[int, int, int], mask: np.ndarray, d: np.ndarray,
    het: float, n_sequences: int,
) -> np.ndarray:  # fmt: skip
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = (sum(g * g for g in grids) < 0.95).astype(float)
    tissue = body * (1.0 + 0.08 * _smooth_noise(rng, shape, 3.0))
    texture = _smooth_noise(rng, shape, 0.7)
    core = mask & (d < 0.85 * het)
    out = np.empty((n_sequences, *shape))
    for c in range(n_sequences):
        img = tissue.copy()
        if c % 2 == 0:  # T1-like: bright rim, dark necrotic core
            img[mask] = 1.9 + 0.35 * het * texture[mask]
            img[core] = 0.9
        else:  # T2-like: moderately bright lesion, very bright core
            img[mask] = 1.5 + 0.35 * het * texture[mask]
            img[core] = 2.6
        out[c] = img
    return out


def _acquire(
    rng: np.random.Generator, clean: np.ndarray, sc: ScannerSpec, shift: np.ndarray
) -> np.ndarray:
    out = np.empty_like(clean)
    field_ = _bias_field(rng, clean.shape[1:], sc.bias)
    for c in range(clean.shape[0]):
        x = np.roll(clean[c], tuple(int(s) for s in shift), axis=(0, 1, 2)) * field_
        if sc.blur > 0:
            x = ndimage.gaussian_filter(x, sc.blur)
        out[c] = sc.gain * x + sc.offset + sc.noise * rng.standard_normal(x.shape)
    return out


def make_multisite(
    n_per_site: int | dict[str, int] = 30,
    *,
    scanners: tuple[ScannerSpec, ...] | list[ScannerSpec] | None = None,
    shape: tuple[int, int, int] = (32, 32, 32),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n_sequences: int = 2,
    n_rescans: int = 1,
    r0: float | None = None,
    size_sd: float = 0.25,
    irregularity: float = 0.25,
    beta0: float = 0.0,
    beta_size: float = 1.2,
    beta_het: float = 1.2,
    beta_age: float = 0.5,
    base_hazard: float = 0.05,
    censor_rate: float = 0.02,
    follow_up: float = 60.0,
    time_resolution: float = 1.0,
    seed: int = 0,
) -> SyntheticCohort:
    """Simulate a multi-site imaging cohort (see the module docstring for the model).

    Parameters
    ----------
    n_per_site : int or dict
        Subjects per site (one number for all, or ``{site name: count}``).
    scanners : sequence of ScannerSpec, optional
        One per site; default :func:`default_scanners` (4 sites).
    shape : (D, H, W)
        Volume size in voxels (each side >= 16).
    spacing : (float, float, float)
        Voxel size in mm, recorded with the images.
    n_sequences : int, default 2
        Sequences (channels); even-numbered ones are T1-like, odd ones T2-like.
    n_rescans : int, default 1
        Acquisitions per subject (>= 2 gives test-retest pairs).
    r0, size_sd, irregularity :
        Median lesion radius in voxels (default ``min(shape) / 8``), SD of the log radius,
        boundary irregularity.
    beta0, beta_size, beta_het, beta_age :
        Outcome coefficients on the standardized scale.
    base_hazard, censor_rate, follow_up, time_resolution :
        Survival outcome: hazard at ``eta = 0`` (per month), censoring hazard, end of
        follow-up and the rounding of times (creates ties).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the cohort is a function of the arguments.

    Returns
    -------
    SyntheticCohort

    Raises
    ------
    DataError
        A side shorter than 16 voxels, a site with no subjects, or non-positive spacing.

    Examples
    --------
    >>> c = make_multisite(3, shape=(16, 16, 16), n_rescans=2, seed=1)
    >>> c.images.shape
    (24, 2, 16, 16, 16)
    >>> sorted(c.table["site"].unique())
    ['site1', 'site2', 'site3', 'site4']
    """
    scs = tuple(scanners) if scanners is not None else default_scanners(4)
    if not scs:
        raise DataError("make_multisite: scanners is empty; give at least one ScannerSpec.")
    names = [s.name for s in scs]
    if len(set(names)) != len(names):
        raise DataError(f"make_multisite: scanner names must be unique; got {names}.")
    shape = tuple(int(v) for v in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < _MIN_SIDE:
        raise DataError(
            f"make_multisite: shape={shape} must be three sides of at least {_MIN_SIDE} voxels."
        )
    sp = tuple(float(v) for v in spacing)
    if len(sp) != 3 or min(sp) <= 0:
        raise DataError(f"make_multisite: spacing={spacing!r} must be three positive numbers.")
    counts = (
        {n: int(n_per_site[n]) for n in names if n in n_per_site}
        if isinstance(n_per_site, dict)
        else {n: int(n_per_site) for n in names}
    )
    for n in names:
        if counts.get(n, 0) < 1:
            raise DataError(
                f"make_multisite: site {n!r} has {counts.get(n, 0)} subjects; give every "
                "scanner at least one subject (n_per_site)."
            )
    if int(n_sequences) < 1 or int(n_rescans) < 1:
        raise DataError("make_multisite: n_sequences and n_rescans must be >= 1.")
    rng = np.random.default_rng(seed)
    r0 = float(r0) if r0 is not None else min(shape) / 8.0
    rows, images, masks = [], [], []
    subject = 0
    for sc in scs:
        for _ in range(counts[sc.name]):
            log_r = np.log(r0) + sc.size_shift + size_sd * rng.standard_normal()
            het = float(rng.uniform())
            age = float(60 + sc.age_shift + 10 * rng.standard_normal())
            sex = int(rng.uniform() < 0.5)
            radius = float(np.exp(np.clip(log_r, np.log(1.5), np.log(min(shape) / 4))))
            mask, d = _lesion(rng, shape, radius, het, irregularity)  # type: ignore[arg-type]
            clean = _clean_images(rng, shape, mask, d, het, int(n_sequences))  # type: ignore[arg-type]
            z = {
                "z_size": (log_r - np.log(r0)) / size_sd,
                "z_het": (het - 0.5) / np.sqrt(1 / 12),
                "z_age": (age - 60) / 10,
            }
            eta = beta_size * z["z_size"] + beta_het * z["z_het"] + beta_age * z["z_age"]
            y = int(rng.uniform() < 1 / (1 + np.exp(-(beta0 + eta))))
            t_event = rng.exponential(1 / (base_hazard * np.exp(eta)))
            t_cens = min(rng.exponential(1 / censor_rate), follow_up)
            t = min(t_event, t_cens)
            t = max(time_resolution, np.ceil(t / time_resolution) * time_resolution)
            for k in range(int(n_rescans)):
                shift = np.zeros(3, int) if k == 0 else rng.integers(-1, 2, 3)
                images.append(_acquire(rng, clean, sc, shift).astype(np.float32))
                masks.append(np.roll(mask, tuple(int(s) for s in shift), axis=(0, 1, 2)))
                rows.append(
                    {
                        "image_id": f"s{subject:04d}_r{k}",
                        "subject": f"s{subject:04d}",
                        "rescan": k,
                        "site": sc.name,
                        "scanner": sc.name,
                        "age": age,
                        "sex": sex,
                        "radius": radius,
                        "heterogeneity": het,
                        "lesion_voxels": int(mask.sum()),
                        **z,
                        "eta": float(eta),
                        "y": y,
                        "time": float(t),
                        "event": int(t_event <= t_cens),
                    }
                )
            subject += 1
    seqs = tuple(("T1", "T2")[c % 2] + (f"_{c // 2}" if c >= 2 else "") for c in range(n_sequences))
    truth = {
        "beta0": beta0, "beta_size": beta_size, "beta_het": beta_het, "beta_age": beta_age,
        "beta_sex": 0.0, "base_hazard": base_hazard, "censor_rate": censor_rate,
        "follow_up": follow_up, "r0": r0, "size_sd": size_sd,
    }  # fmt: skip
    return SyntheticCohort(
        images=np.stack(images),
        masks=np.stack(masks).astype(np.uint8),
        table=pd.DataFrame(rows),
        sequences=seqs,
        spacing=sp,  # type: ignore[arg-type]
        truth={k: float(v) for k, v in truth.items()},
        scanners=scs,
    )
