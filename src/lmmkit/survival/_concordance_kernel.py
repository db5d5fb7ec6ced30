"""Compiled pair counts of the concordance with their per-row influence (numba).

Rows are swept from the longest time down, with Fenwick trees over the ranks of the
predictor: one of the rows at risk, one of the events seen so far. The counts and the
influence are those of R survival's ``concordancefit`` (concordant, discordant, tied.x,
tied.y, tied.xy; for each row the number of its comparable pairs of each kind, unweighted
by its own weight), so that the infinitesimal-jackknife variance can be formed from them.
"""

from __future__ import annotations

import numpy as np

from lmmkit._jit import cached_njit

__all__ = ["concordance_counts"]


@cached_njit(inline="always")
def _add(tree, node, r, w):
    node[r] += w
    i = r + 1
    m = tree.shape[0] - 1
    while i <= m:
        tree[i] += w
        i += i & (-i)


@cached_njit(inline="always")
def _below(tree, r):
    """Sum of the weights of ranks < r."""
    s = 0.0
    i = r
    while i > 0:
        s += tree[i]
        i -= i & (-i)
    return s


@cached_njit()
def _query(tree, node, total, r):
    less = _below(tree, r)
    eq = node[r]
    return total - less - eq, less, eq  # greater, smaller, equal


@cached_njit()
def concordance_counts(
    stop, start, event, rank, weights, timewt, order_stop, order_start, counting, nrank
):
    """Counts (6,: concordant, discordant, tied.x, tied.y, tied.xy, unused) and the
    influence (n, 5) for one stratum. ``order_stop``: rows by stop descending, censored
    before events at equal times; ``order_start``: rows by start descending (counting
    data). ``timewt[k]`` weighs the k-th distinct event time counted from the largest."""
    n = order_stop.shape[0]
    N = stop.shape[0]
    count = np.zeros(6)
    infl = np.zeros((N, 5))
    tree = np.zeros(nrank + 1)
    node = np.zeros(nrank)
    dtree = np.zeros(nrank + 1)
    dnode = np.zeros(nrank)
    total = 0.0
    dtotal = 0.0
    i = 0
    i2 = 0
    utime = 0
    while i < n:
        ii = order_stop[i]
        if event[ii] == 0:
            g, s, e = _query(dtree, dnode, dtotal, rank[ii])
            infl[ii, 0] -= s
            infl[ii, 1] -= g
            infl[ii, 2] -= e
            _add(tree, node, rank[ii], weights[ii])
            total += weights[ii]
            i += 1
            continue
        t = stop[ii]
        if counting:
            while i2 < n and start[order_start[i2]] >= t:
                jj = order_start[i2]
                g, s, e = _query(dtree, dnode, dtotal, rank[jj])
                infl[jj, 0] += s
                infl[jj, 1] += g
                infl[jj, 2] += e
                _add(tree, node, rank[jj], -weights[jj])
                total -= weights[jj]
                i2 += 1
        tw = timewt[utime]
        utime += 1
        j = i
        dwt = 0.0
        while j < n and stop[order_stop[j]] == t:
            jj = order_stop[j]
            count[3] += weights[jj] * dwt * tw
            dwt += weights[jj]
            g, s, e = _query(tree, node, total, rank[jj])
            count[0] += weights[jj] * g * tw
            count[1] += weights[jj] * s * tw
            count[2] += weights[jj] * e * tw
            infl[jj, 0] += g * tw
            infl[jj, 1] += s * tw
            infl[jj, 2] += e * tw
            j += 1
        # tied on x among the tied events (sorted by rank within the time)
        k = i
        while k < j:
            m = k
            wx = 0.0
            while m < j and rank[order_stop[m]] == rank[order_stop[k]]:
                wx += weights[order_stop[m]]
                m += 1
            if m - k > 1:
                for q in range(k, m):
                    jj = order_stop[q]
                    infl[jj, 4] += (wx - weights[jj]) * tw
                    infl[jj, 3] -= (wx - weights[jj]) * tw
                    count[4] += weights[jj] * (wx - weights[jj]) * tw * 0.5
            k = m
        for q in range(i, j):
            jj = order_stop[q]
            _add(dtree, dnode, rank[jj], tw * weights[jj])
            dtotal += tw * weights[jj]
        for q in range(i, j):
            jj = order_stop[q]
            g, s, e = _query(dtree, dnode, dtotal, rank[jj])
            infl[jj, 0] -= s
            infl[jj, 1] -= g
            infl[jj, 2] -= e
            infl[jj, 3] += (dwt - weights[jj]) * tw
            _add(tree, node, rank[jj], weights[jj])
            total += weights[jj]
        i = j
    # rows still in the tree: their pairs with every later-found (shorter) event
    if counting:
        while i2 < n:
            jj = order_start[i2]
            g, s, e = _query(dtree, dnode, dtotal, rank[jj])
            infl[jj, 0] += s
            infl[jj, 1] += g
            infl[jj, 2] += e
            i2 += 1
    else:
        for q in range(n):
            jj = order_stop[q]
            g, s, e = _query(dtree, dnode, dtotal, rank[jj])
            infl[jj, 0] += s
            infl[jj, 1] += g
            infl[jj, 2] += e
    count[3] -= count[4]
    return count, infl
