"""Domain-adversarial network (DANN; Ganin et al. 2016): a label head and a domain (scanner or
site) head on shared features, the domain head behind a gradient-reversal layer, so that the
encoder learns features the domain classifier cannot separate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GradientReversal", "DANN", "grl_schedule"]


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


class GradientReversal(nn.Module):
    """Identity forward, gradient multiplied by ``-lam`` backward.

    Examples
    --------
    >>> x = torch.ones(3, requires_grad=True)
    >>> GradientReversal(0.5)(x).sum().backward()
    >>> x.grad.tolist()
    [-0.5, -0.5, -0.5]
    """

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = float(lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Reverse.apply(x, self.lam)


def grl_schedule(progress: float, gamma: float = 10.0) -> float:
    """Ganin's ramp ``2 / (1 + exp(-gamma p)) - 1`` of the reversal weight over training
    progress ``p`` in [0, 1].

    Examples
    --------
    >>> grl_schedule(0.0), round(grl_schedule(1.0), 4)
    (0.0, 0.9999)
    """
    import math

    return 2.0 / (1.0 + math.exp(-gamma * float(progress))) - 1.0


class DANN(nn.Module):
    """Encoder + label head + (gradient reversal -> domain head).

    Parameters
    ----------
    encoder : nn.Module
        Has ``pooled(x)`` and ``out_features``.
    n_classes, n_domains : int
    hidden : int
        Width of the domain classifier's hidden layer.

    ``forward(x)`` returns ``(label_logits, domain_logits)``; set :attr:`grl` ``.lam`` to
    change the reversal weight.

    Examples
    --------
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder
    >>> net = DANN(ConvEncoder(3, 1, widths=(4, 8)), n_classes=2, n_domains=3)
    >>> [tuple(t.shape) for t in net(torch.zeros(2, 1, 16, 16, 16))]
    [(2, 2), (2, 3)]
    """

    def __init__(self, encoder: nn.Module, n_classes: int, n_domains: int, *, hidden: int = 32):
        super().__init__()
        self.encoder = encoder
        f = int(encoder.out_features)
        self.out_features = f
        self.head = nn.Linear(f, int(n_classes))
        self.grl = GradientReversal(0.0)
        self.domain_head = nn.Sequential(
            nn.Linear(f, hidden), nn.ReLU(), nn.Linear(hidden, int(n_domains))
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.pooled(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.head(f), self.domain_head(self.grl(f))
