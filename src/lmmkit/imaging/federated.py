"""Training across sites: FedAvg (simulated) and client drift, beside lmmkit's exact
multi-site fit.

**FedAvg** (McMahan et al. 2017) as a simulation loop in one process (a study, not a deployment;
for a real one run the same client update inside a federated framework such as Flower): every
round each client starts from the global weights, runs ``local_epochs`` epochs of SGD on its
own data, and the server averages the clients' weights, weighted by their sample counts.
With heterogeneous clients and more than one local step, the clients' updates drift towards
their own optima and FedAvg's fixed point moves away from the pooled optimum ("client drift");
:func:`drift_study` measures that distance for IID and by-site (non-IID) splits and several
local-epoch counts, for a linear model whose pooled optimum is known exactly (least squares).

**Exact multi-site fit**: for a linear mixed model with a random site effect, per-site
cross-product summaries (:func:`lmmkit.site_summary`) are sufficient statistics, and
:func:`lmmkit.multisite_fit` reaches the pooled :func:`lmmkit.lmm` fit to rounding:
:func:`exact_multisite` reports the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.imaging.device import get_device, require_torch, seed_everything

__all__ = [
    "split_clients",
    "FedAvgResult",
    "fedavg",
    "fedavg_linear",
    "drift_study",
    "exact_multisite",
]


def split_clients(
    sites: Any, *, scheme: str = "site", n_clients: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Row indices per client: by site (non-IID) or shuffled into equal-size clients (IID).

    Parameters
    ----------
    sites : array (n,)
        Site of each row.
    scheme : {"site", "iid"}
        ``"site"``: one client per site. ``"iid"``: rows shuffled and dealt into
        ``n_clients`` clients (default: as many as sites) of the sites' sizes.
    n_clients : int, optional
    seed : int

    Returns
    -------
    dict of str -> ndarray of int

    Examples
    --------
    >>> {k: v.tolist() for k, v in split_clients(["a", "b", "a"]).items()}
    {'a': [0, 2], 'b': [1]}
    """
    s = pd.Series(np.asarray(sites)).astype(str)
    if scheme == "site":
        return {k: np.flatnonzero((s == k).to_numpy()) for k in sorted(s.unique())}
    if scheme != "iid":
        raise DataError(f"split_clients: scheme={scheme!r} is not 'site' or 'iid'.")
    sizes = s.value_counts().sort_index().to_numpy()
    if n_clients is not None:
        sizes = np.full(int(n_clients), len(s) // int(n_clients))
        sizes[: len(s) - sizes.sum()] += 1
    perm = np.random.default_rng(seed).permutation(len(s))
    cuts = np.cumsum(sizes)[:-1]
    return {f"client{k + 1}": np.sort(p) for k, p in enumerate(np.split(perm, cuts))}


@dataclass(frozen=True, eq=False)
class FedAvgResult:
    """The global model after FedAvg and its per-round log.

    Attributes
    ----------
    model : torch.nn.Module
    history : DataFrame
        Per round: ``round``, ``train_loss`` (pooled loss of the global model), ``distance``
        (to the reference weights, when given).
    client_sizes : dict
    """

    model: Any = field(repr=False)
    history: pd.DataFrame
    client_sizes: dict[str, int]


def _flat_weights(model: Any) -> np.ndarray:
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in model.parameters()])


def fedavg(
    make_model: Callable[[], Any],
    clients: dict[str, tuple[Any, Any]],
    *,
    loss: str = "mse",
    rounds: int = 50,
    local_epochs: int = 1,
    lr: float = 0.05,
    batch_size: int | None = None,
    reference: Any = None,
    seed: int = 0,
    device: Any = None,
) -> FedAvgResult:
    """Simulated FedAvg over ``clients``.

    Parameters
    ----------
    make_model : callable
        Returns a fresh ``torch.nn.Module`` (the same initial weights every call: seed
        inside, or rely on the seeding done here).
    clients : dict of name -> (X, y)
        Each client's inputs and targets (arrays).
    loss : {"mse", "ce"}
        Squared error (regression, model output (n, 1)) or cross-entropy (logits).
    rounds, local_epochs, lr : int, int, float
        Communication rounds; local epochs of plain SGD per round; learning rate.
    batch_size : int, optional
        Local mini-batch size (default: the whole client, so one epoch = one gradient step
        and the run is deterministic).
    reference : array, optional
        Weights (flattened in ``model.parameters()`` order) to measure the distance to, e.g.
        the pooled optimum.
    seed : int
    device : optional

    Returns
    -------
    FedAvgResult

    Raises
    ------
    DataError
        A client with no samples (named), or X and y of different lengths.

    Examples
    --------
    >>> import torch
    >>> X = np.random.default_rng(0).normal(size=(20, 1)).astype(np.float32)
    >>> clients = {"a": (X[:10], 2 * X[:10]), "b": (X[10:], 2 * X[10:])}
    >>> res = fedavg(lambda: torch.nn.Linear(1, 1), clients, rounds=100, lr=0.3)
    >>> round(float(res.model.weight), 2)
    2.0
    """
    torch = require_torch()
    dev = get_device(device)
    gen = seed_everything(seed)
    if not clients:
        raise DataError("fedavg: no clients given.")
    data = {}
    for name, (X, y) in clients.items():
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
        if len(X) == 0:
            raise DataError(
                f"fedavg: client {name!r} has no samples; drop it from the federation (an empty "
                "client cannot contribute an update and would divide the weights by zero)."
            )
        if len(X) != len(y):
            raise DataError(f"fedavg: client {name!r} has {len(X)} inputs but {len(y)} targets.")
        yt = y.astype(np.float32).reshape(len(y), -1) if loss == "mse" else y.astype(np.int64)
        data[name] = (torch.from_numpy(X).to(dev), torch.from_numpy(yt).to(dev))
    if loss not in ("mse", "ce"):
        raise DataError(f"fedavg: loss={loss!r} is not 'mse' or 'ce'.")
    crit = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()
    global_model = make_model().to(dev)
    sizes = {k: len(v[0]) for k, v in data.items()}
    total = sum(sizes.values())
    ref = None if reference is None else np.asarray(reference, dtype=float).ravel()
    rows = []
    for r in range(1, int(rounds) + 1):
        states = []
        for name, (X, y) in data.items():
            local = make_model().to(dev)
            local.load_state_dict(global_model.state_dict())
            opt = torch.optim.SGD(local.parameters(), lr=lr)
            bs = int(batch_size) if batch_size else len(X)
            for _ in range(int(local_epochs)):
                perm = torch.randperm(len(X), generator=gen).to(dev) if batch_size else None
                for s in range(0, len(X), bs):
                    idx = perm[s : s + bs] if perm is not None else slice(s, s + bs)
                    opt.zero_grad(set_to_none=True)
                    crit(local(X[idx]), y[idx]).backward()
                    opt.step()
            states.append((sizes[name] / total, local.state_dict()))
        avg = {
            k: sum(w * st[k].float() for w, st in states).to(states[0][1][k].dtype)
            for k in states[0][1]
        }
        global_model.load_state_dict(avg)
        with torch.no_grad():
            pooled = sum(
                float(crit(global_model(X), y)) * sizes[k] for k, (X, y) in data.items()
            ) / total
        row = {"round": r, "train_loss": pooled}
        if ref is not None:
            row["distance"] = float(np.linalg.norm(_flat_weights(global_model) - ref))
        rows.append(row)
    return FedAvgResult(global_model.eval(), pd.DataFrame(rows), sizes)


def _standardized(X: np.ndarray) -> np.ndarray:
    sd = X.std(0)
    sd[sd == 0] = 1.0
    return (X - X.mean(0)) / sd


def drift_study(
    X: Any,
    y: Any,
    sites: Any,
    *,
    local_epochs: Sequence[int] = (1, 5, 20),
    schemes: Sequence[str] = ("iid", "site"),
    rounds: int = 200,
    lr: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Distance of FedAvg's linear least-squares fit from the pooled optimum, by split and
    local epochs.

    The columns of ``X`` are standardized with the pooled mean and SD (in a real federation
    these come from a secure sum of per-site moments); the pooled optimum is the least-squares
    solution on all rows. FedAvg runs with full-batch local steps through
    :func:`fedavg_linear` (weights then intercept; the same algorithm as :func:`fedavg`, which
    the tests check).

    Parameters
    ----------
    X : array (n, p)
    y : array (n,)
    sites : array (n,)
    local_epochs : sequence of int
    schemes : sequence of {"iid", "site"}
    rounds, lr, seed :
        FedAvg settings (full-batch local steps).

    Returns
    -------
    DataFrame
        One row per (scheme, local_epochs): ``n_clients``, ``rounds``, ``distance``
        (Euclidean, weights and bias), ``relative_distance`` (over the optimum's norm),
        ``max_abs_diff``, ``loss_gap`` (FedAvg's pooled MSE minus the optimum's).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(60, 2))
    >>> t = drift_study(X, X @ [1.0, -1.0], np.repeat(["a", "b", "c"], 20), local_epochs=(1,),
    ...                 schemes=("iid",), rounds=300, lr=0.1)
    >>> bool(t["distance"].iloc[0] < 1e-3)
    True
    """
    Xs = _standardized(np.asarray(X, dtype=float))
    yy = np.asarray(y, dtype=float).ravel()
    if len(Xs) != len(yy) or len(yy) != len(np.asarray(sites)):
        raise DataError("drift_study: X, y and sites differ in length.")
    A = np.column_stack([Xs, np.ones(len(Xs))])
    coef, *_ = np.linalg.lstsq(A, yy, rcond=None)
    opt_loss = float(np.mean((A @ coef - yy) ** 2))
    rows = []
    for scheme in schemes:
        parts = split_clients(sites, scheme=scheme, seed=seed)
        clients = {k: (A[idx], yy[idx]) for k, idx in parts.items()}
        for e in local_epochs:
            w = fedavg_linear(clients, rounds=rounds, local_epochs=e, lr=lr)
            rows.append(
                {
                    "scheme": scheme,
                    "local_epochs": int(e),
                    "n_clients": len(clients),
                    "rounds": int(rounds),
                    "distance": float(np.linalg.norm(w - coef)),
                    "relative_distance": float(np.linalg.norm(w - coef) / np.linalg.norm(coef)),
                    "max_abs_diff": float(np.max(np.abs(w - coef))),
                    "loss_gap": float(np.mean((A @ w - yy) ** 2) - opt_loss),
                }
            )
    return pd.DataFrame(rows)


def fedavg_linear(
    clients: dict[str, tuple[Any, Any]],
    *,
    rounds: int = 200,
    local_epochs: int = 1,
    lr: float = 0.05,
    start: Any = None,
) -> np.ndarray:
    """FedAvg for least squares with full-batch local gradient steps, in NumPy.

    The same algorithm as :func:`fedavg` with ``loss="mse"``, ``batch_size=None`` and a
    ``Linear`` model whose design already holds the intercept column: each local epoch is
    ``w <- w - lr * (2 / n_k) A_k' (A_k w - y_k)``; the server averages with weights ``n_k / n``.

    Parameters
    ----------
    clients : dict of name -> (A, y)
        Design (with intercept column) and response per client.
    rounds, local_epochs, lr :
    start : array, optional
        Initial weights (default zeros).

    Returns
    -------
    ndarray
        The global weights after ``rounds`` rounds.

    Examples
    --------
    >>> A = np.column_stack([np.arange(4.0), np.ones(4)])
    >>> w = fedavg_linear({"a": (A[:2], 2 * A[:2, 0]), "b": (A[2:], 2 * A[2:, 0])},
    ...                   rounds=2000, lr=0.1)
    >>> np.round(w, 3).tolist()
    [2.0, 0.0]
    """
    for name, (Ak, _yk) in clients.items():
        if len(Ak) == 0:
            raise DataError(f"fedavg_linear: client {name!r} has no samples; drop it.")
    n = sum(len(Ak) for Ak, _ in clients.values())
    p = next(iter(clients.values()))[0].shape[1]
    w = np.zeros(p) if start is None else np.asarray(start, dtype=float).copy()
    for _ in range(int(rounds)):
        new = np.zeros(p)
        for Ak, yk in clients.values():
            wk = w.copy()
            for _ in range(int(local_epochs)):
                wk -= lr * (2.0 / len(Ak)) * (Ak.T @ (Ak @ wk - yk))
            new += len(Ak) / n * wk
        w = new
    return w


def exact_multisite(
    data: pd.DataFrame, formula: str, *, site: str, reml: bool = True
) -> pd.DataFrame:
    """Pooled :func:`lmmkit.lmm` vs :func:`lmmkit.multisite_fit` on per-site summaries.

    Parameters
    ----------
    data : DataFrame
        All rows (the pooled fit sees them; each site summary sees only its own).
    formula : str
        A model with one random-effects term ``(... | site)``.
    site : str
        The site column.
    reml : bool

    Returns
    -------
    DataFrame
        One row per fixed effect: ``pooled``, ``multisite``, ``abs_diff``; plus rows
        ``sigma``, ``theta``, ``loglik``.

    Raises
    ------
    DataError
        A site with fewer than 2 rows (the summary is refused: too few patients).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"site": np.repeat(list("abcd"), 15), "x": rng.normal(size=60)})
    >>> d["y"] = d["x"] + np.repeat(rng.normal(size=4), 15) + rng.normal(size=60)
    >>> t = exact_multisite(d, "y ~ x + (1 | site)", site="site")
    >>> bool(t["abs_diff"].max() < 1e-6)
    True
    """
    from lmmkit.models.lmm import lmm
    from lmmkit.validation.multisite import multisite_fit, site_summary

    if site not in data.columns:
        raise DataError(f"exact_multisite: site column {site!r} is not in the data.")
    counts = data[site].value_counts()
    if (counts < 2).any():
        bad = counts[counts < 2]
        raise DataError(
            f"exact_multisite: site(s) {list(map(str, bad.index))} have one subject; a site "
            "summary of one subject is refused. Merge or drop those sites."
        )
    pooled = lmm(formula, data, reml=reml)
    summaries = [
        site_summary(g.drop(columns=[site]), formula, site=str(k), min_patients=2)
        for k, g in data.groupby(site, sort=True)
    ]
    multi = multisite_fit(summaries, reml=reml)
    fe_p, fe_m = pooled.fixef, multi.fixef
    rows = [
        {"quantity": str(k), "pooled": float(fe_p[k]), "multisite": float(fe_m[k])}
        for k in fe_p.index
    ]
    rows.append({"quantity": "sigma", "pooled": float(pooled.sigma), "multisite": float(multi.sigma)})
    rows.append(
        {"quantity": "theta", "pooled": float(np.ravel(pooled.theta)[0]),
         "multisite": float(np.ravel(multi.theta)[0])}
    )  # fmt: skip
    rows.append(
        {"quantity": "loglik", "pooled": float(pooled.loglik), "multisite": float(multi.loglik)}
    )
    out = pd.DataFrame(rows).set_index("quantity")
    out["abs_diff"] = (out["pooled"] - out["multisite"]).abs()
    return out
