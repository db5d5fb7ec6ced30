"""One ``anova`` for both uses, as in R: one model -> lmerTest's F tests of its fixed-effect
terms (type III by default, type II on request); two or more models -> lme4's
likelihood-ratio test table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lmmkit.errors import ModelError

__all__ = ["anova"]


def anova(
    *models: Any,
    ddf: str = "Satterthwaite",
    type: int = 3,
    refit: bool = True,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """F tests of one model's fixed-effect terms, or likelihood-ratio tests between models.

    Parameters
    ----------
    *models : LMMResult, LinearMixedModel, (LinearMixedModel, LMMResult) or GLMMResult
        One model: lmerTest's ``anova(m, type, ddf)``. Two or more: lme4's
        ``anova(m0, m1, ...)``, ordered by number of parameters.
    ddf : {"Satterthwaite", "Kenward-Roger"}
        Denominator degrees of freedom of the F tests (one model).
    type : {3, 2}
        Type III (lmerTest's default) or type II hypotheses (one model); see
        :func:`lmmkit.inference.satterthwaite.anova`.
    refit : bool
        Refit REML fits by ML before comparing them (lme4's default; several models).
    names : sequence of str, optional
        Row names of the comparison table (default m0, m1, ...).

    Returns
    -------
    DataFrame
        One model: Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) per term. Several: npar,
        AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq) (and the boundary-mixture p where
        one variance component is tested).

    Raises
    ------
    ModelError
        No model, models that are not nested, or options that do not apply.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> ss = load_dataset("sleepstudy")
    >>> r0 = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", ss)
    >>> r1 = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", ss)
    >>> tab = lmmkit.anova(r0, r1, names=["intercepts", "slopes"])
    >>> list(tab.index)
    ['intercepts', 'slopes']
    """
    if not models:
        raise ModelError("anova() needs at least one model.")
    if len(models) == 1:
        if names is not None:
            raise ModelError("names= labels the models of a comparison; anova() got one model.")
        from lmmkit.inference.satterthwaite import anova as ftests

        item = models[0]
        model, result = item if isinstance(item, tuple) else (item, None)
        return ftests(model, result, ddf=ddf, type=type)
    from lmmkit.glmm.result import GLMMResult

    if all(isinstance(m, GLMMResult) for m in models):
        from lmmkit.glmm.lrt import glmm_anova

        return glmm_anova(*models, names=None if names is None else list(names))
    from lmmkit.inference.lrt import anova as lrt

    return lrt(*models, refit=refit, names=None if names is None else list(names))
