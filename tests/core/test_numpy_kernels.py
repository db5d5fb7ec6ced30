"""#14: the NumPy formulations of the kernels agree with the numba kernels they replace at
small and medium sizes (``prefer_numba`` forces the numba path at every size)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit._jit import prefer_numba
from lmmkit.datasets import load_dataset
from lmmkit.linalg import kernels
from lmmkit.linalg.blocked import factor
from lmmkit.linalg.kernels import first_block_small
from lmmkit.linalg.solve import term_condvars
from lmmkit.models.lmm import LinearMixedModel
from lmmkit.objective import ai_newton
from lmmkit.objective.ai_newton import profiled_gradient
from lmmkit.objective.one_term import one_term_parts, single_term_gradient

RTOL = 1e-10


def _both(fn):
    """fn() on the NumPy path, then under prefer_numba()."""
    a = fn()
    with prefer_numba():
        b = fn()
    return a, b


def _close(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    elif isinstance(a, (bool, np.bool_)):
        assert a == b
    else:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * scale)


def _crossed(seed: int, vector_rest: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1 = np.repeat(np.arange(400), 5)
    g2 = rng.integers(0, 60, g1.size)
    x = rng.normal(size=g1.size)
    y = (
        rng.normal(size=400)[g1] * (1 + 0.4 * x)
        + rng.normal(size=60)[g2]
        + rng.normal(size=g1.size)
    )
    return pd.DataFrame({"y": y, "x": x, "g1": g1.astype(str), "g2": g2.astype(str),
                         "g3": (g2 % 7).astype(str)})  # fmt: skip


MODELS = {
    "crossed scalar": ("y ~ x + (1 | g1) + (1 | g2) + (1 | g3)", [0.8, 0.6, 0.3]),
    "vector first, scalar rest": ("y ~ x + (1 + x | g1) + (1 | g2)", [0.9, 0.2, 0.4, 0.7]),
    "vector rest": ("y ~ x + (1 | g1) + (1 + x | g2)", [0.8, 0.6, 0.1, 0.3]),
}


@pytest.mark.parametrize("name", MODELS)
def test_factor_condvars_and_gradient_agree(name):
    formula, theta = MODELS[name]
    m = LinearMixedModel(formula, _crossed(1, True))
    cp, theta = m.cp, np.array(theta)

    def pieces():
        f = factor(cp, theta, full=True)
        return ((f.logdet_L, f.logdet_RX, f.pwrss, np.tril(f.L)),
                term_condvars(cp, f, 1.3), profiled_gradient(cp, theta, m._working_y(m._y), True))  # fmt: skip

    a, b = _both(pieces)
    _close(a, b)


@pytest.mark.parametrize(
    "formula,theta",
    [("Reaction ~ Days + (Days | Subject)", [0.9, 0.02, 0.2]),
     ("Reaction ~ Days + (1 | Subject)", [0.8])],
)  # fmt: skip
@pytest.mark.parametrize("reml", [True, False])
def test_one_term_deviance_and_gradient_agree(formula, theta, reml):
    m = LinearMixedModel(formula, load_dataset("sleepstudy"))
    theta = np.array(theta)
    a, b = _both(
        lambda: (one_term_parts(m.cp, theta), single_term_gradient(m.cp, theta, reml, m.n))
    )
    _close(a, b)


@pytest.mark.parametrize("p1", [1, 2])
@pytest.mark.parametrize("full", [True, False])
def test_first_block_small_agrees(p1, full):
    rng = np.random.default_rng(p1)
    # p1 = 1: 6 x 6 x 40,000 terms, past kernels._TERMS_MAX (the row-by-row sums)
    nl, r = (40_000, 6) if p1 == 1 else (500, 3)
    Z = rng.normal(size=(nl, 4, p1))
    D1 = np.einsum("lia,lib->lab", Z, Z)
    B1 = rng.normal(size=(r, nl, p1))
    T1 = np.tril(rng.normal(size=(p1, p1))) + 1.5 * np.eye(p1)
    a = kernels._first_block_small_numpy(T1, D1, B1, full)
    b = kernels._first_block_small(T1, D1, B1, full)
    _close(
        first_block_small(T1, D1[:50], B1[:, :50], full),
        kernels._first_block_small(T1, D1[:50], B1[:, :50], full),
    )
    # bit for bit: the sums over levels are taken in the compiled loop's order (GLMM fits on
    # a knife edge, e.g. glmer's objective near cloglog_slope_rough's optimum, depend on it)
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("p", [1, 2])
def test_products_with_Z_agree(p):
    rng = np.random.default_rng(p)
    n, nlev, m = 2_000, 70, 3
    index = rng.integers(0, nlev, n)
    Zx = rng.normal(size=(n, p))
    W = rng.normal(size=(n, m))
    U = rng.normal(size=(nlev, p, m))
    A = rng.normal(size=(nlev, p, p))

    def run():
        out = W.copy()
        ai_newton._add_z_numpy(out, index, Zx, U, -1.0)
        return (
            ai_newton._zt_numpy(index, Zx, W, nlev),
            out,
            [ai_newton._level_products_numpy(A, U, t) for t in (False, True)],
        )

    out = W.copy()
    ai_newton._add_z(out, index, Zx, U, -1.0)
    numba = (
        ai_newton._zt_cols(index, Zx, W, nlev),
        out,
        [ai_newton._level_products(A, U, t) for t in (False, True)],
    )
    _close(run(), numba)
