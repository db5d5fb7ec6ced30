"""Deterministic and probabilistic cost-effectiveness of using a biomarker.

:func:`cost_effectiveness` evaluates treat none, treat all and test-and-treat at each
threshold at the base-case inputs: expected cost and effect, the efficiency frontier with
ICERs, and net monetary benefit over willingness to pay. :func:`probabilistic_sensitivity`
repeats it over draws: a stratified bootstrap of the validation data (cases and controls
resampled separately, so sensitivity and specificity vary with their sampling error) and
draws of every input given as a distribution; it returns the draws, the probability that
each strategy has the largest NMB at each willingness to pay (the acceptability curve) and
the expected NMB. :func:`net_benefit_exchange` gives the threshold probability at which
decision-curve net benefit and net monetary benefit rank strategies identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

from .frontier import efficiency_frontier, net_monetary_benefit
from .inputs import CEAInputs
from .strategies import OperatingPoints, expected_outcomes, operating_points, rates

__all__ = [
    "CostEffectiveness",
    "cost_effectiveness",
    "PSAResult",
    "probabilistic_sensitivity",
    "net_benefit_exchange",
]

DEFAULT_WTP = np.arange(0.0, 100_001.0, 1000.0)


def _names(points: OperatingPoints) -> list[str]:
    return ["treat none", "treat all"] + [
        f"test >= {t:.6g}" if points.direction != ">" else f"test <= {t:.6g}"
        for t in points.thresholds
    ]


def _rates_with_references(points: OperatingPoints):
    sens = np.concatenate([[0.0, 1.0], points.sensitivity])
    spec = np.concatenate([[1.0, 0.0], points.specificity])
    with_test = np.concatenate([[0.0, 0.0], np.ones(len(points.thresholds))])
    return sens, spec, with_test


def _check_wtp(wtp) -> np.ndarray:
    lam = DEFAULT_WTP if wtp is None else np.atleast_1d(np.asarray(wtp, dtype=float))
    if lam.ndim != 1 or not np.isfinite(lam).all() or (lam < 0).any():
        raise DataError(f"wtp must be finite numbers >= 0 (money per QALY), got {wtp!r}.")
    return lam


def _prevalence(inputs: CEAInputs, points: OperatingPoints) -> float | None:
    if inputs.prevalence is None and points.prevalence is None:
        raise DataError(
            "CEAInputs.prevalence is None and the operating points carry no validation data; "
            "give the prevalence of the target population."
        )
    return points.prevalence


@dataclass(frozen=True, eq=False)
class CostEffectiveness:
    """Base-case results: ``strategies`` (one row per strategy: threshold, sensitivity,
    specificity, cost, effect, status, reference, inc_cost, inc_effect, icer), ``nmb``
    (willingness to pay x strategies, with the best strategy), the inputs used.

    Examples
    --------
    >>> from lmmkit import CEAInputs, cost_effectiveness
    >>> inputs = CEAInputs(cost_tp=5000, cost_fn=9000, cost_fp=5000, cost_tn=0,
    ...                    qaly_tp=8.0, qaly_fn=6.5, qaly_fp=9.9, qaly_tn=10.0, cost_test=100,
    ...                    prevalence=0.3)
    >>> res = cost_effectiveness(inputs, y=[0, 0, 0, 1, 1, 0, 1, 1],
    ...                          score=[0.1, 0.2, 0.4, 0.35, 0.8, 0.3, 0.7, 0.9],
    ...                          thresholds=[0.5], wtp=[20000, 50000])
    >>> list(res.strategies.index)
    ['treat none', 'treat all', 'test >= 0.5']
    >>> res.frontier["cost"].is_monotonic_increasing
    True
    """

    strategies: pd.DataFrame
    nmb: pd.DataFrame
    inputs: dict
    points: OperatingPoints = field(repr=False)

    @property
    def frontier(self) -> pd.DataFrame:
        """The strategies on the efficiency frontier, by increasing cost."""
        f = self.strategies[self.strategies["status"] == "frontier"]
        return f.sort_values("cost")


def cost_effectiveness(
    inputs: CEAInputs,
    y=None,
    score=None,
    *,
    thresholds=None,
    table: pd.DataFrame | None = None,
    direction: str = "auto",
    wtp=None,
) -> CostEffectiveness:
    """Cost-effectiveness of treat none, treat all and test-and-treat at each threshold.

    Parameters
    ----------
    inputs : CEAInputs
        Costs and QALYs per outcome, the test's cost, the prevalence (None: the data's).
    y, score : array-like, optional
        Validation data: outcome (0/1) and the biomarker score.
    thresholds : array-like, optional
        Thresholds to evaluate (default: every distinct score, the ROC curve's points).
    table : DataFrame, optional
        Instead of data: columns ``threshold``, ``sensitivity``, ``specificity``.
    direction : {"auto", "<", ">"}
        The score's direction (lmmkit's ROC convention).
    wtp : array-like, optional
        Willingness to pay per QALY for the NMB table (default 0 to 100,000 by 1,000).

    Returns
    -------
    CostEffectiveness

    Raises
    ------
    DataError
        Inputs out of range (probabilities outside [0, 1], a negative test cost),
        sensitivity and specificity both 0, no prevalence.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit import CEAInputs, cost_effectiveness
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200); score = y + rng.normal(0, 1, 200)
    >>> inputs = CEAInputs(cost_tp=5000, cost_fn=9000, cost_fp=5000, cost_tn=0,
    ...                    qaly_tp=8.0, qaly_fn=6.5, qaly_fp=9.9, qaly_tn=10.0, cost_test=100)
    >>> res = cost_effectiveness(inputs, y, score, thresholds=[-0.5, 0.5, 1.5])
    >>> list(res.strategies.index)
    ['treat none', 'treat all', 'test >= -0.5', 'test >= 0.5', 'test >= 1.5']
    """
    if not isinstance(inputs, CEAInputs):
        raise DataError(f"inputs must be a CEAInputs, got {type(inputs).__name__}.")
    points = operating_points(y, score, thresholds=thresholds, table=table, direction=direction)
    values = inputs.base_case(_prevalence(inputs, points))
    sens, spec, with_test = _rates_with_references(points)
    cost, effect = expected_outcomes(values, sens, spec, with_test)
    names = _names(points)
    table_out = efficiency_frontier(cost, effect, names)
    table_out.insert(0, "threshold", np.concatenate([[np.nan, np.nan], points.thresholds]))
    table_out.insert(1, "sensitivity", sens)
    table_out.insert(2, "specificity", spec)
    nmb = net_monetary_benefit(cost, effect, _check_wtp(wtp), names)
    return CostEffectiveness(strategies=table_out, nmb=nmb, inputs=values, points=points)


@dataclass(frozen=True, eq=False)
class PSAResult:
    """Probabilistic sensitivity analysis: ``cost`` and ``effect`` (draws x strategies),
    ``ceac`` (willingness to pay x strategies: probability of the largest NMB),
    ``expected_nmb`` (willingness to pay x strategies), ``best`` (per willingness to pay,
    the strategy with the largest expected NMB: the acceptability frontier).

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit import CEAInputs, probabilistic_sensitivity
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 100); score = y + rng.normal(0, 1, 100)
    >>> inputs = CEAInputs(cost_tp=5000, cost_fn=9000, cost_fp=5000, cost_tn=0,
    ...                    qaly_tp=8.0, qaly_fn=6.5, qaly_fp=9.9, qaly_tn=10.0, cost_test=100)
    >>> psa = probabilistic_sensitivity(inputs, y, score, thresholds=[0.5], n_draws=100)
    >>> bool(np.allclose(psa.ceac.sum(axis=1), 1.0))  # one strategy is best in each draw
    True
    """

    cost: pd.DataFrame
    effect: pd.DataFrame
    ceac: pd.DataFrame
    expected_nmb: pd.DataFrame
    best: pd.Series
    n_draws: int
    seed: int
    base: CostEffectiveness = field(repr=False)


def probabilistic_sensitivity(
    inputs: CEAInputs,
    y=None,
    score=None,
    *,
    thresholds=None,
    table: pd.DataFrame | None = None,
    direction: str = "auto",
    wtp=None,
    n_draws: int = 1000,
    bootstrap: bool = True,
    seed: int = 0,
) -> PSAResult:
    """Probabilistic sensitivity analysis of :func:`cost_effectiveness`.

    Each draw resamples the validation data (stratified bootstrap; ``bootstrap=False``
    keeps sensitivity and specificity fixed) and draws every input given as a distribution.

    Parameters
    ----------
    inputs, y, score, thresholds, table, direction, wtp
        As for :func:`cost_effectiveness`.
    n_draws : int
        Number of draws.
    bootstrap : bool
        Resample the validation data for sensitivity and specificity.
    seed : int
        Seed of every random draw.

    Returns
    -------
    PSAResult

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit import CEAInputs, beta_from_moments, probabilistic_sensitivity
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200); score = y + rng.normal(0, 1, 200)
    >>> inputs = CEAInputs(cost_tp=5000, cost_fn=9000, cost_fp=5000, cost_tn=0,
    ...                    qaly_tp=8.0, qaly_fn=6.5, qaly_fp=9.9, qaly_tn=10.0, cost_test=100,
    ...                    prevalence=beta_from_moments(0.4, 0.05))
    >>> psa = probabilistic_sensitivity(inputs, y, score, thresholds=[0.5], n_draws=200)
    >>> psa.cost.shape
    (200, 3)
    """
    base = cost_effectiveness(
        inputs, y, score, thresholds=thresholds, table=table, direction=direction, wtp=wtp
    )
    n_draws = int(n_draws)
    if n_draws < 2:
        raise DataError(f"n_draws={n_draws} must be at least 2.")
    points = base.points
    rng = np.random.default_rng(seed)
    draws = inputs.draw(n_draws, rng, prevalence=points.prevalence)
    sens0, spec0, with_test = _rates_with_references(points)
    sens = np.broadcast_to(sens0, (n_draws, len(sens0))).copy()
    spec = np.broadcast_to(spec0, (n_draws, len(spec0))).copy()
    if bootstrap and points.cases is not None:
        t = points.thresholds if points.direction == "<" else -points.thresholds
        for b in range(n_draws):
            cases = np.sort(rng.choice(points.cases, len(points.cases)))
            controls = np.sort(rng.choice(points.controls, len(points.controls)))
            sens[b, 2:], spec[b, 2:] = rates(cases, controls, t)
    cost, effect = expected_outcomes(draws, sens, spec, with_test)
    names = list(base.strategies.index)
    lam = _check_wtp(wtp)
    nmb = lam[:, None, None] * effect[None] - cost[None]  # wtp x draws x strategies
    winner = np.argmax(nmb, axis=2)
    ceac = np.stack([(winner == s).mean(axis=1) for s in range(len(names))], axis=1)
    expected = nmb.mean(axis=1)
    index = pd.Index(lam, name="wtp")
    return PSAResult(
        cost=pd.DataFrame(cost, columns=names),
        effect=pd.DataFrame(effect, columns=names),
        ceac=pd.DataFrame(ceac, columns=names, index=index),
        expected_nmb=pd.DataFrame(expected, columns=names, index=index),
        best=pd.Series(np.asarray(names, dtype=object)[np.argmax(expected, axis=1)], index=index),
        n_draws=n_draws,
        seed=seed,
        base=base,
    )


def net_benefit_exchange(inputs: CEAInputs, *, wtp: float) -> dict[str, float]:
    """The decision-curve threshold probability that net monetary benefit implies.

    At willingness to pay ``wtp``, treating a diseased patient gains
    B = (wtp q_TP - c_TP) - (wtp q_FN - c_FN) and treating a non-diseased one loses
    H = (wtp q_TN - c_TN) - (wtp q_FP - c_FP). For any rule with TP/n true and FP/n false
    positives, its NMB minus treat-none's is B (TP/n - FP/n H / B) - c_test: B times the
    decision-curve net benefit at p_t = H / (B + H) (the exchange rate p_t / (1 - p_t) = H / B),
    less the test's cost.

    Parameters
    ----------
    inputs : CEAInputs
        Costs and QALYs per outcome (distributions at their means).
    wtp : float
        Willingness to pay per QALY.

    Returns
    -------
    dict
        ``benefit`` (B), ``harm`` (H), ``threshold`` (p_t).

    Raises
    ------
    DataError
        B <= 0 or H <= 0 (no threshold in (0, 1) exists).

    Examples
    --------
    >>> from lmmkit import CEAInputs, net_benefit_exchange
    >>> inputs = CEAInputs(cost_tp=5000, cost_fn=9000, cost_fp=5000, cost_tn=0,
    ...                    qaly_tp=8.0, qaly_fn=6.5, qaly_fp=9.9, qaly_tn=10.0)
    >>> ex = net_benefit_exchange(inputs, wtp=20000)  # B = 34,000, H = 7,000
    >>> ex["benefit"], ex["harm"], round(ex["threshold"], 4)
    (34000.0, 7000.0, 0.1707)
    """
    v = inputs.base_case(prevalence=0.0)
    lam = float(wtp)
    b = (lam * v["qaly_tp"] - v["cost_tp"]) - (lam * v["qaly_fn"] - v["cost_fn"])
    h = (lam * v["qaly_tn"] - v["cost_tn"]) - (lam * v["qaly_fp"] - v["cost_fp"])
    if b <= 0 or h <= 0:
        raise DataError(
            f"net_benefit_exchange: at wtp={lam:g} treating a case gains B={b:.4g} and treating "
            f"a non-case loses H={h:.4g}; a threshold probability needs both positive."
        )
    return {"benefit": b, "harm": h, "threshold": h / (b + h)}
