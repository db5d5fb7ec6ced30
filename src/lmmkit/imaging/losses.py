"""Losses: Dice + cross-entropy for segmentation (MONAI), the soft Dice gradient in closed
form, and the Cox partial likelihood with Efron (or Breslow) ties for survival heads.

Soft Dice (MONAI ``DiceLoss``) for one channel with probabilities ``p`` and target ``g``::

    L = 1 - (2 I + a) / (S + b),   I = sum_k p_k g_k,   S = sum_k p_k + sum_k g_k

(``a = smooth_nr``, ``b = smooth_dr``), whose derivative is
``dL/dp_k = ((2 I + a) - 2 g_k (S + b)) / (S + b)^2``: :func:`soft_dice_grad`. With an empty
target and an empty prediction the ratio is ``a / b`` (the smoothing decides it: Dice is
undefined there, and :func:`lmmkit.validation.segmentation.dice` says so).

Cox negative log partial likelihood at linear predictor ``eta`` (one row per subject, right
censoring). For a distinct event time t with ``d`` events (set D) and risk set R (time >= t),
Efron's approximation contributes::

    sum_{i in D} eta_i - sum_{l=0}^{d-1} log( sum_{j in R} exp(eta_j) - (l/d) sum_{i in D} exp(eta_i) )

and Breslow's ``sum_{i in D} eta_i - d log sum_{j in R} exp(eta_j)``. This is R survival's
``coxph`` log partial likelihood (checked against it at fixed ``eta`` in the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmmkit.errors import DataError
from lmmkit.imaging.device import require_torch

__all__ = ["dice_ce_loss", "soft_dice_grad", "cox_partial_loglik", "cox_loss", "TIES"]

TIES = ("efron", "breslow")


def dice_ce_loss(*, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> Any:
    """MONAI's ``DiceCELoss`` for integer label maps and softmax logits.

    Parameters
    ----------
    lambda_dice, lambda_ce : float
        Weights of the two terms.

    Returns
    -------
    monai.losses.DiceCELoss
        Called as ``loss(logits, labels)`` with logits (B, K, *spatial) and labels
        (B, 1, *spatial) holding class indices.

    Examples
    --------
    >>> import torch
    >>> loss = dice_ce_loss()
    >>> float(loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))) > 0
    True
    """
    from monai.losses import DiceCELoss

    return DiceCELoss(
        to_onehot_y=True, softmax=True, include_background=False,
        lambda_dice=lambda_dice, lambda_ce=lambda_ce,
    )


def soft_dice_grad(p: Any, g: Any, *, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> Any:
    """Closed-form derivative of the soft Dice loss ``1 - (2I + a)/(S + b)`` w.r.t. ``p``.

    Parameters
    ----------
    p, g : torch.Tensor or ndarray
        Probabilities and binary target of the same shape (one channel, one image).
    smooth_nr, smooth_dr : float
        MONAI's smoothing constants ``a`` and ``b``.

    Returns
    -------
    Same type as ``p``: ``dL/dp``.

    Examples
    --------
    >>> import numpy as np
    >>> soft_dice_grad(np.array([1.0, 0.0]), np.array([1.0, 0.0]), smooth_nr=0, smooth_dr=0)
    array([0. , 0.5])
    """
    inter = (p * g).sum()
    s = p.sum() + g.sum() + smooth_dr
    return ((2 * inter + smooth_nr) - 2 * g * s) / s**2


def _cpu(v: Any) -> Any:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


def _survival_tensors(eta: Any, time: Any, event: Any) -> tuple[Any, Any, Any]:
    torch = require_torch()
    if not isinstance(eta, torch.Tensor):
        eta = torch.tensor(np.array(eta, dtype=np.float64))
    eta = eta.reshape(-1)
    time = torch.tensor(np.array(_cpu(time), dtype=np.float64)).to(eta).reshape(-1)
    event = torch.tensor(np.array(_cpu(event), dtype=np.float64)).to(eta).reshape(-1)
    n = eta.shape[0]
    if time.shape[0] != n or event.shape[0] != n:
        raise DataError(
            f"cox loss: eta has {n} rows but time has {time.shape[0]} and event "
            f"{event.shape[0]}; give one of each per subject."
        )
    if not bool(torch.isfinite(time).all()) or not bool(torch.isfinite(eta.detach()).all()):
        raise DataError("cox loss: time and the linear predictor must be finite (no NaN).")
    if bool((time < 0).any()):
        raise DataError("cox loss: survival times must be >= 0.")
    ev = event.to(torch.float64)
    if not bool(((ev == 0) | (ev == 1)).all()):
        raise DataError("cox loss: event must be 0 (censored) or 1 (event).")
    return eta, time, ev.to(eta.dtype)


def cox_partial_loglik(eta: Any, time: Any, event: Any, *, ties: str = "efron") -> Any:
    """Cox log partial likelihood at the linear predictor ``eta`` (differentiable in torch).

    Parameters
    ----------
    eta : torch.Tensor or array, shape (n,)
        Linear predictor (a network's risk output).
    time : array, shape (n,)
        Follow-up time.
    event : array, shape (n,)
        1 for an event, 0 for censoring.
    ties : {"efron", "breslow"}
        Handling of tied event times (R survival's default is Efron).

    Returns
    -------
    torch.Tensor
        Scalar log partial likelihood (0 when there is no event).

    Raises
    ------
    DataError
        Mismatched lengths, NaN, negative times, event not 0/1, unknown ties.

    Examples
    --------
    >>> float(cox_partial_loglik([0.0, 0.0], [1.0, 2.0], [1, 1]))  # -log 2 - log 1
    -0.6931471805599453
    """
    torch = require_torch()
    if ties not in TIES:
        raise DataError(f"cox loss: ties={ties!r} is not one of {TIES}.")
    eta, time, ev = _survival_tensors(eta, time, event)
    if not bool((ev > 0).any()):
        return eta.sum() * 0.0
    shift = eta.detach().max()
    w = torch.exp(eta - shift)
    uniq, inv = torch.unique(time, return_inverse=True)  # ascending times
    m = uniq.shape[0]
    at_time = torch.zeros(m, dtype=w.dtype, device=w.device).index_add(0, inv, w)
    risk = torch.flip(torch.cumsum(torch.flip(at_time, [0]), 0), [0])  # sum over time >= t
    d = torch.zeros(m, dtype=w.dtype, device=w.device).index_add(0, inv, ev)
    ew = torch.zeros(m, dtype=w.dtype, device=w.device).index_add(0, inv, w * ev)
    is_ev = ev > 0
    g = inv[is_ev]  # the tied group of every event
    if ties == "breslow":
        denom = risk[g]
    else:
        # rank of each event within its tied group: 0, 1, ..., d - 1
        order = torch.argsort(g, stable=True)
        gs = g[order]
        first = torch.searchsorted(gs, gs, right=False)
        rank_sorted = torch.arange(gs.shape[0], device=gs.device) - first
        rank = torch.empty_like(rank_sorted)
        rank[order] = rank_sorted
        denom = risk[g] - rank.to(w.dtype) / d[g] * ew[g]
    return (eta[is_ev] - shift).sum() - torch.log(denom).sum()


def cox_loss(
    eta: Any, time: Any, event: Any, *, ties: str = "efron", reduction: str = "mean"
) -> Any:
    """Negative Cox log partial likelihood, a training loss for a risk head.

    Parameters
    ----------
    eta, time, event, ties :
        As :func:`cox_partial_loglik`.
    reduction : {"mean", "sum"}
        ``"mean"`` divides by the number of events (a batch-size-free scale).

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> round(float(cox_loss([0.0, 0.0], [1.0, 2.0], [1, 1])), 4)
    0.3466
    """
    ll = cox_partial_loglik(eta, time, event, ties=ties)
    if reduction == "sum":
        return -ll
    if reduction != "mean":
        raise DataError(f"cox loss: reduction={reduction!r} is not 'mean' or 'sum'.")
    n_ev = max(1.0, float(np.sum(np.asarray(_cpu(event), dtype=float))))
    return -ll / n_ev
