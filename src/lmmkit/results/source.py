"""What a fitted result keeps of its model: the recipe to rebuild it, not a copy.

A frozen :class:`~lmmkit.LMMResult` holds plain arrays. The tests that need more than the
estimates (Satterthwaite and Kenward-Roger degrees of freedom, likelihood-ratio tests that
refit by ML, ``ranova`` and ``step``, which refit reduced formulas) need the model: its
cross-products and design matrices. A result made by :func:`~lmmkit.lmm` or
:meth:`~lmmkit.LinearMixedModel.fit` therefore carries a :class:`ModelSource`: the formula, a
*reference* to the data frame it was fitted to (not a copy), the fitting options, and the
response when it was replaced by ``refit(y)``. The model is rebuilt from it when a test asks
for it, and checked to reproduce the fit (same observations, response, fitted values), so a
data frame changed in place after the fit is an error rather than a silently different test.

Memory: nothing is copied, so a result costs what it cost before plus one reference (and the
response vector of a ``refit``). Pickling and JSON keep the plain values only: an unpickled
result has no source, and the tests that need the model say so.

This module imports nothing from the model or inference layers (the rebuild function is
handed in by :mod:`lmmkit.models.lmm`), so the result types depend on it without a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmmkit.errors import ModelError

__all__ = ["ModelSource", "attach_source", "model_for", "source_of"]

_KEY = "_model_source"  # the instance-dict key; not a dataclass field (see attach_source)


@dataclass(frozen=True, eq=False)
class ModelSource:
    """How to rebuild the model behind a fit.

    ``build(formula, data, response=..., **options)`` returns the model; ``response`` is None
    when the model's response is the data's (``lmm()``), else the vector given to ``refit``.
    """

    build: Callable[..., Any] = field(repr=False)
    formula: str
    data: Any = field(repr=False)
    options: dict[str, Any] = field(repr=False, default_factory=dict)
    response: np.ndarray | None = field(repr=False, default=None)

    def model(self) -> Any:
        """A new model built from the recipe (nothing cached)."""
        return self.build(self.formula, self.data, response=self.response, **self.options)


def attach_source(result: Any, source: ModelSource) -> Any:
    """Give ``result`` (a frozen dataclass) its source; returns ``result``.

    The source is an instance attribute, not a dataclass field: ``dataclasses.fields`` (and
    so ``replace`` and subclasses that copy fields, such as the residual-structure results,
    whose likelihood is not the plain model's) do not carry it, and equality ignores it.
    """
    object.__setattr__(result, _KEY, source)
    return result


def source_of(result: Any) -> ModelSource | None:
    """The result's :class:`ModelSource`, or None."""
    found = getattr(result, "__dict__", {}).get(_KEY)
    return found if isinstance(found, ModelSource) else None


def drop_source(state: dict[str, Any]) -> dict[str, Any]:
    """An instance dict without the source (for ``__getstate__``: pickles stay plain)."""
    return {k: v for k, v in state.items() if k != _KEY}


def model_for(result: Any, what: str = "This test") -> Any:
    """The model behind ``result``, rebuilt from its source and checked against the fit.

    Raises ModelError when the result has no source (unpickled, loaded, or a result type whose
    likelihood is not the plain model's) or when the rebuilt model does not reproduce the fit
    (the data frame was changed after fitting).
    """
    source = source_of(result)
    if source is None:
        raise ModelError(
            f"{what} needs the model behind this {type(result).__name__}, and the result does "
            "not carry it (results loaded from a pickle or JSON, and results of lmm_residual(), "
            "keep plain values only). Rebuild the model and pass both: "
            "model = lmmkit.LinearMixedModel(formula, data); f(model, result)."
        )
    model = source.model()
    check_reproduces(model, result)
    return model


def check_reproduces(model: Any, result: Any) -> None:
    """ModelError unless ``model`` (a LinearMixedModel) reproduces ``result``: the same number of
    observations and variance parameters, the same response and the same fitted values from the
    result's fixed effects and conditional modes."""
    d = model.design
    if model.n != result.nobs or len(model.layout.theta0) != len(result.theta):
        raise ModelError(
            f"The model rebuilt from the data has {model.n} observations and "
            f"{len(model.layout.theta0)} variance parameters; the fit has {result.nobs} and "
            f"{len(result.theta)}. The data frame was changed after fitting; refit the model."
        )
    y = np.asarray(model._y, dtype=float)
    scale = max(1.0, float(np.max(np.abs(y))))
    tol = 1e-8 * scale
    if not np.allclose(y, result.fitted + result.residuals, rtol=0, atol=tol):
        raise ModelError(
            f"The response of the data frame the model was fitted to ({d.response!r}) has "
            "changed since the fit. Refit the model to the current data."
        )
    fitted = d.X @ result.fixef.to_numpy()
    if d.offset is not None:
        fitted = fitted + d.offset
    for t, info in zip(d.terms, result.terms):
        fitted = fitted + np.einsum("ip,ip->i", t.Zx, info.modes[t.index])
    if not np.allclose(fitted, result.fitted, rtol=0, atol=tol):
        worst = int(np.argmax(np.abs(fitted - result.fitted)))
        raise ModelError(
            "The data frame the model was fitted to has changed since the fit: its predictors "
            f"no longer reproduce the fitted values (row {worst}: {fitted[worst]:.6g} vs "
            f"{result.fitted[worst]:.6g}). Refit the model to the current data."
        )
