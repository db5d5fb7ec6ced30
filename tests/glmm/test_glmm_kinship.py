"""glmm(..., kernels={"id": K}): known-covariance (kinship) terms in GLMMs.

References: tests/reference/glmm_kinship/*.json, made by make_reference.R there with lme4
1.1-31's modular interface (Z replaced by Z L, K = L L', glmer's two optimization stages) on
300 HS1940 mice with their real centered GRM (frozen K_hs300.csv.gz). Tolerances as for
glmer (tests/glmm): log-likelihood 1e-5 relative, fixed effects 1e-3 relative (or 1e-3 of
their SE for an estimate near zero), SEs, theta and variances 1e-3 relative. The rest are
properties that hold exactly: K = I is the ordinary (1 | id) fit, a block K of clones is
(1 | clone group), and K's labels without records get K_uo K_oo^-1 b_o.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

from lmmkit.errors import DataError, ModelError
from lmmkit.genetics.liability import h2_latent
from lmmkit.glmm.model import glmm
from tests.conftest import REFERENCE

KIN_REF = REFERENCE / "glmm_kinship"


def _rel(a, b) -> np.ndarray:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-8)


@pytest.fixture(scope="module")
def K300() -> pd.DataFrame:
    return pd.read_csv(KIN_REF / "K_hs300.csv.gz", index_col=0)


@pytest.fixture(scope="module")
def binary_fit(K300: pd.DataFrame):
    ref = json.loads((KIN_REF / "binary_kinship.json").read_text())
    data = pd.read_csv(KIN_REF / ref["data"], dtype={"id": str})
    return glmm(ref["formula"], data, family="binomial", kernels={"id": K300}), ref


@pytest.fixture(scope="module")
def poisson_fit(K300: pd.DataFrame):
    ref = json.loads((KIN_REF / "poisson_kinship.json").read_text())
    data = pd.read_csv(KIN_REF / ref["data"], dtype={"id": str})
    return glmm(ref["formula"], data, family="poisson", kernels={"id": K300}), ref, data


def _check_reference(res, ref: dict) -> None:
    assert res.nobs == ref["nobs"]
    assert _rel(res.loglik, ref["loglik"]).max() < 1e-5
    assert list(res.fixef.index) == ref["fixef_names"]
    diff = np.abs(res.fixef.to_numpy() - np.asarray(ref["fixef"]))
    se = np.asarray(ref["fixef_se"])
    assert np.all(diff < 1e-3 * np.maximum(np.abs(ref["fixef"]), se))
    assert _rel(res.fixef_se, ref["fixef_se"]).max() < 1e-3
    assert _rel(res.theta, ref["theta"]).max() < 1e-3
    var = res.varcorr.set_index("group")["vcov"]
    assert _rel([var[g] for g in np.atleast_1d(ref["vc_grp"])], ref["vc_var"]).max() < 1e-3
    # genetic values b = L (theta u) of the first mice (lme4's level order)
    modes = res.ranef["id"]["(Intercept)"]
    got = modes.loc[ref["genetic_levels"]].to_numpy()
    want = np.asarray(ref["genetic_values"])
    assert np.abs(got - want).max() < 2e-3 * np.abs(want).max()


def test_binary_kinship_matches_lme4_modular(binary_fit) -> None:
    res, ref = binary_fit
    assert res.vcov_method == "hessian"
    assert res.kernels["id"]["n_levels_with_records"] == 300
    _check_reference(res, ref)
    out = json.loads(res.to_json())
    assert out["kernels"]["id"]["n_labels"] == 300
    assert len(out["ranef"]["id"]["levels"]) == 300
    assert pickle.loads(pickle.dumps(res)).loglik == res.loglik


def test_poisson_kinship_with_batch_and_unrecorded_mice(poisson_fit, K300) -> None:
    res, ref, data = poisson_fit
    _check_reference(res, ref)
    # R used K over the 240 mice with records; the 60 others only get predictions, and
    # those are the conditional means given the relatives: b_u = K_uo K_oo^-1 b_o
    b = res.ranef["id"]["(Intercept)"]
    assert len(b) == 300 and res.ngroups["id"] == 300
    seen = sorted(set(data["id"]))
    unseen = [i for i in K300.index if i not in set(seen)]
    assert len(unseen) == 60
    Koo = K300.loc[seen, seen].to_numpy()
    Kuo = K300.loc[unseen, seen].to_numpy()
    expected = Kuo @ np.linalg.solve(Koo, b.loc[seen].to_numpy())
    assert np.abs(b.loc[unseen].to_numpy() - expected).max() < 1e-8
    nd = pd.DataFrame({"id": unseen[:3], "batch": "B0", "x": 0.0})
    pred = res.predict(nd)
    base = res.predict(nd, include_random=False)
    batch0 = res.ranef["batch"].loc["B0", "(Intercept)"]
    assert np.allclose(pred - base - batch0, b.loc[unseen[:3]].to_numpy(), atol=1e-12)


def test_latent_h2_against_lme4_hessian(binary_fit) -> None:
    res, ref = binary_fit
    h = h2_latent(res)
    assert h.term == "id" and h.link == "logit" and h.centered
    assert _rel(h.kernel_scale, ref["h2_kernel_scale"]).max() < 1e-12
    assert _rel(h.h2, ref["h2_latent"]).max() < 1e-3
    # delta-method SE from lme4's finite-difference Hessian at its (slightly different)
    # optimum: the Hessian differences dominate
    assert _rel(h.se, ref["h2_latent_se"]).max() < 2e-2
    assert h.link_variance == pytest.approx(math.pi**2 / 3)
    assert "underestimates" in h.note  # one Bernoulli record per mouse
    assert h.h2 == pytest.approx(
        h.sigma2_g * h.kernel_scale / (h.sigma2_g * h.kernel_scale + math.pi**2 / 3)
    )


# ----------------------------------------------------------------------------- properties
@pytest.fixture(scope="module")
def repeated() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    ng, rep = 50, 4
    ids = np.repeat(np.arange(ng), rep)
    g = rng.normal(0, 0.9, ng)
    d = pd.DataFrame(
        {
            "id": [f"a{i:02d}" for i in ids],
            "x": rng.standard_normal(ng * rep),
            "b": [f"b{k}" for k in rng.integers(0, 6, ng * rep)],
        }
    )
    d["y"] = rng.binomial(1, special.expit(-0.2 + 0.6 * d["x"] + g[ids]))
    return d


@pytest.mark.parametrize("formula", ["y ~ x + (1 | id)", "y ~ x + (1 | id) + (1 | b)"])
def test_identity_kernel_is_the_plain_fit(repeated: pd.DataFrame, formula: str) -> None:
    labels = sorted(set(repeated["id"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-zero / all-one ids are warned in the plain fit
        plain = glmm(formula, repeated, family="binomial")
    kin = glmm(formula, repeated, family="binomial", kernels={"id": (np.eye(len(labels)), labels)})
    assert kin.loglik == pytest.approx(plain.loglik, rel=1e-9)
    assert np.allclose(kin.fixef, plain.fixef, rtol=1e-5, atol=1e-6)
    assert np.allclose(kin.fixef_se, plain.fixef_se, rtol=1e-5)
    assert np.allclose(kin.theta, plain.theta, rtol=1e-5, atol=1e-5)
    a, b = kin.ranef["id"], plain.ranef["id"].loc[kin.ranef["id"].index]
    assert np.allclose(a, b, atol=1e-5)
    cv_k = pd.Series(kin.ranef_condvar["id"].ravel(), index=kin.ranef["id"].index)
    cv_p = pd.Series(plain.ranef_condvar["id"].ravel(), index=plain.ranef["id"].index)
    assert np.allclose(cv_k, cv_p.loc[cv_k.index], rtol=1e-4)


def test_clone_kernel_is_the_group_fit() -> None:
    """A singular K (clones: K_ij = 1 within a clone line, rank = number of lines) gives the
    (1 | line) fit, and a clone without records gets its line's mode."""
    rng = np.random.default_rng(5)
    nl = 30
    animals = [f"L{c:02d}_{k}" for c in range(nl) for k in range(4)]
    line = {a: a.split("_")[0] for a in animals}
    K = np.array([[float(line[a] == line[b]) for b in animals] for a in animals])
    recorded = [a for a in animals if not a.endswith("_3")]
    d = pd.DataFrame({"id": np.repeat(recorded, 2)})
    d["line"] = d["id"].map(line)
    d["x"] = rng.standard_normal(len(d))
    eff = dict(zip(sorted(set(line.values())), rng.normal(0, 0.7, nl)))
    d["y"] = rng.poisson(np.exp(0.3 + 0.3 * d["x"] + d["line"].map(eff)))
    grp = glmm("y ~ x + (1 | line)", d, family="poisson")
    kdf = pd.DataFrame(K, index=animals, columns=animals)
    kin = glmm("y ~ x + (1 | id)", d, family="poisson", kernels={"id": kdf})
    assert kin.loglik == pytest.approx(grp.loglik, rel=1e-9)
    assert np.allclose(kin.theta, grp.theta, rtol=1e-5)
    assert np.allclose(kin.fixef, grp.fixef, rtol=1e-5)
    modes = kin.ranef["id"]["(Intercept)"]
    assert len(modes) == 4 * nl
    line_modes = grp.ranef["line"]["(Intercept)"]
    assert np.allclose(modes, line_modes.loc[[line[a] for a in modes.index]], atol=1e-6)
    cv = kin.ranef_condvar["id"].ravel()
    cv_line = grp.ranef_condvar["line"].ravel()
    pos = {lv: i for i, lv in enumerate(grp.ranef["line"].index)}
    assert np.allclose(cv, cv_line[[pos[line[a]] for a in modes.index]], rtol=1e-4)
    sims = kin.simulate(3, seed=1, kernels={"id": kdf})
    assert sims.shape == (len(d), 3)


def test_kernel_scale_only_rescales_the_variance(repeated: pd.DataFrame) -> None:
    labels = sorted(set(repeated["id"]))
    rng = np.random.default_rng(3)
    A = rng.standard_normal((len(labels), len(labels)))
    K = 0.3 * A @ A.T / len(labels) + 0.7 * np.eye(len(labels))
    f = "y ~ x + (1 | id)"
    one = glmm(f, repeated, family="binomial", kernels={"id": (K, labels)})
    four = glmm(f, repeated, family="binomial", kernels={"id": (4.0 * K, labels)})
    assert four.loglik == pytest.approx(one.loglik, rel=1e-8)
    assert four.theta[0] == pytest.approx(one.theta[0] / 2.0, rel=1e-4)
    assert one.theta[0] > 0.3  # away from the boundary
    assert h2_latent(four).h2 == pytest.approx(h2_latent(one).h2, rel=2e-4)
    assert "underestimates" not in h2_latent(one).note  # four records per individual


def test_laplace_objective_and_condvar_from_dense_formulas(repeated: pd.DataFrame) -> None:
    """Against lme4's formulas written out densely (u-coordinates, Z L): at the reported
    modes, -2 loglik = -2 sum log p(y | eta) + ||u||^2 + log|I + theta^2 L'Z'WZ L|, and the
    conditional variances of b = theta L u are the diagonal of theta^2 L (.)^-1 L'."""
    labels = sorted(set(repeated["id"])) + ["extra1", "extra2"]  # two without records
    rng = np.random.default_rng(9)
    A = rng.standard_normal((len(labels), len(labels) + 5))
    K = A @ A.T / A.shape[1]
    res = glmm(
        "y ~ x + (1 | id)",
        repeated,
        family="binomial",
        kernels={"id": (K, labels)},
        control={"pirls": "exact"},
    )
    th = res.theta[0]
    L = np.linalg.cholesky(K)
    pos = {lab: i for i, lab in enumerate(labels)}
    Z = np.zeros((len(repeated), len(labels)))
    Z[np.arange(len(repeated)), repeated["id"].map(pos).to_numpy()] = 1.0
    b = res.ranef["id"]["(Intercept)"].loc[labels].to_numpy()
    u = np.linalg.solve(L, b) / th
    eta = res.fixed_part + Z @ b
    assert np.allclose(eta, res.linear_predictor, atol=1e-10)
    mu = special.expit(eta)
    y = repeated["y"].to_numpy()
    ll = float(np.sum(y * np.log(mu) + (1 - y) * np.log1p(-mu)))
    ZL = Z @ L
    M = np.eye(len(labels)) + th**2 * ZL.T @ (ZL * (mu * (1 - mu))[:, None])
    dev = -2 * ll + u @ u + np.linalg.slogdet(M)[1]
    assert -0.5 * dev == pytest.approx(res.loglik, rel=1e-9)
    cv = th**2 * np.einsum("ij,jk,ik->i", L, np.linalg.inv(M), L)
    got = res.ranef_condvar["id"].ravel()
    order = [list(res.ranef["id"].index).index(lab) for lab in labels]
    assert np.allclose(got[order], cv, rtol=1e-6)


# ----------------------------------------------------------------------------- bad input
def test_kernel_input_errors(repeated: pd.DataFrame) -> None:
    labels = sorted(set(repeated["id"]))
    eye = np.eye(len(labels))
    f = "y ~ x + (1 | id)"
    with pytest.raises(DataError, match="not a grouping factor"):
        glmm(f, repeated, family="binomial", kernels={"animal": (eye, labels)})
    with pytest.raises(DataError, match="does not cover 1 level"):
        glmm(f, repeated, family="binomial", kernels={"id": (eye[1:, 1:], labels[1:])})
    bad = eye.copy()
    bad[0, 1] = 0.5
    with pytest.raises(DataError, match="not symmetric"):
        glmm(f, repeated, family="binomial", kernels={"id": (bad, labels)})
    bad[1, 0] = 0.5
    bad[0, 0] = -1.0
    with pytest.raises(DataError, match="not positive semi-definite"):
        glmm(f, repeated, family="binomial", kernels={"id": (bad, labels)})
    with pytest.raises(ModelError, match="needs a random intercept"):
        glmm("y ~ x + (x | id)", repeated, family="binomial", kernels={"id": (eye, labels)})
    blabs = sorted(set(repeated["b"]))
    with pytest.raises(ModelError, match="a GLMM takes one"):
        glmm(
            "y ~ x + (1 | id) + (1 | b)",
            repeated,
            family="binomial",
            kernels={"id": (eye, labels), "b": (np.eye(len(blabs)), blabs)},
        )
    with pytest.raises(ModelError, match="nagq=1"):
        glmm(f, repeated, family="binomial", nagq=5, kernels={"id": (eye, labels)})


def test_h2_latent_errors_and_simulate_needs_k(repeated: pd.DataFrame) -> None:
    labels = sorted(set(repeated["id"]))
    kin = glmm(
        "y ~ x + (1 | id)", repeated, family="binomial", kernels={"id": (np.eye(50), labels)}
    )
    with pytest.raises(DataError, match="pass kernels="):
        kin.simulate(2)
    with pytest.raises(DataError, match="labels of the fit"):
        kin.simulate(2, kernels={"id": (np.eye(50), labels[::-1])})
    with pytest.raises(DataError, match="not a random-effects term"):
        h2_latent(kin, "animal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = glmm("y ~ x + (1 | id)", repeated, family="binomial")
    with pytest.raises(DataError, match="no kinship term"):
        h2_latent(plain)
    icc = h2_latent(plain, "id")
    assert icc.kernel_scale == 1.0 and "ICC" in icc.note
    counts = repeated.assign(y=repeated["y"] + 1)
    pois = glmm("y ~ x + (1 | id)", counts, family="poisson", kernels={"id": (np.eye(50), labels)})
    with pytest.raises(ModelError, match="binomial GLMMs"):
        h2_latent(pois)
    with pytest.raises(DataError, match="GLMM result"):
        h2_latent(object())
