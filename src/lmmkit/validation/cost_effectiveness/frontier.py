"""The efficiency frontier: strict and extended dominance, ICERs, net monetary benefit.

Strategies are sorted by cost (ties: larger effect first). A strategy is *strictly
dominated* when another costs no more and gives no less effect, one of them strictly; of
strategies with identical cost and effect the first listed is kept and the others are marked
``identical``. Among the rest (cost and effect now both increasing), a strategy whose ICER
against the previous one exceeds the next one's ICER is *extendedly dominated* (a mix of its
neighbours gives more effect for the same cost); it is removed and the ICERs recomputed until
they increase. The survivors form the frontier: the lower convex hull of the cost-effect
plane, each strategy optimal for willingness-to-pay between its ICER and the next one's.
Equal successive ICERs keep both strategies.

Net monetary benefit: NMB(lambda) = lambda * effect - cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["efficiency_frontier", "net_monetary_benefit"]


def efficiency_frontier(cost, effect, names=None) -> pd.DataFrame:
    """Classify strategies as frontier, strictly or extendedly dominated, with ICERs.

    Parameters
    ----------
    cost, effect : array-like
        Expected cost and effect of each strategy.
    names : list of str, optional
        Strategy names (default ``"s0"``, ``"s1"``, ...).

    Returns
    -------
    DataFrame
        Indexed by strategy in input order: ``cost``, ``effect``, ``status`` (``frontier``,
        ``dominated``, ``extendedly dominated``, ``identical``), ``reference`` (the frontier
        strategy an ICER is taken against, or the strategy that dominates), ``inc_cost``,
        ``inc_effect``, ``icer`` (NaN off the frontier and for its cheapest strategy).

    Examples
    --------
    >>> from lmmkit import efficiency_frontier
    >>> f = efficiency_frontier([0, 200, 300, 400], [0, 1, 3, 2.5], ["A", "B", "C", "D"])
    >>> f["status"].tolist()
    ['frontier', 'extendedly dominated', 'frontier', 'dominated']
    >>> float(f.loc["C", "icer"]), f.loc["C", "reference"], f.loc["D", "reference"]
    (100.0, 'A', 'C')
    """
    c = np.asarray(cost, dtype=float)
    e = np.asarray(effect, dtype=float)
    if c.ndim != 1 or c.shape != e.shape or len(c) == 0:
        raise DataError(
            f"efficiency_frontier: cost and effect must be 1-D of the same length, got "
            f"{c.shape} and {e.shape}."
        )
    if not (np.isfinite(c).all() and np.isfinite(e).all()):
        raise DataError("efficiency_frontier: cost and effect must be finite.")
    names = [f"s{i}" for i in range(len(c))] if names is None else [str(n) for n in names]
    if len(names) != len(c) or len(set(names)) != len(names):
        raise DataError("efficiency_frontier: names must be unique, one per strategy.")
    n = len(c)
    status = np.array(["frontier"] * n, dtype=object)
    reference = np.array([""] * n, dtype=object)
    order = sorted(range(n), key=lambda i: (c[i], -e[i], i))
    kept: list[int] = []
    for i in order:
        same = [k for k in kept if c[k] == c[i] and e[k] == e[i]]
        better = [k for k in kept if c[k] <= c[i] and e[k] >= e[i]]
        if same:
            status[i], reference[i] = "identical", names[same[0]]
        elif better:
            status[i], reference[i] = "dominated", names[better[0]]
        else:
            kept.append(i)
    # kept: cost and effect strictly increasing; remove extendedly dominated ones
    frontier = list(kept)
    while True:
        icers = [
            (c[frontier[j]] - c[frontier[j - 1]]) / (e[frontier[j]] - e[frontier[j - 1]])
            for j in range(1, len(frontier))
        ]
        bad = [j for j in range(len(icers) - 1) if icers[j] > icers[j + 1]]
        if not bad:
            break
        j = bad[0] + 1  # position in frontier of the strategy to remove
        i = frontier[j]
        status[i] = "extendedly dominated"
        reference[i] = f"{names[frontier[j - 1]]} + {names[frontier[j + 1]]}"
        del frontier[j]
    inc_c = np.full(n, np.nan)
    inc_e = np.full(n, np.nan)
    icer = np.full(n, np.nan)
    for j in range(1, len(frontier)):
        i, prev = frontier[j], frontier[j - 1]
        inc_c[i], inc_e[i] = c[i] - c[prev], e[i] - e[prev]
        icer[i] = inc_c[i] / inc_e[i]
        reference[i] = names[prev]
    return pd.DataFrame(
        {
            "cost": c,
            "effect": e,
            "status": status,
            "reference": reference,
            "inc_cost": inc_c,
            "inc_effect": inc_e,
            "icer": icer,
        },
        index=pd.Index(names, name="strategy"),
    )


def net_monetary_benefit(cost, effect, wtp, names=None) -> pd.DataFrame:
    """Net monetary benefit ``wtp * effect - cost`` of each strategy at each willingness to pay.

    Parameters
    ----------
    cost, effect : array-like
        Expected cost and effect of each strategy.
    wtp : float or array-like
        Willingness to pay per unit of effect (>= 0).
    names : list of str, optional
        Strategy names.

    Returns
    -------
    DataFrame
        Indexed by ``wtp``, one column per strategy and a last column ``best`` naming the
        strategy with the largest NMB (the first listed among ties).

    Examples
    --------
    >>> from lmmkit import net_monetary_benefit
    >>> t = net_monetary_benefit([0, 500], [1.0, 1.02], [10_000, 50_000], ["none", "test"])
    >>> t["test"].tolist(), t["best"].tolist()
    ([9700.0, 50500.0], ['none', 'test'])
    """
    c = np.asarray(cost, dtype=float)
    e = np.asarray(effect, dtype=float)
    lam = np.atleast_1d(np.asarray(wtp, dtype=float))
    if not np.isfinite(lam).all() or (lam < 0).any():
        raise DataError(f"net_monetary_benefit: wtp must be finite and >= 0, got {lam!r}.")
    names = [f"s{i}" for i in range(len(c))] if names is None else [str(n) for n in names]
    nmb = lam[:, None] * e[None, :] - c[None, :]
    out = pd.DataFrame(nmb, columns=names, index=pd.Index(lam, name="wtp"))
    out["best"] = np.asarray(names, dtype=object)[np.argmax(nmb, axis=1)]
    return out
