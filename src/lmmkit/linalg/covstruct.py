"""Covariance structures of a random-effects term (glmmTMB's ``diag``, ``cs``, ``ar1``; nlme's
``pdCompSymm`` as ``homcs``).

An unstructured term ``(x | g)`` is parametrized as lme4 does, by the lower triangle of the
relative covariance factor T (Sigma_term = sigma^2 T T'); it has no structure object. A
structured term owns a :class:`CovStructure` that maps its few parameters to T, the only thing
the engine's factorization needs. Parameters are relative to the residual SD sigma:

==========  ==========================  ================================================
kind        parameters                  Sigma_term / sigma^2
==========  ==========================  ================================================
``diag``    tau_1..tau_p  (>= 0)        diag(tau_i^2)
``cs``      tau_1..tau_p, kappa         D C(rho) D, D = diag(tau), C(rho) = (1-rho) I + rho J
``homcs``   tau, kappa                  tau^2 C(rho)
``ar1``     tau, kappa                  tau^2 A(rho), A_ij = rho^|i-j| (columns in order)
==========  ==========================  ================================================

The correlation is an unbounded transform kappa, as in glmmTMB: rho = kappa / sqrt(1 +
kappa^2) for ``ar1`` (rho in (-1, 1)) and rho = (1 + a) logistic(kappa) - a, a = 1/(p - 1),
for the compound-symmetry kinds (rho in (-1/(p-1), 1), where C(rho) is positive definite).
The SDs tau are bounded below by 0 (like lme4's diagonal of T), so a zero variance is
reachable; a correlation of +-1 is approached as kappa -> +-inf. The factors of C(rho) and
A(rho) are computed in closed form, which stays valid (positive semi-definite) at the limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.errors import ModelError

__all__ = [
    "STRUCTURE_KINDS",
    "CovStructure",
    "cs_factor",
    "ar1_factor",
    "require_unstructured",
]

#: Covariance-structure keywords of the formula language (``us`` = lme4's default).
STRUCTURE_KINDS = ("us", "diag", "cs", "homcs", "ar1")

_DESCRIPTION = {
    "diag": "heterogeneous diagonal",
    "cs": "heterogeneous compound symmetry",
    "homcs": "homogeneous compound symmetry",
    "ar1": "AR(1)",
}


def cs_factor(rho: float, p: int) -> np.ndarray:
    """Lower-triangular L with L L' = (1 - rho) I + rho J (p x p), for -1/(p-1) <= rho <= 1.

    Column j has d_j = sqrt(1 - s_j) on the diagonal and c_j = (rho - s_j) / d_j below it,
    s_j = c_0^2 + ... + c_{j-1}^2 (all rows below the diagonal of a column are equal)."""
    L = np.zeros((p, p))
    s = 0.0
    for j in range(p):
        d = math.sqrt(max(1.0 - s, 0.0))
        c = (rho - s) / d if d > 0.0 else 0.0
        L[j, j] = d
        L[j + 1 :, j] = c
        s += c * c
    return L


def ar1_factor(rho: float, p: int) -> np.ndarray:
    """Lower-triangular L with L L' = A, A_ij = rho^|i-j| (p x p), for -1 <= rho <= 1:
    L_i0 = rho^i and L_ij = rho^(i-j) sqrt(1 - rho^2) for 1 <= j <= i."""
    i, j = np.tril_indices(p)
    L = np.zeros((p, p))
    scale = np.where(j == 0, 1.0, math.sqrt(max(1.0 - rho * rho, 0.0)))
    L[i, j] = np.power(rho, (i - j).astype(float)) * scale
    return L


def _logistic(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class CovStructure:
    """The covariance structure of one random-effects term with ``p`` columns."""

    kind: str  # "diag", "cs", "homcs" or "ar1"
    p: int

    def __post_init__(self) -> None:
        if self.kind not in _DESCRIPTION:
            raise ValueError(f"unknown covariance structure {self.kind!r}")

    @property
    def description(self) -> str:
        return _DESCRIPTION[self.kind]

    @property
    def npar(self) -> int:
        """Number of parameters (SDs, then the correlation transform if any)."""
        return {"diag": self.p, "cs": self.p + 1}.get(self.kind, 2)

    @property
    def n_sd(self) -> int:
        """How many leading parameters are SDs (bounded below by 0)."""
        return self.p if self.kind in ("diag", "cs") else 1

    @property
    def has_corr(self) -> bool:
        return self.kind != "diag"

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds: 0 for the SDs, -inf for the correlation transform."""
        return np.array([0.0] * self.n_sd + [-np.inf] * (self.npar - self.n_sd))

    @property
    def start(self) -> np.ndarray:
        """Start values: SDs 1 and correlation 0 (T = I, lme4's start)."""
        out = [1.0] * self.n_sd
        if self.has_corr:
            out.append(self.kappa(0.0))
        return np.array(out)

    # ------------------------------------------------------------- correlation transform
    def rho(self, kappa: float) -> float:
        """The correlation for the unbounded parameter kappa."""
        if self.kind == "ar1":
            return (
                kappa / math.sqrt(1.0 + kappa * kappa)
                if math.isfinite(kappa)
                else (math.copysign(1.0, kappa))
            )
        a = 1.0 / (self.p - 1)
        return (1.0 + a) * _logistic(kappa) - a

    def kappa(self, rho: float) -> float:
        """Inverse of :meth:`rho` (+-inf at the ends of the range)."""
        if self.kind == "ar1":
            return (
                rho / math.sqrt(1.0 - rho * rho) if abs(rho) < 1 else math.copysign(math.inf, rho)
            )
        a = 1.0 / (self.p - 1)
        u = (rho + a) / (1.0 + a)
        if u <= 0:
            return -math.inf
        if u >= 1:
            return math.inf
        return math.log(u / (1.0 - u))

    @property
    def rho_bounds(self) -> tuple[float, float]:
        """The correlation's range."""
        return (-1.0, 1.0) if self.kind == "ar1" else (-1.0 / (self.p - 1), 1.0)

    # ------------------------------------------------------------- the factor
    def T(self, par: np.ndarray) -> np.ndarray:
        """The relative covariance factor T (p x p lower triangular) at ``par``."""
        p = self.p
        if self.kind == "diag":
            return np.diag(np.asarray(par, dtype=float))
        rho = self.rho(float(par[-1]))
        if self.kind == "ar1":
            return float(par[0]) * ar1_factor(rho, p)
        C = cs_factor(rho, p)
        if self.kind == "homcs":
            return float(par[0]) * C
        return np.asarray(par[:p], dtype=float)[:, None] * C

    def par_from_sdcor(self, sd: np.ndarray, rho: float | None, sigma: float) -> np.ndarray:
        """Parameters from the SD(s) (absolute, one or one per column) and correlation."""
        sd = np.atleast_1d(np.asarray(sd, dtype=float)) / sigma
        out = list(sd[: self.n_sd])
        if self.has_corr:
            out.append(self.kappa(float(rho)))
        return np.array(out)


def require_unstructured(terms: Any, method: str, alternative: str) -> None:
    """Raise ModelError naming the first structured term: ``method`` (e.g. "Kenward-Roger")
    assumes lme4's unstructured parametrization; ``alternative`` says what to use instead."""
    for t in terms:
        structure = getattr(t, "structure", None)
        if structure is not None:
            label = getattr(t, "text", "") or getattr(t, "name", "")
            raise ModelError(
                f"{method} is not implemented for covariance structures: term {label} has a "
                f"{structure.description} structure ({structure.kind}). {alternative}"
            )
