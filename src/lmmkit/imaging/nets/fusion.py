"""Fusion networks: of sequences or phases, and of image with clinical covariates.

* Input-level **channel stacking**: the sequences are the channels of one encoder
  (:class:`lmmkit.imaging.nets.encoders.ImageClassifier` with ``in_channels = n_sequences``).
* :class:`LateFusionNet` -- **two-branch late fusion** for two phases: a separate encoder per
  phase, adaptive average pooling of each branch to a common grid, concatenation, classifier.
* :class:`SurvivalFusionNet` -- image + clinical covariates into one Cox risk score, fused
  ``early`` (clinical values as extra constant input channels), ``intermediate`` (pooled image
  features concatenated with the clinical vector before the risk head) or ``late`` (an image
  risk score and a linear clinical risk score added).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmmkit.errors import LmmkitError
from lmmkit.imaging.nets.encoders import ConvEncoder

__all__ = ["LateFusionNet", "SurvivalFusionNet", "FUSIONS"]

FUSIONS = ("early", "intermediate", "late")


class LateFusionNet(nn.Module):
    """Two encoders (one per phase) pooled to a common ``pool_size`` grid and concatenated.

    Parameters
    ----------
    channels_a, channels_b : int
        Channels of each phase (1 each for two single-channel phases).
    n_outputs : int
    widths, strides : sequences of int
        Widths and strides of both encoders (as :class:`ConvEncoder`).
    pool_size : int, default 2
        Each branch's map is average-pooled to ``pool_size``^3 cells, so phases acquired at
        different resolutions meet on one grid.

    Examples
    --------
    >>> net = LateFusionNet(1, 1, widths=(4, 8))
    >>> net(torch.zeros(2, 2, 16, 16, 16)).shape  # phases as the two channels
    torch.Size([2, 2])
    >>> net(torch.zeros(2, 1, 16, 16, 16), torch.zeros(2, 1, 8, 8, 8)).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        channels_a: int = 1,
        channels_b: int = 1,
        n_outputs: int = 2,
        *,
        widths: Sequence[int] = (8, 16, 32),
        strides: Sequence[int] | None = None,
        pool_size: int = 2,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.channels_a = int(channels_a)
        kw = dict(widths=widths, strides=strides, norm=norm)
        self.branch_a = ConvEncoder(3, channels_a, **kw)
        self.branch_b = ConvEncoder(3, channels_b, **kw)
        self.pool = nn.AdaptiveAvgPool3d(pool_size)
        self.out_features = 2 * widths[-1] * pool_size**3
        self.head = nn.Linear(self.out_features, int(n_outputs))

    def _split(self, a: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if b is not None:
            return a, b
        if a.shape[1] <= self.channels_a:
            raise LmmkitError(
                f"LateFusionNet: one input of {a.shape[1]} channels; give two phases "
                f"(net(a, b)) or stack them as {self.channels_a}+k channels."
            )
        return a[:, : self.channels_a], a[:, self.channels_a :]

    def features(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        a, b = self._split(a, b)
        fa = self.pool(self.branch_a(a)).flatten(1)
        fb = self.pool(self.branch_b(b)).flatten(1)
        return torch.cat([fa, fb], 1)

    def pooled(self, a: torch.Tensor) -> torch.Tensor:
        return self.features(a)

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(a, b))


class SurvivalFusionNet(nn.Module):
    """A Cox risk score from an image and clinical covariates (``forward(x, clinical)``).

    Parameters
    ----------
    in_channels : int
        Image channels.
    n_clinical : int
        Clinical covariates (standardize them first).
    fusion : {"early", "intermediate", "late"}
    widths, strides : sequences of int
        Image encoder widths and strides (as :class:`ConvEncoder`).

    Examples
    --------
    >>> net = SurvivalFusionNet(2, 3, fusion="intermediate", widths=(4, 8))
    >>> net(torch.zeros(5, 2, 16, 16, 16), torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    def __init__(
        self,
        in_channels: int,
        n_clinical: int,
        *,
        fusion: str = "intermediate",
        widths: Sequence[int] = (8, 16, 32),
        strides: Sequence[int] | None = None,
        hidden: int = 16,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise LmmkitError(f"SurvivalFusionNet: fusion={fusion!r} is not one of {FUSIONS}.")
        self.fusion = fusion
        self.n_clinical = int(n_clinical)
        extra = self.n_clinical if fusion == "early" else 0
        self.encoder = ConvEncoder(3, in_channels + extra, widths=widths, strides=strides, norm=norm)
        f = self.encoder.out_features
        if fusion == "intermediate":
            self.head = nn.Sequential(
                nn.Linear(f + self.n_clinical, hidden), nn.ReLU(), nn.Linear(hidden, 1)
            )
        else:
            self.head = nn.Sequential(nn.Linear(f, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.clinical = nn.Linear(self.n_clinical, 1, bias=False) if fusion == "late" else None
        self.out_features = f

    def forward(self, x: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        if clinical.ndim != 2 or clinical.shape[1] != self.n_clinical:
            raise LmmkitError(
                f"SurvivalFusionNet: clinical has shape {tuple(clinical.shape)}; expected "
                f"(batch, {self.n_clinical})."
            )
        if self.fusion == "early":
            planes = clinical[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
            return self.head(self.encoder.pooled(torch.cat([x, planes], 1))).squeeze(-1)
        feats = self.encoder.pooled(x)
        if self.fusion == "intermediate":
            return self.head(torch.cat([feats, clinical], 1)).squeeze(-1)
        assert self.clinical is not None
        return (self.head(feats) + self.clinical(clinical)).squeeze(-1)
