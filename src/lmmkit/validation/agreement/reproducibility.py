"""Repeatability and reproducibility across scanners or sites from the crossed mixed model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.validation._checks import as_finite_scores
from lmmkit.validation.agreement._common import _check_level, _column

__all__ = ["Reproducibility", "reproducibility"]


@dataclass(frozen=True, eq=False)
class Reproducibility:
    """Variance components of ``value ~ 1 + (1 | subject) + (1 | site)`` and the derived
    repeatability and reproducibility standard deviations and coefficients, with CIs.

    ``components`` rows: ``subject``, ``site``, ``residual`` (columns ``variance, sd,
    sd_low, sd_high``: profile CIs); ``summary`` rows ``repeatability_sd``,
    ``reproducibility_sd``, ``repeatability_coefficient``, ``reproducibility_coefficient``,
    ``icc_subject`` (columns ``estimate, ci_low, ci_high``: bootstrap CIs, NaN when
    ``n_boot=0``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import reproducibility
    >>> rng = np.random.default_rng(2)
    >>> d = pd.DataFrame([(f"s{i}", f"scanner{j}") for i in range(10) for j in range(3)],
    ...                  columns=["subject", "scanner"])
    >>> d["value"] = (rng.normal(0, 3, 10)[d.index // 3] + rng.normal(0, 1, 3)[d.index % 3]
    ...               + rng.normal(0, 0.5, len(d)))
    >>> res = reproducibility(d, value="value", subject="subject", site="scanner", n_boot=0)
    >>> (res.n, res.n_subjects, res.n_sites)
    (30, 10, 3)
    >>> s = res.summary["estimate"]
    >>> bool(s["repeatability_sd"] <= s["reproducibility_sd"])
    True
    """

    components: pd.DataFrame
    summary: pd.DataFrame
    n: int
    n_subjects: int
    n_sites: int
    level: float
    n_boot: int
    fit: Any = field(repr=False)


def _coefficients(s_subject, s_site, s_e):
    s_subject, s_site, s_e = (np.asarray(v, dtype=float) for v in (s_subject, s_site, s_e))
    k = stats.norm.ppf(0.975) * np.sqrt(2.0)
    repro = np.sqrt(s_site**2 + s_e**2)
    total = s_subject**2 + s_site**2 + s_e**2
    return {
        "repeatability_sd": s_e,
        "reproducibility_sd": repro,
        "repeatability_coefficient": k * s_e,
        "reproducibility_coefficient": k * repro,
        "icc_subject": s_subject**2 / total,
    }


def reproducibility(
    data: pd.DataFrame,
    *,
    value: str,
    subject: str,
    site: str,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> Reproducibility:
    """Reproducibility of a quantitative biomarker across scanners or sites (QIBA).

    Fits ``value ~ 1 + (1 | subject) + (1 | site)`` (crossed) by REML with lmmkit.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per measurement (replicates allowed).
    value, subject, site : str
        Columns of the measurement, the subject (or phantom) and the scanner/site.
    level : float
        Confidence level.
    n_boot : int
        Parametric-bootstrap replicates for the CIs of the coefficients (0: none).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    Reproducibility

    Raises
    ------
    DataError
        Missing columns, fewer than 2 subjects or sites, no subject measured on 2 sites.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import reproducibility
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame([(f"s{i}", f"site{j}") for i in range(12) for j in range(3)],
    ...                  columns=["subject", "site"])
    >>> d["value"] = (rng.normal(0, 3, 12)[d.index // 3] + rng.normal(0, 1, 3)[d.index % 3]
    ...               + rng.normal(0, 0.5, len(d)))
    >>> res = reproducibility(d, value="value", subject="subject", site="site", n_boot=0)
    >>> list(res.components.index)
    ['subject', 'site', 'residual']
    """
    from lmmkit.inference.bootstrap import parametric_bootstrap
    from lmmkit.inference.profile import confint
    from lmmkit.models.lmm import LinearMixedModel

    where = "reproducibility: "
    _check_level(level, "level", where)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{where}data must be a DataFrame, got {type(data).__name__}.")
    for name, col in (("value", value), ("subject", subject), ("site", site)):
        _column(data, col, name, where)
    frame = pd.DataFrame(
        {
            "value": as_finite_scores(data[value].to_numpy(), name=value, where=where),
            "subject": data[subject].astype(str).to_numpy(),
            "site": data[site].astype(str).to_numpy(),
        }
    )
    n_sub, n_site = frame["subject"].nunique(), frame["site"].nunique()
    if n_sub < 2 or n_site < 2:
        raise DataError(
            f"{where}{n_sub} subject(s) and {n_site} site(s); the crossed model needs at least "
            "2 of each."
        )
    if frame.groupby("subject")["site"].nunique().max() < 2:
        raise DataError(
            f"{where}no subject was measured at 2 or more sites ({site!r}); between-site "
            "variation cannot be separated from between-subject variation."
        )
    model = LinearMixedModel("value ~ 1 + (1 | subject) + (1 | site)", frame)
    fit = model.fit()
    vc = fit.varcorr.set_index("group")
    sds = {g: float(vc.loc[g, "sdcor"]) for g in ("subject", "site", "Residual")}
    ci = confint(model, fit, level=level)
    names = {g: f".sig{i + 1:02d}" for i, g in enumerate(fit.varcorr["group"][:-1])}
    names["Residual"] = ".sigma"
    comp = pd.DataFrame(
        {
            "variance": [sds[g] ** 2 for g in ("subject", "site", "Residual")],
            "sd": [sds[g] for g in ("subject", "site", "Residual")],
            "sd_low": [float(ci.loc[names[g]].iloc[0]) for g in ("subject", "site", "Residual")],
            "sd_high": [float(ci.loc[names[g]].iloc[1]) for g in ("subject", "site", "Residual")],
        },
        index=pd.Index(["subject", "site", "residual"]),
    )
    est = _coefficients(sds["subject"], sds["site"], sds["Residual"])
    lo = dict.fromkeys(est, np.nan)
    hi = dict.fromkeys(est, np.nan)
    n_boot = int(n_boot)
    if n_boot < 0:
        raise DataError(f"{where}n_boot={n_boot} must be >= 0.")
    if n_boot > 0:
        boot = parametric_bootstrap(model, fit, nsim=n_boot, seed=seed).replicates
        reps = _coefficients(
            boot["sd_subject_(Intercept)"], boot["sd_site_(Intercept)"], boot["sd_Residual_sigma"]
        )
        a = (1.0 - level) / 2.0
        for key, vals in reps.items():
            lo[key], hi[key] = (float(v) for v in np.nanquantile(vals, [a, 1.0 - a]))
    summary = pd.DataFrame(
        {"estimate": {k: float(v) for k, v in est.items()}, "ci_low": lo, "ci_high": hi}
    )
    return Reproducibility(
        components=comp,
        summary=summary,
        n=len(frame),
        n_subjects=n_sub,
        n_sites=n_site,
        level=level,
        n_boot=n_boot,
        fit=fit,
    )
