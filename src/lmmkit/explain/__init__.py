"""Explanations of fitted predictors: exact Shapley values (interventional and observational)
and their plots.

Public names: :func:`shapley_values`, :func:`plot_shapley` (re-exported from ``lmmkit``).
"""

from lmmkit.explain.plots import plot_shapley
from lmmkit.explain.shapley import ShapleyResult, shapley_values

__all__ = ["ShapleyResult", "plot_shapley", "shapley_values"]
