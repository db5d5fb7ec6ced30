"""Exact Shapley values of linear predictors: linear, logistic (logit scale), Cox (log
relative hazard), and the fixed-effects part of LMMs and GLMMs.

For a predictor ``f(x) = b0 + beta' x`` and a background distribution with mean ``mu`` the
Shapley value of player ``g`` (a feature, or a group of columns such as the dummies of one
factor) is linear in ``x - mu``: ``phi = T (x - mu)`` with a players x columns matrix ``T``.

* ``mode="interventional"`` (features independent, shap's ``"interventional"``):
  ``phi_g = sum_{j in g} beta_j (x_j - mu_j)``.
* ``mode="observational"`` (shap's ``"correlation_dependent"``): the value of a coalition
  ``S`` is ``E[f(x) | x_S]`` under a multivariate Gaussian fitted to the background data,
  ``beta' Sigma[:, S] Sigma[S, S]^-1 (x_S - mu_S)``. ``T`` is the Shapley average of the
  marginal contributions; computed

  - ``method="exact"``: by enumerating every coalition (batched Cholesky solves, size by
    size): exact, for up to ``max_exact`` players (error above);
  - ``method="sampling"``: by antithetic random permutations (one Cholesky of the permuted
    covariance per permutation gives every prefix's conditional expectation); the Monte
    Carlo standard error of ``T`` is returned. shap's LinearExplainer estimates the same
    ``T`` by plain permutation sampling (1,000 by default).

Features with zero variance in the background get zero credit (as shap); exact duplicates
(correlation 1) share their credit equally (as shap); a near-singular background
correlation matrix gets 1e-6 added to its diagonal, reported in ``checks``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError

__all__ = [
    "MAX_BRUTE_FORCE_PLAYERS",
    "MAX_EXACT_PLAYERS",
    "ShapleyResult",
    "brute_force_shapley",
    "linear_predictor",
    "shapley_values",
]

#: largest number of players for exact coalition enumeration (2**20 coalitions)
MAX_EXACT_PLAYERS = 20
#: default limit: 2**16 coalitions take about a second
DEFAULT_MAX_EXACT = 16
#: largest number of players of the generic subset-by-subset enumeration (the test reference)
MAX_BRUTE_FORCE_PLAYERS = 12
Mode = Literal["interventional", "observational", "correlation_dependent"]


@dataclass(frozen=True, eq=False)
class ShapleyResult:
    """Shapley values of a linear predictor for each explained row.

    ``values``: rows x players DataFrame of phi (same index as the explained data);
    ``base_value``: the predictor at the background mean (``phi`` sums to prediction minus
    it); ``data``: the explained rows' feature values per player (the column itself, or for
    a multi-column player the player's centred linear contribution); ``transform``: ``T``;
    ``transform_se``: its Monte-Carlo SE (zeros unless sampled); ``scale``: what the
    predictor measures; ``checks``: zero-variance features, duplicate groups, ridge added.
    """

    values: pd.DataFrame
    base_value: float
    data: pd.DataFrame
    mode: str
    method: str
    scale: str
    transform: np.ndarray
    transform_se: np.ndarray
    players: dict[str, list[str]]
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction(self) -> pd.Series:
        """``base_value + sum(phi)``: the predictor on its scale for each row."""
        return self.base_value + self.values.sum(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """Tidy long table: ``row``, ``feature``, ``value``, ``phi`` (one row per cell)."""
        phi = self.values.stack().rename("phi")
        val = self.data.stack().rename("value")
        out = pd.concat([phi, val], axis=1).reset_index()
        out.columns = ["row", "feature", "phi", "value"]
        return out[["row", "feature", "value", "phi"]]

    def importance(self) -> pd.DataFrame:
        """Per feature: ``mean_abs_phi``, ``mean_phi``, ``sd_phi``; sorted by the first."""
        v = self.values
        tab = pd.DataFrame(
            {"mean_abs_phi": v.abs().mean(), "mean_phi": v.mean(), "sd_phi": v.std(ddof=1)}
        )
        tab.index.name = "feature"
        return tab.sort_values("mean_abs_phi", ascending=False)


# --------------------------------------------------------------------------- model input
def linear_predictor(model: Any, data: pd.DataFrame | None = None) -> dict[str, Any]:
    """Coefficients, intercept, players and a column builder of a supported model.

    Supported: ``(coef, intercept)`` with ``coef`` a Series (names) or array; scikit-learn
    linear models (``coef_``, ``intercept_``; logistic models on the logit scale);
    :class:`lmmkit.signatures.CVPenalized` (at lambda_1se) and
    :class:`~lmmkit.signatures.path.PenalizedPath` via ``(path, s)``; LMM/GLMM results
    (fixed effects, players = model terms, link scale).
    """
    from lmmkit.signatures.cv import CVPenalized

    if isinstance(model, tuple) and len(model) == 2 and hasattr(model[0], "coef_at"):
        path, s = model
        a0, b = path.coef_at(float(s))
        return _from_coef(pd.Series(b, index=list(path.feature_names)), float(a0),
                          _SCALES[path.family])  # fmt: skip
    if isinstance(model, CVPenalized):
        coef = model.coef()
        a0 = float(coef.pop("(Intercept)")) if "(Intercept)" in coef.index else 0.0
        return _from_coef(coef, a0, _SCALES[model.path.family])
    if hasattr(model, "fixed_spec") and hasattr(model, "fixef"):
        return _from_mixed(model)
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        coef = np.asarray(model.coef_, dtype=float)
        if coef.ndim == 2 and coef.shape[0] != 1:
            raise DataError("multi-output / multinomial models are not supported; explain one "
                            "output at a time.")  # fmt: skip
        names = getattr(model, "feature_names_in_", None)
        idx = [str(c) for c in names] if names is not None else None
        scale = "log-odds" if hasattr(model, "predict_proba") else "response"
        a0 = float(np.ravel(model.intercept_)[0]) if np.size(model.intercept_) else 0.0
        return _from_coef(pd.Series(coef.ravel(), index=idx), a0, scale)
    if isinstance(model, tuple) and len(model) == 2:
        coef, a0 = model
        ser = coef if isinstance(coef, pd.Series) else pd.Series(np.asarray(coef, float).ravel())
        return _from_coef(ser.astype(float), float(a0), "linear predictor")
    raise DataError(
        f"cannot read a linear predictor from {type(model).__name__}; pass (coef, intercept), "
        "a scikit-learn linear model, a CVPenalized, (PenalizedPath, lambda) or an LMM/GLMM "
        "result."
    )


_SCALES = {"gaussian": "response", "binomial": "log-odds", "cox": "log relative hazard"}


def _from_coef(coef: pd.Series, a0: float, scale: str) -> dict[str, Any]:
    names = [str(c) for c in coef.index] if not isinstance(coef.index, pd.RangeIndex) else None
    return {"coef": coef.to_numpy(dtype=float), "intercept": a0, "names": names,
            "groups": None, "design": None, "scale": scale}  # fmt: skip


def _from_mixed(res: Any) -> dict[str, Any]:
    from lmmkit.design.model import FORMULA_CONTEXT

    spec = res.fixed_spec
    kept = list(res.fixed_kept)
    fixef = res.fixef
    cols = list(fixef.index)
    groups: dict[str, list[str]] = {}
    for term, idx in spec.term_indices.items():
        members = [cols[kept.index(i)] for i in idx if i in kept]
        if members and str(term) != "1":
            groups[str(term)] = members
    intercept = float(fixef.get("(Intercept)", 0.0))

    def design(d: pd.DataFrame) -> pd.DataFrame:
        X = np.asarray(spec.get_model_matrix(d, context=FORMULA_CONTEXT, na_action="raise"),
                       dtype=float)[:, kept]  # fmt: skip
        return pd.DataFrame(X, columns=cols, index=d.index).drop(columns="(Intercept)",
                                                                  errors="ignore")  # fmt: skip

    fam = getattr(res, "family", None)
    scale = "response" if fam is None else f"{getattr(fam, 'link', 'link')} scale"
    coef = fixef.drop("(Intercept)", errors="ignore")
    return {"coef": coef.to_numpy(dtype=float), "intercept": intercept, "names": list(coef.index),
            "groups": groups, "design": design, "scale": scale}  # fmt: skip


# --------------------------------------------------------------------------- the game
def _weights(m: int) -> np.ndarray:
    """Shapley weight of a coalition of size s not containing the player: s!(m-s-1)!/m!."""
    return np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
                     for s in range(m)])  # fmt: skip


def _exact_transform(R: np.ndarray, b: np.ndarray, players: list[np.ndarray]) -> np.ndarray:
    """T (players x columns) by enumerating every coalition; R is a correlation matrix and b
    the coefficients on the standardized scale."""
    m = len(players)
    p = R.shape[0]
    w = _weights(m)
    Rb = R @ b
    T = np.zeros((m, p))
    single = all(len(pl) == 1 for pl in players)
    col1 = np.array([pl[0] for pl in players]) if single else None
    chunk = 1 << 15
    for k in range(1, m + 1):
        combos = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(m), k)),
                             dtype=np.int64).reshape(-1, k)  # fmt: skip
        for start in range(0, len(combos), chunk):
            cc = combos[start : start + chunk]
            member = np.zeros((len(cc), m), dtype=bool)
            member[np.arange(len(cc))[:, None], cc] = True
            coef_w = np.where(member, w[k - 1], -w[k] if k < m else 0.0)  # (N, m)
            if single:
                groups = [(np.arange(len(cc)), col1[cc])]
            else:  # coalitions grouped by their column count
                cols = [np.concatenate([players[g] for g in c]) for c in cc]
                sizes = np.array([len(c) for c in cols])
                groups = [(np.flatnonzero(sizes == s_), np.stack([cols[i] for i in
                          np.flatnonzero(sizes == s_)])) for s_ in np.unique(sizes)]  # fmt: skip
            for sel, C in groups:
                sol = np.linalg.solve(R[C[:, :, None], C[:, None, :]], Rb[C][:, :, None])[:, :, 0]
                a = np.zeros((len(sel), p))
                np.put_along_axis(a, C, sol, axis=1)
                T += coef_w[sel].T @ a
    return T


def _sampled_transform(
    R: np.ndarray, b: np.ndarray, players: list[np.ndarray], n_perm: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """T and its Monte-Carlo SE from antithetic permutations (pairs pi, reversed pi)."""
    from scipy.linalg import cho_factor, solve_triangular

    m = len(players)
    p = R.shape[0]
    Rb = R @ b
    n_pairs = max(1, n_perm // 2)
    acc = np.zeros((m, p))
    acc2 = np.zeros((m, p))
    for _ in range(n_pairs):
        perm = rng.permutation(m)
        pair = np.zeros((m, p))
        for order in (perm, perm[::-1]):
            cols = np.concatenate([players[g] for g in order])
            ends = np.cumsum([len(players[g]) for g in order])
            L = cho_factor(R[np.ix_(cols, cols)], lower=True)[0]
            L = np.tril(L)
            z = solve_triangular(L, Rb[cols], lower=True)
            prev = np.zeros(p)
            for g, e in zip(order, ends):
                a = np.zeros(p)
                a[cols[:e]] = solve_triangular(L[:e, :e].T, z[:e], lower=False)
                pair[g] += a - prev
                prev = a
        pair /= 2.0
        acc += pair
        acc2 += pair**2
    mean = acc / n_pairs
    var = np.maximum(acc2 / n_pairs - mean**2, 0.0)
    se = np.sqrt(var / max(n_pairs - 1, 1))
    return mean, se


def brute_force_shapley(
    value: Any, n_players: int, *, max_players: int = MAX_BRUTE_FORCE_PLAYERS
) -> np.ndarray:
    """Shapley values of any game by the textbook formula over every subset.

    ``phi_i = sum_{S not containing i} |S|! (m - |S| - 1)! / m! * (v(S + i) - v(S))``.
    ``value(S)`` takes a tuple of player indices and returns the coalition's value for each
    explained row (array of length n). Slow (``m * 2**(m - 1)`` calls) and generic: the test
    reference for :func:`shapley_values`.

    Parameters
    ----------
    value : callable
        ``value(S: tuple[int, ...]) -> ndarray (n,)``.
    n_players : int
    max_players : int
        Refuse larger games (default 12).

    Returns
    -------
    ndarray (n, n_players)

    Raises
    ------
    lmmkit.errors.DataError
        More than ``max_players`` players.

    Examples
    --------
    >>> import numpy as np
    >>> phi = brute_force_shapley(lambda S: np.array([float(len(S) == 2)]), 2)
    >>> phi.tolist()  # the "both needed" game splits the value equally
    [[0.5, 0.5]]
    """
    m = int(n_players)
    if m > int(max_players):
        raise DataError(
            f"brute-force Shapley enumeration of {m} features needs {m} x 2**{m - 1} "
            f"coalition values; the limit is {max_players}. Use shapley_values(..., "
            "method='exact') (up to 20 players) or method='sampling'."
        )
    w = _weights(m)
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def v(S: tuple[int, ...]) -> np.ndarray:
        if S not in cache:
            cache[S] = np.asarray(value(S), dtype=float)
        return cache[S]

    phi = None
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for k in range(m):
            for S in itertools.combinations(others, k):
                term = w[k] * (v(tuple(sorted(S + (i,)))) - v(S))
                if phi is None:
                    phi = np.zeros((len(term), m))
                phi[:, i] += term
    return phi if phi is not None else np.zeros((0, m))


# --------------------------------------------------------------------------- public
def shapley_values(
    model: Any,
    X: pd.DataFrame,
    *,
    background: pd.DataFrame | None = None,
    mode: Mode = "interventional",
    method: Literal["auto", "exact", "sampling"] = "auto",
    max_exact: int = DEFAULT_MAX_EXACT,
    n_permutations: int = 2000,
    seed: int | None = None,
) -> ShapleyResult:
    """Shapley values of a linear predictor, interventional or observational (Gaussian).

    Parameters
    ----------
    model
        ``(coef, intercept)``, a scikit-learn linear model (logistic: logit scale), a
        :class:`~lmmkit.signatures.CVPenalized` (lambda_1se), ``(PenalizedPath, lambda)`` or
        an LMM/GLMM result (fixed effects; each model term, e.g. all dummies of a factor, is
        one player; link scale).
    X : DataFrame
        Rows to explain: the model's feature columns (for LMM/GLMM: the raw data columns
        the formula uses).
    background : DataFrame, optional
        Data defining the mean (and, observational, the covariance); the training data.
        Default: ``X``.
    mode : {"interventional", "observational"}
        ``"correlation_dependent"`` is accepted as shap's name for observational.
    method : {"auto", "exact", "sampling"}
        Observational only: exact enumeration (error above ``max_exact`` players), antithetic
        permutation sampling, or exact when possible else sampling.
    max_exact : int
        Largest number of players enumerated exactly (default 16, at most 20).
    n_permutations, seed
        Sampling budget and seed.

    Returns
    -------
    ShapleyResult

    Raises
    ------
    lmmkit.errors.DataError
        Unknown mode/method, missing feature columns, non-finite values, ``method="exact"``
        with more players than ``max_exact``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmmkit
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((200, 1))
    >>> X = pd.DataFrame(np.hstack([z, z + 0.3 * rng.standard_normal((200, 1))]),
    ...                  columns=["a", "b"])
    >>> res = lmmkit.shapley_values((pd.Series({"a": 1.0, "b": 0.0}), 0.0), X,
    ...                             mode="observational")
    >>> bool(res.values["b"].abs().sum() > 0)  # b gets credit through its correlation with a
    True
    """
    where = "shapley_values: "
    if mode == "correlation_dependent":
        mode = "observational"
    if mode not in ("interventional", "observational"):
        raise DataError(f"{where}mode={mode!r} is not 'interventional' or 'observational'.")
    if method not in ("auto", "exact", "sampling"):
        raise DataError(f"{where}method={method!r} is not 'auto', 'exact' or 'sampling'.")
    if not 1 <= int(max_exact) <= MAX_EXACT_PLAYERS:
        raise DataError(f"{where}max_exact={max_exact!r} must be between 1 and "
                        f"{MAX_EXACT_PLAYERS} (2**{MAX_EXACT_PLAYERS} coalitions).")  # fmt: skip
    if not isinstance(X, pd.DataFrame):
        raise DataError(f"{where}X must be a pandas DataFrame; got {type(X).__name__}.")
    spec = linear_predictor(model)
    bg = X if background is None else background
    if not isinstance(bg, pd.DataFrame):
        raise DataError(f"{where}background must be a DataFrame; got {type(bg).__name__}.")
    Xd, Bd = _design(spec, X, where), _design(spec, bg, where)
    names = list(Xd.columns)
    coef = spec["coef"]
    groups = spec["groups"] or {c: [c] for c in names}
    players = {g: [names.index(c) for c in cols] for g, cols in groups.items()}
    xa, ba = Xd.to_numpy(dtype=float), Bd.to_numpy(dtype=float)
    for arr, what in ((xa, "X"), (ba, "background")):
        if not np.isfinite(arr).all():
            i, j = (int(v[0]) for v in np.nonzero(~np.isfinite(arr)))
            raise DataError(f"{where}{what} has a missing or infinite value in {names[j]!r} "
                            f"(row {i}); impute or drop it first.")  # fmt: skip
    mu = ba.mean(axis=0)
    base = float(spec["intercept"] + coef @ mu)
    p = len(names)
    checks: dict[str, Any] = {"zero_variance": [], "duplicates": [], "ridge_added": 0.0}
    T = np.zeros((len(players), p))
    T_se = np.zeros_like(T)
    used = "closed form"
    if mode == "interventional":
        for gi, idx in enumerate(players.values()):
            T[gi, idx] = coef[idx]
    else:
        T, T_se, used = _observational(ba, coef, list(players.values()), names, method,
                                       int(max_exact), int(n_permutations), seed, checks,
                                       where)  # fmt: skip
    phi = (xa - mu) @ T.T
    plist = list(players)
    values = pd.DataFrame(phi, index=X.index, columns=plist)
    shown = {}
    for g, idx in players.items():
        shown[g] = xa[:, idx[0]] if len(idx) == 1 else (xa[:, idx] - mu[idx]) @ coef[idx]
    return ShapleyResult(
        values=values,
        base_value=base,
        data=pd.DataFrame(shown, index=X.index),
        mode=mode,
        method=used,
        scale=spec["scale"],
        transform=T,
        transform_se=T_se,
        players={g: [names[i] for i in idx] for g, idx in players.items()},
        checks=checks,
    )


def _design(spec: dict[str, Any], data: pd.DataFrame, where: str) -> pd.DataFrame:
    if spec["design"] is not None:
        try:
            return spec["design"](data)
        except Exception as exc:
            raise DataError(f"{where}cannot build the model's fixed-effects columns from the "
                            f"data: {exc}") from exc  # fmt: skip
    names = spec["names"]
    if names is None:
        if data.shape[1] != len(spec["coef"]):
            raise DataError(f"{where}the model has {len(spec['coef'])} coefficients but the "
                            f"data have {data.shape[1]} columns.")  # fmt: skip
        return data
    missing = [c for c in names if c not in data.columns]
    if missing:
        raise DataError(f"{where}data lack the model's feature column(s) {missing[:5]}.")
    return data[names]


def _observational(
    ba: np.ndarray, coef: np.ndarray, players: list[list[int]], names: list[str],
    method: str, max_exact: int, n_perm: int, seed: Any, checks: dict[str, Any], where: str,
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    m, p = len(players), ba.shape[1]
    if method == "exact" and m > max_exact:
        raise DataError(
            f"{where}exact enumeration of {m} players needs 2**{m} coalitions; the limit is "
            f"max_exact={max_exact}. Use method='sampling' (Monte-Carlo, with standard "
            "errors) or explain fewer features (e.g. the signature's selected ones)."
        )
    sd = ba.std(axis=0, ddof=1) if len(ba) > 1 else np.zeros(p)
    zero = sd <= 1e-8 * np.maximum(1.0, np.abs(ba).max(axis=0))
    checks["zero_variance"] = [names[j] for j in np.flatnonzero(zero)]
    live = [j for j in range(p) if not zero[j]]
    if not live:
        return np.zeros((m, p)), np.zeros((m, p)), "closed form"
    R = np.corrcoef(ba[:, live], rowvar=False).reshape(len(live), len(live))
    b = coef[live] * sd[live]
    # exact duplicates (correlation 1): keep one representative carrying the others' effect
    rep = list(range(len(live)))
    for i in range(len(live)):
        if rep[i] != i:
            continue
        for j in range(i + 1, len(live)):
            if rep[j] == j and R[i, j] > 1 - 1e-12:
                rep[j] = i
    dup = {}
    for j, r in enumerate(rep):
        if r != j:
            dup.setdefault(r, [r]).append(j)
    checks["duplicates"] = [[names[live[j]] for j in grp] for grp in dup.values()]
    keep = [j for j in range(len(live)) if rep[j] == j]
    b_keep = np.array([b[[k for k in range(len(live)) if rep[k] == j]].sum() for j in keep])
    Rk = R[np.ix_(keep, keep)]
    if np.linalg.eigvalsh(Rk).min() < 1e-7:
        Rk = Rk + 1e-6 * np.eye(len(keep))
        checks["ridge_added"] = 1e-6
    # players over the kept standardized columns; a player whose columns all vanished is 0
    col_of = {live[j]: keep.index(rep[j]) for j in range(len(live))}
    pl_cols = [sorted({col_of[c] for c in pl if c in col_of}) for pl in players]
    active = [i for i, c in enumerate(pl_cols) if c]
    # a representative shared by several players: split its column's credit equally
    share = np.zeros(len(keep))
    for i in active:
        share[pl_cols[i]] += 1
    sub = [np.array(pl_cols[i]) for i in active]
    shared = share > 1
    if shared.any():
        return _shared_duplicates(Rk, b_keep, pl_cols, active, share, m, p, live, keep, rep,
                                  sd, method, max_exact, n_perm, seed, checks)  # fmt: skip
    if method == "sampling" or (method == "auto" and len(sub) > max_exact):
        Tk, Tk_se = _sampled_transform(Rk, b_keep, sub, n_perm, np.random.default_rng(seed))
        used = f"sampling ({2 * max(1, n_perm // 2)} antithetic permutations)"
    else:
        Tk, Tk_se = _exact_transform(Rk, b_keep, sub), np.zeros((len(sub), len(keep)))
        used = "exact (all coalitions)"
    T = np.zeros((m, p))
    T_se = np.zeros((m, p))
    for r, i in enumerate(active):
        # back to original columns: a kept column k stands for x_k / sd_k
        for kk, j in enumerate(keep):
            T[i, live[j]] = Tk[r, kk] / sd[live[j]]
            T_se[i, live[j]] = Tk_se[r, kk] / sd[live[j]]
    return T, T_se, used


def _shared_duplicates(Rk, b_keep, pl_cols, active, share, m, p, live, keep, rep, sd, method,
                       max_exact, n_perm, seed, checks):  # fmt: skip
    """Exact duplicates split across players: one player per representative, credit shared
    equally among the duplicate players (Shapley symmetry)."""
    rep_players = [np.array([k]) for k in range(len(keep))]
    if method == "sampling" or (method == "auto" and len(rep_players) > max_exact):
        Tk, _ = _sampled_transform(Rk, b_keep, rep_players, n_perm, np.random.default_rng(seed))
        used = "sampling"
    else:
        Tk, used = _exact_transform(Rk, b_keep, rep_players), "exact (all coalitions)"
    T = np.zeros((m, p))
    for i in active:
        for k in pl_cols[i]:
            for kk, j in enumerate(keep):
                T[i, live[j]] += Tk[k, kk] / share[k] / sd[live[j]]
    if any(len(pl_cols[i]) > 1 for i in active):
        raise ModelError("duplicated features inside multi-column players are not supported; "
                         "drop the duplicate columns.")  # fmt: skip
    return T, np.zeros((m, p)), used
