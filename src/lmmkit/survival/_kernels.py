"""Compiled risk-set sums of the Cox partial likelihood (numba; one pass per evaluation).

Data arrive sorted once: ``order_stop`` by (stratum, stop time descending) and, for
counting-process data, ``order_start`` by (stratum, start time descending). One backward
sweep over the distinct event times adds the rows whose stop time is >= t to the running
sums and removes the rows whose start time is >= t (at risk means start < t <= stop), as
R survival's ``agfit4``/``coxfit6`` do. Ties are handled by Breslow's or Efron's rule with
Efron's weights the mean case weight of the tied events (survival's convention).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["cox_sums", "cholesky2", "chsolve2", "chinv2"]


@numba.njit(cache=True)
def cox_sums(stop, start, event, X, eta, weights, stratum, order_stop, order_start, efron,
             counting, want_info, gtime):
    """Partial log-likelihood, score and information at the linear predictor ``eta``.

    Parameters are float/int arrays in the data's original row order; ``order_stop`` and
    ``order_start`` index the rows in use (counting-process rows whose interval holds no
    event time of their stratum must be left out, as survival's ``agreg.fit`` does, or the
    at-risk count would go wrong); ``counting`` says whether ``start`` is used. Returns (loglik, u (p,), imat (p, p)); ``imat`` is zero
    when ``want_info`` is false.

    With a non-empty ``gtime`` (a value per row, read at each event time from an event row) the sums of
    cox.zph's score test are accumulated too: the score and information of the added
    covariates ``X * g(t)`` at coefficient 0, returned as a fourth item
    (u_g (p,), I_xg (p, p), I_gg (p, p)).
    """
    zph = gtime.shape[0] > 0
    p = X.shape[1]
    n = order_stop.shape[0]  # rows in use (rows never at risk at an event time left out)
    u = np.zeros(p)
    imat = np.zeros((p, p))
    a = np.zeros(p)
    cmat = np.zeros((p, p))
    a2 = np.zeros(p)
    cmat2 = np.zeros((p, p))
    loglik = 0.0
    ug = np.zeros(p)
    ixg = np.zeros((p, p))
    igg = np.zeros((p, p))
    u_before = np.zeros(p)
    i_before = np.zeros((p, p))
    gval = 0.0
    # a shift per stratum keeps exp() finite: the partial likelihood is invariant to it
    person = 0
    indx1 = 0
    while person < n:
        s = stratum[order_stop[person]]
        # the stratum's rows in order_stop: [person, end)
        end = person
        shift = -np.inf
        while end < n and stratum[order_stop[end]] == s:
            if eta[order_stop[end]] > shift:
                shift = eta[order_stop[end]]
            end += 1
        denom = 0.0
        a[:] = 0.0
        cmat[:, :] = 0.0
        nrisk = 0
        # skip start rows of earlier strata
        while counting and indx1 < n and stratum[order_start[indx1]] != s:
            indx1 += 1
        k = person
        while k < end:
            # the next event time among rows not yet added
            while k < end and event[order_stop[k]] == 0:
                k += 1
            if k == end:
                break
            dtime = stop[order_stop[k]]
            if zph:
                gval = gtime[order_stop[k]]
                u_before[:] = u
                i_before[:, :] = imat
            if counting:
                while indx1 < n and stratum[order_start[indx1]] == s:
                    r = order_start[indx1]
                    if start[r] < dtime:
                        break
                    nrisk -= 1
                    if nrisk == 0:
                        denom = 0.0
                        a[:] = 0.0
                        cmat[:, :] = 0.0
                    else:
                        risk = np.exp(eta[r] - shift) * weights[r]
                        denom -= risk
                        for i in range(p):
                            a[i] -= risk * X[r, i]
                            if want_info:
                                for j in range(i + 1):
                                    cmat[i, j] -= risk * X[r, i] * X[r, j]
                    indx1 += 1
            denom2 = 0.0
            meanwt = 0.0
            deaths = 0
            a2[:] = 0.0
            if want_info:
                cmat2[:, :] = 0.0
            while person < end:
                r = order_stop[person]
                if stop[r] < dtime:
                    break
                nrisk += 1
                risk = np.exp(eta[r] - shift) * weights[r]
                if event[r] != 0:
                    deaths += 1
                    denom2 += risk
                    meanwt += weights[r]
                    loglik += weights[r] * (eta[r] - shift)
                    for i in range(p):
                        u[i] += weights[r] * X[r, i]
                        a2[i] += risk * X[r, i]
                        if want_info:
                            for j in range(i + 1):
                                cmat2[i, j] += risk * X[r, i] * X[r, j]
                else:
                    denom += risk
                    for i in range(p):
                        a[i] += risk * X[r, i]
                        if want_info:
                            for j in range(i + 1):
                                cmat[i, j] += risk * X[r, i] * X[r, j]
                person += 1
            k = person
            if (not efron) or deaths == 1:
                denom += denom2
                loglik -= meanwt * np.log(denom)
                for i in range(p):
                    a[i] += a2[i]
                    mean_i = a[i] / denom
                    u[i] -= meanwt * mean_i
                    if want_info:
                        for j in range(i + 1):
                            cmat[i, j] += cmat2[i, j]
                            imat[j, i] += meanwt * (cmat[i, j] - mean_i * a[j]) / denom
            else:
                wtave = meanwt / deaths
                for _ in range(deaths):
                    denom += denom2 / deaths
                    loglik -= wtave * np.log(denom)
                    for i in range(p):
                        a[i] += a2[i] / deaths
                        mean_i = a[i] / denom
                        u[i] -= wtave * mean_i
                        if want_info:
                            for j in range(i + 1):
                                cmat[i, j] += cmat2[i, j] / deaths
                                imat[j, i] += wtave * (cmat[i, j] - mean_i * a[j]) / denom
            if zph:
                for i in range(p):
                    ug[i] += gval * (u[i] - u_before[i])
                    for j in range(i, p):
                        d_ij = imat[i, j] - i_before[i, j]
                        ixg[i, j] += gval * d_ij
                        igg[i, j] += gval * gval * d_ij
        # rows after the last event of the stratum are never at risk at an event time
        person = end
        if counting:
            while indx1 < n and stratum[order_start[indx1]] == s:
                indx1 += 1
    for i in range(p):
        for j in range(i):
            imat[i, j] = imat[j, i]
            ixg[i, j] = ixg[j, i]
            igg[i, j] = igg[j, i]
    return loglik, u, imat, (ug, ixg, igg)


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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
