"""Pedigree relationships: Henderson's tabular A, inbreeding, and sparse A^-1.

A pedigree is three parallel sequences (id, sire, dam); ``0``, ``"0"``, ``NA``, ``None``,
``NaN``, ``"."`` or ``"-"`` mark an unknown parent.  Parents listed as a parent but not as
an animal are added as founders.  Parents must precede their offspring; with
``sort=True`` (default) the pedigree is reordered (parents first, otherwise keeping the
input order), with ``sort=False`` an out-of-order animal raises :class:`DataError`
naming it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from lmmkit.errors import DataError

__all__ = [
    "Pedigree",
    "prepare_pedigree",
    "relationship_matrix",
    "inbreeding",
    "relationship_inverse",
]

_UNKNOWN = {"0", "NA", "nan", "NaN", "", ".", "-", "None"}


def _is_unknown(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if isinstance(v, (int, np.integer)) and v == 0:
        return True
    return str(v).strip() in _UNKNOWN


@dataclass(frozen=True)
class Pedigree:
    """A pedigree coded 0..n-1 in an order where parents precede offspring (-1 = unknown)."""

    ids: tuple = field(repr=False)
    sire: np.ndarray = field(repr=False)
    dam: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.ids)

    def index(self, animal) -> int:
        try:
            return self.ids.index(animal)
        except ValueError:
            raise DataError(f"animal {animal!r} is not in the pedigree.") from None

    def __repr__(self) -> str:
        return f"Pedigree(n={self.n}, founders={int(np.sum((self.sire < 0) & (self.dam < 0)))})"


def prepare_pedigree(
    ids: Sequence, sires: Sequence, dams: Sequence, *, sort: bool = True
) -> Pedigree:
    """Validate, complete and order a pedigree (see module docstring)."""
    ids = list(ids)
    sires, dams = list(sires), list(dams)
    if not (len(ids) == len(sires) == len(dams)):
        raise DataError(
            f"id, sire and dam must have equal length, got {len(ids)}, {len(sires)}, {len(dams)}."
        )
    seen: dict = {}
    for i, a in enumerate(ids):
        if _is_unknown(a):
            raise DataError(f"pedigree row {i + 1}: animal ID {a!r} is a missing-value code.")
        if a in seen:
            raise DataError(
                f"pedigree row {i + 1}: animal {a!r} is duplicated (first on row {seen[a] + 1})."
            )
        seen[a] = i
    sire_of = {a: (None if _is_unknown(s) else s) for a, s, _ in zip(ids, sires, dams)}
    dam_of = {a: (None if _is_unknown(d) else d) for a, _, d in zip(ids, sires, dams)}
    for a in ids:
        if sire_of[a] is not None and sire_of[a] == a or dam_of[a] is not None and dam_of[a] == a:
            raise DataError(f"animal {a!r} is listed as its own parent.")
    # parents not listed as animals become founders, placed first
    extra = []
    for a in ids:
        for p in (sire_of[a], dam_of[a]):
            if p is not None and p not in seen and p not in extra:
                extra.append(p)
    order_in = extra + ids
    for p in extra:
        sire_of[p] = dam_of[p] = None
    pos = {a: i for i, a in enumerate(order_in)}
    if not sort:
        for a in ids:
            for role, p in (("sire", sire_of[a]), ("dam", dam_of[a])):
                if p is not None and pos[p] > pos[a]:
                    raise DataError(
                        f"animal {a!r} appears before its {role} {p!r}: parents must precede "
                        "offspring (pass sort=True to reorder)."
                    )
        order = order_in
    else:
        # Kahn's algorithm, stable in input order
        children: dict = {a: [] for a in order_in}
        indeg = dict.fromkeys(order_in, 0)
        for a in order_in:
            for p in {sire_of[a], dam_of[a]} - {None}:
                children[p].append(a)
                indeg[a] += 1
        heap = [pos[a] for a in order_in if indeg[a] == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            a = order_in[heapq.heappop(heap)]
            order.append(a)
            for c in children[a]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    heapq.heappush(heap, pos[c])
        if len(order) < len(order_in):
            stuck = [a for a in order_in if indeg[a] > 0]
            raise DataError(
                f"pedigree has a cycle (an animal is its own ancestor) involving {stuck[:5]!r}."
            )
    code = {a: i for i, a in enumerate(order)}
    sire = np.array([-1 if sire_of[a] is None else code[sire_of[a]] for a in order], dtype=np.int64)
    dam = np.array([-1 if dam_of[a] is None else code[dam_of[a]] for a in order], dtype=np.int64)
    return Pedigree(ids=tuple(order), sire=sire, dam=dam)


def _coerce(pedigree, sort: bool = True) -> Pedigree:
    if isinstance(pedigree, Pedigree):
        return pedigree
    if isinstance(pedigree, pd.DataFrame):
        cols = list(pedigree.columns[:3])
        return prepare_pedigree(
            pedigree[cols[0]].tolist(),
            pedigree[cols[1]].tolist(),
            pedigree[cols[2]].tolist(),
            sort=sort,
        )
    ids, sires, dams = zip(*pedigree)
    return prepare_pedigree(ids, sires, dams, sort=sort)


def relationship_matrix(pedigree, *, sort: bool = True) -> tuple[np.ndarray, tuple]:
    """Numerator relationship matrix A by Henderson's tabular method.

    ``pedigree`` is a :class:`Pedigree`, a DataFrame (id, sire, dam columns) or rows of
    (id, sire, dam).  Returns (A, ids) with rows in the pedigree's (parents-first) order.
    Dense O(n^2) memory: meant for pedigrees up to a few thousand animals.
    """
    ped = _coerce(pedigree, sort)
    n = ped.n
    a = np.zeros((n, n))
    for i in range(n):
        s, d = ped.sire[i], ped.dam[i]
        if i > 0:
            row = np.zeros(i)
            if s >= 0:
                row += 0.5 * a[s, :i]
            if d >= 0:
                row += 0.5 * a[d, :i]
            a[i, :i] = row
            a[:i, i] = row
        a[i, i] = 1.0 + (0.5 * a[s, d] if (s >= 0 and d >= 0) else 0.0)
    return a, ped.ids


def inbreeding(pedigree, *, sort: bool = True) -> np.ndarray:
    """Inbreeding coefficients by Meuwissen & Luo (1992), without forming A."""
    ped = _coerce(pedigree, sort)
    n = ped.n
    f = np.zeros(n)
    dvar = np.zeros(n)  # Mendelian-sampling variances (diagonal of D in A = L D L')
    for i in range(n):
        s, d = ped.sire[i], ped.dam[i]
        fs = f[s] if s >= 0 else -1.0
        fd = f[d] if d >= 0 else -1.0
        dvar[i] = 0.5 - 0.25 * (fs + fd)
        if s < 0 or d < 0:
            f[i] = 0.0
            continue
        # row i of L over the ancestors of i, visited from youngest to oldest
        lrow = {i: 1.0}
        heap = [-i]
        queued = {i}
        total = 0.0
        while heap:
            j = -heapq.heappop(heap)
            lij = lrow[j]
            total += lij * lij * dvar[j]
            for p in (ped.sire[j], ped.dam[j]):
                if p >= 0:
                    lrow[p] = lrow.get(p, 0.0) + 0.5 * lij
                    if p not in queued:
                        queued.add(p)
                        heapq.heappush(heap, -p)
        f[i] = total - 1.0
    return f


def relationship_inverse(pedigree, *, sort: bool = True) -> tuple[sparse.csr_matrix, tuple]:
    """A^-1 by Henderson's direct rules with inbreeding (Quaas 1976), as a sparse matrix.

    Returns (Ainv, ids) in the pedigree's (parents-first) order.
    """
    ped = _coerce(pedigree, sort)
    n = ped.n
    f = inbreeding(ped)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i in range(n):
        s, d = int(ped.sire[i]), int(ped.dam[i])
        known = [p for p in (s, d) if p >= 0]
        dii = 1.0 - sum(0.25 * (1.0 + f[p]) for p in known)
        alpha = 1.0 / dii
        rows.append(i)
        cols.append(i)
        vals.append(alpha)
        for p in known:
            rows += [i, p]
            cols += [p, i]
            vals += [-0.5 * alpha, -0.5 * alpha]
        for p in known:
            for q in known:
                rows.append(p)
                cols.append(q)
                vals.append(0.25 * alpha)
    ainv = sparse.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    ainv.sum_duplicates()
    return ainv, ped.ids
