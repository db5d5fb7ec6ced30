"""What a GWAS returns: the result type, the output columns, and genomic control."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from lmmkit.errors import DataError
from lmmkit.genetics.spa import SCORE_COLUMNS

__all__ = [
    "BINARY_OUTPUT_COLUMNS",
    "GwasResult",
    "OUTPUT_COLUMNS",
    "TESTS",
    "check_tests",
    "genomic_control",
    "stat_columns",
]

TESTS = ("wald", "lrt", "score")
OUTPUT_COLUMNS = [
    "chrom",
    "snp",
    "pos",
    "a1",
    "a0",
    "af",
    "n",
    "beta",
    "se",
    "logl_h1",
    "l_remle",
    "l_mle",
    "p_wald",
    "p_lrt",
    "p_score",
]
_STAT_COLUMNS = [
    "af", "n", "beta", "se", "logl_h1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score",
]  # fmt: skip
_BINARY_STAT_COLUMNS = ["af", "n", "af_cases", "af_controls", *SCORE_COLUMNS]
BINARY_OUTPUT_COLUMNS = ["chrom", "snp", "pos", "a1", "a0", *_BINARY_STAT_COLUMNS]


def stat_columns(binary: bool) -> list[str]:
    """The per-SNP statistics a block task returns (quantitative or binary trait)."""
    return _BINARY_STAT_COLUMNS if binary else _STAT_COLUMNS


def check_tests(tests, binary: bool = False) -> tuple[str, ...]:
    """The requested tests as a tuple (lower case, de-duplicated); None = all."""
    tests = TESTS if tests is None else tuple(dict.fromkeys(t.lower() for t in tests))
    bad = [t for t in tests if t not in TESTS]
    if bad or not tests:
        raise DataError(f"tests must be among {TESTS}, got {bad or list(tests)}.")
    if binary:
        if set(tests) not in (set(TESTS), {"score"}):
            raise DataError(
                f"binary traits have only the score test (with saddlepoint p-values); "
                f"tests={list(tests)} asks for {', '.join(t for t in tests if t != 'score')}."
            )
        tests = ("score",)
    return tests


@dataclass
class GwasResult:
    """Association results (``table``, .bim order) and what was done to get them."""

    table: pd.DataFrame = field(repr=False)
    skipped: pd.DataFrame = field(repr=False)  # chrom, snp, pos, reason
    n_samples: int
    n_samples_dropped: dict[str, int]
    n_tested: int
    n_skipped: dict[str, int]
    gc_lambda: float
    null: dict[str, dict[str, float]]  # per kinship group ("all" or chromosome)
    out: Path | None = None
    log: list[str] = field(default_factory=list, repr=False)
    seconds: float = float("nan")
    resumed_blocks: int = 0

    def __str__(self) -> str:
        return "\n".join(self.log)


def genomic_control(p: np.ndarray) -> float:
    """Genomic-control lambda: median chi2(1) statistic of the p-values over 0.4549."""
    p = np.asarray(p, float)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return float("nan")
    # the statistic is monotone in p: transform only the middle order statistic(s)
    k = len(p) // 2
    mid = np.partition(p, [k - 1, k] if len(p) > 1 else [k])
    mid = mid[[k - 1, k]] if len(p) % 2 == 0 else mid[[k]]
    # chi2(1) quantiles through scipy.special (scipy.stats' distributions cost ~0.4 s to
    # import in a new process; chi2.isf(p, 1) is chdtri(1, p))
    return float(np.median(special.chdtri(1.0, mid)) / special.chdtri(1.0, 0.5))
