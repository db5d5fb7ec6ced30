"""Compiled risk-set sweep of the Cox partial likelihood (numba; one pass per evaluation).

Data arrive sorted once: ``order_stop`` by (stratum, stop time descending) and, for
counting-process data, ``order_start`` by (stratum, start time descending). One backward
sweep over the distinct event times adds the rows whose stop time is >= t to the running
sums and removes the rows whose start time is >= t (at risk means start < t <= stop), as
R survival's ``agfit4``/``coxfit6`` do. Ties: Breslow's rule, or Efron's with d pieces per
time (the k-th removes k/d of the tied events' risk) and the tied events' mean case weight
(survival's convention).

The sweep works in O(n p) and never forms a p x p sum per row. The information
``sum_k wbar_k [S2_k / D_k - a_k a_k']`` (a_k = S1_k / D_k) is returned in two parts: the
first equals ``X' diag(w r h) X`` where ``h_i`` is row i's share of the cumulative hazard
(``sum of wbar_k (1 - f_k [i dies at k]) / D_k`` over its pieces), so the caller forms it
with one BLAS product; the second is ``A' diag(wbar) A`` over the pieces' means. Random
intercepts (one grouping factor, codes ``group``) add the frailty score, the diagonal of
the frailty block and the frailty-by-covariate block: their second parts
``sum_k c_k S1_g(k)^2`` and ``sum_k c_k S1_g(k) S1_x(k)`` (c_k = wbar_k / D_k^2) are
accumulated lazily, when a group's risk sum changes, so the cost stays O(n p).
"""

from __future__ import annotations

import numpy as np

from lmmkit._jit import cached_njit

__all__ = ["cox_pass", "cholesky2", "chsolve2", "chinv2"]


@cached_njit(inline="always")
def _flush(g, S1g, lastC, lastCV, diag2, cross2, C, CV, p):
    dc = C - lastC[g]
    s = S1g[g]
    diag2[g] += s * s * dc
    for j in range(p):
        cross2[g, j] += s * (CV[j] - lastCV[g, j])
        lastCV[g, j] = CV[j]
    lastC[g] = C


@cached_njit()
def cox_pass(
    stop,
    start,
    event,
    X,
    eta,
    weights,
    stratum,
    order_stop,
    order_start,
    efron,
    counting,
    gtime,
    group,
    q,
):
    """One sweep. Returns (loglik, u, wrh (n, 3), A (pieces, p), wbar (pieces,), g (pieces,),
    ub (q,), diag2 (q,), cross2 (q, p)).

    ``wrh[:, 0]`` is each row's weighted risk times its hazard share (w r h); ``[:, 1]`` and
    ``[:, 2]`` the same with the hazard pieces weighted by
    ``g(t)``/``g(t)^2`` of each piece (``gtime``: a value per row read from an event row
    at each time; empty to skip). ``q = 0``: no frailty.
    """
    p = X.shape[1]
    n = order_stop.shape[0]
    N = stop.shape[0]
    zph = gtime.shape[0] > 0
    u = np.zeros(p)
    h = np.zeros((N, 3))
    nev = 0
    for j in range(n):
        if event[order_stop[j]] != 0:
            nev += 1
    A = np.zeros((nev, p))  # at most one piece per event
    wbar = np.zeros(nev)
    gk = np.zeros(nev)
    ub = np.zeros(q)
    diag2 = np.zeros(q)
    cross2 = np.zeros((q, p))
    S1g = np.zeros(q)
    lastC = np.zeros(q)
    lastCV = np.zeros((q, p))
    Eg = np.zeros(q)
    C = 0.0
    CV = np.zeros(p)
    a = np.zeros(p)
    a2 = np.zeros(p)
    dpiece_v = np.zeros(p)
    loglik = 0.0
    npieces = 0
    person = 0
    indx1 = 0
    dead_rows = np.empty(n, np.int64)
    rk = np.zeros(N)  # each row's weighted risk (with its stratum's shift)
    inrisk = np.zeros(N, np.bool_)
    add_idx = np.zeros(N, np.int64)  # first piece of the row's window (sweep order)
    rem_idx = np.full(N, -1, np.int64)  # one past its last piece; -1: end of stratum
    own = np.zeros(N)  # the event's own share removed from its time's pieces
    hk = np.zeros(nev)
    while person < n:
        s = stratum[order_stop[person]]
        end = person
        shift = -np.inf
        while end < n and stratum[order_stop[end]] == s:
            if eta[order_stop[end]] > shift:
                shift = eta[order_stop[end]]
            end += 1
        denom = 0.0
        a[:] = 0.0
        nrisk = 0
        first_add = person
        first_piece = npieces
        while counting and indx1 < n and stratum[order_start[indx1]] != s:
            indx1 += 1
        k = person
        while k < end:
            while k < end and event[order_stop[k]] == 0:
                k += 1
            if k == end:
                break
            dtime = stop[order_stop[k]]
            gval = gtime[order_stop[k]] if zph else 0.0
            if counting:
                while indx1 < n and stratum[order_start[indx1]] == s:
                    r = order_start[indx1]
                    if start[r] < dtime:
                        break
                    nrisk -= 1
                    if inrisk[r]:
                        rem_idx[r] = npieces
                        inrisk[r] = False
                    risk = np.exp(eta[r] - shift) * weights[r]
                    if q > 0:
                        g = group[r]
                        _flush(g, S1g, lastC, lastCV, diag2, cross2, C, CV, p)
                        S1g[g] -= risk
                    if nrisk == 0:
                        denom = 0.0
                        a[:] = 0.0
                    else:
                        denom -= risk
                        for i in range(p):
                            a[i] -= risk * X[r, i]
                    indx1 += 1
            denom2 = 0.0
            meanwt = 0.0
            deaths = 0
            a2[:] = 0.0
            while person < end:
                r = order_stop[person]
                if stop[r] < dtime:
                    break
                nrisk += 1
                add_idx[r] = npieces
                inrisk[r] = True
                risk = np.exp(eta[r] - shift) * weights[r]
                rk[r] = risk
                if q > 0:
                    g = group[r]
                    _flush(g, S1g, lastC, lastCV, diag2, cross2, C, CV, p)
                    S1g[g] += risk
                if event[r] != 0:
                    dead_rows[deaths] = r
                    deaths += 1
                    denom2 += risk
                    meanwt += weights[r]
                    loglik += weights[r] * (eta[r] - shift)
                    for i in range(p):
                        u[i] += weights[r] * X[r, i]
                        a2[i] += risk * X[r, i]
                    if q > 0:
                        ub[group[r]] += weights[r]
                        Eg[group[r]] += risk
                else:
                    denom += risk
                    for i in range(p):
                        a[i] += risk * X[r, i]
                person += 1
            k = person
            denom += denom2
            for i in range(p):
                a[i] += a2[i]
            npc = deaths if (efron and deaths > 1) else 1
            wt = meanwt / npc
            sum_cf = 0.0
            sum_cf2 = 0.0
            sum_hf = 0.0
            dpiece_v[:] = 0.0
            for kk in range(npc):
                f = kk / npc
                d = denom - f * denom2
                loglik -= wt * np.log(d)
                ck = wt / (d * d)
                hk[npieces] = wt / d
                sum_hf += f * wt / d
                for i in range(p):
                    si = a[i] - f * a2[i]
                    A[npieces, i] = si / d
                    u[i] -= wt * si / d
                    CV[i] += ck * si
                    dpiece_v[i] += ck * f * si
                C += ck
                sum_cf += ck * f
                sum_cf2 += ck * f * f
                wbar[npieces] = wt
                gk[npieces] = gval
                npieces += 1
            # the events' own share of their time's hazard is removed (Efron)
            for j in range(deaths):
                own[dead_rows[j]] = sum_hf
            if q > 0:
                for j in range(deaths):
                    g = group[dead_rows[j]]
                    if Eg[g] == 0.0:
                        continue
                    e = Eg[g]
                    diag2[g] += -2.0 * S1g[g] * e * sum_cf + e * e * sum_cf2
                    for i in range(p):
                        cross2[g, i] -= e * dpiece_v[i]
                    Eg[g] = 0.0
        # end of stratum: close the rows still at risk, flush and empty the groups
        # each row's hazard share: sums of its window's pieces taken from the earliest
        # piece up (suffix sums in sweep order), so that no large cumulative hazard is
        # differenced (the hazard pieces span many orders of magnitude near separation)
        p0 = first_piece
        suf = np.zeros((npieces - p0 + 1, 3))
        for kk in range(npieces - 1, p0 - 1, -1):
            gv = gk[kk]
            suf[kk - p0, 0] = suf[kk - p0 + 1, 0] + hk[kk]
            suf[kk - p0, 1] = suf[kk - p0 + 1, 1] + hk[kk] * gv
            suf[kk - p0, 2] = suf[kk - p0 + 1, 2] + hk[kk] * gv * gv
        for j in range(first_add, person):
            r = order_stop[j]
            lo = add_idx[r] - p0
            hi = (rem_idx[r] if rem_idx[r] >= 0 else npieces) - p0
            inrisk[r] = False
            gown = gtime[r] if (zph and event[r] != 0) else 0.0
            for c in range(3):
                gw = 1.0 if c == 0 else (gown if c == 1 else gown * gown)
                h[r, c] = rk[r] * (suf[lo, c] - suf[hi, c] - own[r] * gw)
        while counting and indx1 < n and stratum[order_start[indx1]] == s:
            indx1 += 1
        if q > 0:
            for g in range(q):
                _flush(g, S1g, lastC, lastCV, diag2, cross2, C, CV, p)
                S1g[g] = 0.0
        person = end
    # ub: events minus expected, completed by the caller with sum(w r h) per group
    return loglik, u, h, A[:npieces], wbar[:npieces], gk[:npieces], ub, diag2, cross2


@cached_njit()
def cholesky2(matrix, toler):
    """survival's cholesky2: LDL' in place in the lower triangle (D on the diagonal), with
    columns whose pivot is below ``toler`` times the largest diagonal set to zero. Returns
    the rank (negative when the matrix is not non-negative definite)."""
    n = matrix.shape[0]
    nonneg = 1
    eps = 0.0
    for i in range(n):
        if matrix[i, i] > eps:
            eps = matrix[i, i]
        for j in range(i + 1, n):
            matrix[j, i] = matrix[i, j]
    eps = toler if eps == 0 else eps * toler
    rank = 0
    for i in range(n):
        pivot = matrix[i, i]
        if not np.isfinite(pivot) or pivot < eps:
            matrix[i, i] = 0.0
            if pivot < -8 * eps:
                nonneg = -1
        else:
            rank += 1
            for j in range(i + 1, n):
                temp = matrix[j, i] / pivot
                matrix[j, i] = temp
                matrix[j, j] -= temp * temp * pivot
                for k in range(j + 1, n):
                    matrix[k, j] -= temp * matrix[k, i]
    return rank * nonneg


@cached_njit()
def chsolve2(matrix, y):
    """Solve with cholesky2's factor in place of ``y``; zero pivots give zero components."""
    n = matrix.shape[0]
    for i in range(n):
        temp = y[i]
        for j in range(i):
            temp -= y[j] * matrix[i, j]
        y[i] = temp
    for i in range(n - 1, -1, -1):
        if matrix[i, i] == 0:
            y[i] = 0.0
        else:
            temp = y[i] / matrix[i, i]
            for j in range(i + 1, n):
                temp -= y[j] * matrix[j, i]
            y[i] = temp


@cached_njit()
def chinv2(matrix):
    """The inverse from cholesky2's factor (rows/columns of zero pivots are zero); returns
    a new full symmetric matrix."""
    m = matrix.copy()
    n = m.shape[0]
    for i in range(n):
        if m[i, i] > 0:
            m[i, i] = 1.0 / m[i, i]
            for j in range(i + 1, n):
                m[j, i] = -m[j, i]
                for k in range(i):
                    m[j, k] += m[j, i] * m[i, k]
    for i in range(n):
        if m[i, i] == 0:
            for j in range(i):
                m[j, i] = 0.0
            for j in range(i, n):
                m[i, j] = 0.0
        else:
            for j in range(i + 1, n):
                temp = m[j, i] * m[j, j]
                if j != i:
                    m[i, j] = temp
                for k in range(i, j):
                    m[i, k] += temp * m[j, k]
    out = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            out[i, j] = m[i, j]
            out[j, i] = m[i, j]
    return out
