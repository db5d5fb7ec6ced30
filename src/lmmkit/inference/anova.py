"""One ``anova`` for both uses, as in R: one model -> lmerTest's type III F tests of its
fixed-effect terms; two or more models -> lme4's likelihood-ratio test table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmmkit.errors import ModelError

__all__ = ["anova"]


def anova(*models: Any, ddf: str = "Satterthwaite", refit: bool = True, **kw: Any) -> pd.DataFrame:
    """``anova(model)`` (type III, Satterthwaite or Kenward-Roger df) or
    ``anova(m0, m1, ...)`` (likelihood-ratio tests; REML fits refitted by ML unless
    ``refit=False``). Models are LinearMixedModel objects or (model, result) pairs."""
    if not models:
        raise ModelError("anova() needs at least one model.")
    if len(models) == 1:
        from lmmkit.inference.satterthwaite import anova as type3

        item = models[0]
        model, result = item if isinstance(item, tuple) else (item, None)
        return type3(model, result, ddf=ddf, **kw)
    from lmmkit.glmm.result import GLMMResult

    if all(isinstance(m, GLMMResult) for m in models):
        from lmmkit.glmm.lrt import glmm_anova

        return glmm_anova(*models, **kw)
    from lmmkit.inference.lrt import anova as lrt

    return lrt(*models, refit=refit, **kw)
