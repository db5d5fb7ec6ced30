"""The compiled per-SNP lambda search of lmm_assoc (``_optimize_compiled``) against the
vectorized NumPy search it replaces and against a brute-force maximization of the exact
(dense, unrotated) REML / ML likelihood."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.genetics import lmm_assoc as la


def _data(seed: int, n: int, m: int, c: int, effect: float = 0.4):
    rng = np.random.default_rng(seed)
    g = rng.binomial(2, 0.3, size=(n, 3 * n)).astype(float)
    g -= g.mean(0)
    k = g @ g.T / g.shape[1]
    w = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(c - 1)])
    x = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(float)
    y = (
        w @ rng.normal(size=c)
        + np.linalg.cholesky(k + 1e-8 * np.eye(n)) @ rng.normal(size=n)
        + rng.normal(size=n)
        + effect * x[:, 0]
    )
    return k, y, w, x


@pytest.mark.parametrize("c", [1, 3])
def test_compiled_equals_numpy_search(c):
    k, y, w, x = _data(7 + c, 250, 300, c)
    model = la.fit_null(k, y, w)
    utx = model.u.T @ x
    new = la.assoc_rotated(model, utx)
    old = la._assoc_rotated_numpy(model, utx)
    for key in ("l_remle", "l_mle"):
        np.testing.assert_allclose(new[key], old[key], rtol=1e-8, err_msg=key)
    for key in ("se", "p_wald", "p_lrt", "p_score"):
        np.testing.assert_allclose(new[key], old[key], rtol=1e-7, err_msg=key)
    np.testing.assert_allclose(
        new["beta"], old["beta"], rtol=1e-7, atol=1e-10 * np.abs(old["beta"]).max()
    )
    # the same numbers when the block is split in pieces (serial kernel below 64 SNPs)
    part = la.assoc_rotated(model, utx[:, :40])
    np.testing.assert_allclose(part["p_lrt"], new["p_lrt"][:40], rtol=1e-12)


def _dense_logl(reml: bool, lam: float, kc: np.ndarray, y: np.ndarray, a: np.ndarray) -> float:
    """Profile (RE)ML log-likelihood of y ~ N(a b, s2 (lam K + I)), unrotated and dense."""
    n, p = a.shape
    v = lam * kc + np.eye(n)
    cv = np.linalg.cholesky(v)
    vi_a = np.linalg.solve(v, a)
    vi_y = np.linalg.solve(v, y)
    m = a.T @ vi_a
    b = np.linalg.solve(m, a.T @ vi_y)
    r = y - a @ b
    rvr = r @ np.linalg.solve(v, r)
    logdet_v = 2.0 * np.log(np.diag(cv)).sum()
    if not reml:
        return -0.5 * n * (np.log(2 * np.pi) + 1.0 + np.log(rvr / n)) - 0.5 * logdet_v
    df = n - p
    return (
        -0.5 * df * (np.log(2 * np.pi) + 1.0 + np.log(rvr / df))
        - 0.5 * logdet_v
        - 0.5 * np.linalg.slogdet(m)[1]
        + 0.5 * np.linalg.slogdet(a.T @ a)[1]
    )


def _golden_max(f, lo: float, hi: float, tol: float = 1e-9) -> tuple[float, float]:
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c1, c2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = f(c1), f(c2)
    while b - a > tol:
        if f1 >= f2:
            b, c2, f2 = c2, c1, f1
            c1 = b - g * (b - a)
            f1 = f(c1)
        else:
            a, c1, f1 = c1, c2, f2
            c2 = a + g * (b - a)
            f2 = f(c2)
    t = 0.5 * (a + b)
    return t, f(t)


@pytest.mark.parametrize("c", [1, 2])
def test_compiled_search_is_the_global_maximum(c):
    """logL at the returned lambda equals the dense likelihood there, and no point of a
    golden-section search in any of the 10 log regions (or the bounds) beats it."""
    n = 70
    k, y, w, x = _data(3 + c, n, 4, c, effect=0.8)
    model = la.fit_null(k, y, w)
    kc = k - k.mean(0)[None, :]
    kc = kc - kc.mean(1)[:, None]
    kc = 0.5 * (kc + kc.T)
    xt = np.ascontiguousarray((model.u.T @ x).T)
    lam, logl, _, _ = la._optimize_compiled(model, xt)
    edges = np.linspace(np.log(1e-5), np.log(1e5), 11)
    for j in range(x.shape[1]):
        a = np.column_stack([w, x[:, j]])
        for r, reml in enumerate((True, False)):

            def f(t, reml=reml, a=a):
                return _dense_logl(reml, float(np.exp(t)), kc, y, a)

            assert logl[r, j] == pytest.approx(f(np.log(lam[r, j])), abs=1e-8)
            cands = [(edges[0], f(edges[0])), (edges[-1], f(edges[-1]))]
            cands += [_golden_max(f, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
            t_best, l_best = max(cands, key=lambda tl: tl[1])
            assert logl[r, j] >= l_best - 1e-8
            assert np.log(lam[r, j]) == pytest.approx(t_best, abs=1e-5)


def _child_p_wald(queue, model, utx):  # pragma: no cover - runs in the forked child
    queue.put(la.assoc_rotated(model, utx)["p_wald"])


@pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="no fork"
)
def test_thread_pool_survives_fork(monkeypatch):
    """The per-SNP search's persistent thread pool is per process: a child forked after the
    parent used it (process executors, Dask's forked workers) starts its own instead of
    waiting forever on the parent's threads, and gets the parent's answer."""
    import multiprocessing as mp

    monkeypatch.setattr(la.numba, "get_num_threads", lambda: 2)
    k, y, w, x = _data(3, 120, 200, 1)
    model = la.fit_null(k, y, w)
    utx = model.u.T @ x
    expected = la.assoc_rotated(model, utx)["p_wald"]  # the parent's pool is started
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_p_wald, args=(queue, model, utx))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)
