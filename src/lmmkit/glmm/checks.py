"""Checks of a GLMM's data before the fit: separation and all-zero (all-success) groups."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmmkit.errors import LmmkitWarning

__all__ = ["SeparationWarning", "separation_notes"]


class SeparationWarning(LmmkitWarning):
    """A group or a fixed-effect level has only zero (or only maximal) responses."""


def separation_notes(
    y: np.ndarray,
    X: np.ndarray,
    fixef_names: tuple[str, ...],
    terms: tuple[Any, ...],
    binomial: bool,
    skip_term: int | None,
) -> tuple[list[str], bool]:
    """Messages about groups and fixed-effect indicator levels whose responses are all 0 (or
    all at the maximum, binomial): their estimates run towards the boundary. Returns the
    messages and whether a fixed effect is separated."""
    msgs = []
    separated = False
    for j, t in enumerate(terms):
        if j == skip_term:  # levels tied through K, typically one record each
            continue
        cnt = np.bincount(t.index, minlength=t.nlevels)
        tot = np.bincount(t.index, weights=y, minlength=t.nlevels)
        allzero = np.flatnonzero((tot == 0) & (cnt > 0))
        allone = np.flatnonzero(np.isclose(tot, cnt) & (cnt > 0)) if binomial else []
        for kind, idx in (("all-zero", allzero), ("all-success", allone)):
            if len(idx):
                lv = [str(x) for x in t.levels[idx][:10]]
                more = f" and {len(idx) - 10} more" if len(idx) > 10 else ""
                msgs.append(
                    f"{len(idx)} level(s) of random term {t.name!r} have {kind} responses: "
                    f"{', '.join(lv)}{more}. Their conditional modes are shrunk towards "
                    "the population but are pulled to the boundary"
                )
    for j, name in enumerate(fixef_names):
        col = X[:, j]
        if name == "(Intercept)" or not np.all((col == 0) | (col == 1)):
            continue
        on = col == 1
        if not on.any() or on.all():
            continue
        for sel, where in ((on, f"{name} = 1"), (~on, f"{name} = 0")):
            ys = y[sel]
            if np.all(ys == 0) or (binomial and np.all(ys == 1)):
                kind = "0" if np.all(ys == 0) else "1 (all successes)"
                msgs.append(
                    f"complete separation: every response with {where} is {kind}; the "
                    f"estimate of {name!r} is not finite (the reported value is where the "
                    "optimizer stopped) and its standard error is meaningless. Drop or merge "
                    "that level, or use a penalized (Firth/Bayesian) fit"
                )
                separated = True
    return msgs, separated
