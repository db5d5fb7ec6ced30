"""Convolutional encoders: volumetric 3-D and slice-wise 2-D with slice aggregation.

Both are stacks of MONAI ``Convolution`` blocks (conv -> norm -> activation) of the same
widths, so a 2-D and a 3-D encoder of equal width differ only in the dimensionality of the
convolution: the comparison :mod:`lmmkit.imaging.memory` measures.

* :class:`ConvEncoder` -- ``spatial_dims`` = 2 or 3; ``forward`` returns the last feature map,
  :meth:`ConvEncoder.pooled` the global-average-pooled vector.
* :class:`SliceEncoder2D` -- runs a 2-D :class:`ConvEncoder` on every slice along the first
  spatial axis of a volume and aggregates the per-slice vectors by ``mean``, ``max`` or gated
  ``attention`` (Ilse, Tomczak & Welling 2018, attention-based deep multiple-instance
  learning).
* :class:`ImageClassifier` -- an encoder and a linear head on its pooled vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from lmmkit.errors import LmmkitError

__all__ = ["ConvEncoder", "SliceEncoder2D", "AttentionPool", "ImageClassifier", "AGGREGATIONS"]

AGGREGATIONS = ("mean", "max", "attention")


class ConvEncoder(nn.Module):
    """A stack of conv -> norm -> activation blocks (MONAI ``Convolution``).

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Input channels (sequences or phases stacked as channels).
    widths : sequence of int
        Output channels of each block.
    strides : sequence of int, optional
        Stride of each block; default 1 for the first block and 2 for the others.
    kernel_size : int, default 3
    norm : str, default "batch"
        MONAI norm name ("batch", "instance", ...) or a ``(name, kwargs)`` tuple.
    act : str, default "relu"
    pool : {"avg", "max"}, default "avg"
        Global pooling of :meth:`pooled`. Max pooling makes the decision rest on the strongest
        location of each feature map (weakly supervised localization: Grad-CAM then points at
        that location).

    Examples
    --------
    >>> enc = ConvEncoder(3, 1, widths=(4, 8))
    >>> enc(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 8, 8, 8, 8])
    >>> enc.pooled(torch.zeros(2, 1, 16, 16, 16)).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        widths: Sequence[int] = (8, 16, 32),
        strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        norm: str | tuple = "batch",
        act: str = "relu",
        pool: str = "avg",
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise LmmkitError(f"ConvEncoder: pool={pool!r} is not 'avg' or 'max'.")
        if spatial_dims not in (2, 3):
            raise LmmkitError(f"ConvEncoder: spatial_dims={spatial_dims!r} must be 2 or 3.")
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise LmmkitError(f"ConvEncoder: widths={widths!r} must be positive integers.")
        strides = tuple(strides) if strides is not None else (1,) + (2,) * (len(widths) - 1)
        if len(strides) != len(widths):
            raise LmmkitError(
                f"ConvEncoder: {len(strides)} strides for {len(widths)} widths; give one each."
            )
        self.spatial_dims = spatial_dims
        self.widths = widths
        self.strides = strides
        self.out_features = widths[-1]
        blocks = []
        cin = int(in_channels)
        for w, s in zip(widths, strides):
            blocks.append(
                Convolution(
                    spatial_dims, cin, w, strides=s, kernel_size=kernel_size, act=act, norm=norm
                )
            )
            cin = w
        self.blocks = nn.Sequential(*blocks)
        pools = {("avg", 3): nn.AdaptiveAvgPool3d, ("avg", 2): nn.AdaptiveAvgPool2d,
                 ("max", 3): nn.AdaptiveMaxPool3d, ("max", 2): nn.AdaptiveMaxPool2d}  # fmt: skip
        self.pool = pools[(pool, spatial_dims)](1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled features, shape (batch, out_features)."""
        return self.pool(self.blocks(x)).flatten(1)


class AttentionPool(nn.Module):
    """Gated attention pooling over a set of instance vectors (Ilse et al. 2018).

    ``a_k = softmax_k(w' (tanh(V h_k) * sigmoid(U h_k)))``, output ``sum_k a_k h_k``; the last
    weights are kept in :attr:`last_weights` for inspection.

    Examples
    --------
    >>> pool = AttentionPool(4, hidden=8)
    >>> pool(torch.ones(2, 5, 4)).shape
    torch.Size([2, 4])
    """

    def __init__(self, features: int, *, hidden: int = 16) -> None:
        super().__init__()
        self.V = nn.Linear(features, hidden)
        self.U = nn.Linear(features, hidden)
        self.w = nn.Linear(hidden, 1)
        self.last_weights: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (batch, instances, features)
        score = self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)
        a = torch.softmax(score, dim=1)
        self.last_weights = a.detach()
        return (a.unsqueeze(-1) * h).sum(1)


class SliceEncoder2D(nn.Module):
    """A 2-D encoder applied slice by slice along the first spatial axis, then aggregated.

    Parameters
    ----------
    in_channels : int
    widths, strides, kernel_size, norm, act :
        As :class:`ConvEncoder` (2-D).
    aggregation : {"mean", "max", "attention"}
        How per-slice vectors become one vector per volume.
    slice_chunk : int, optional
        Encode at most this many slices at a time (bounds the activation memory by the chunk
        instead of the whole volume); default all slices at once.

    Examples
    --------
    >>> enc = SliceEncoder2D(1, widths=(4, 8), aggregation="attention")
    >>> enc.pooled(torch.zeros(2, 1, 6, 16, 16)).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        widths: Sequence[int] = (8, 16, 32),
        strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        norm: str | tuple = "batch",
        act: str = "relu",
        aggregation: str = "mean",
        slice_chunk: int | None = None,
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise LmmkitError(
                f"SliceEncoder2D: aggregation={aggregation!r} is not one of {AGGREGATIONS}."
            )
        self.encoder = ConvEncoder(
            2, in_channels, widths=widths, strides=strides, kernel_size=kernel_size,
            norm=norm, act=act,
        )  # fmt: skip
        self.aggregation = aggregation
        self.out_features = self.encoder.out_features
        self.attention = AttentionPool(self.out_features) if aggregation == "attention" else None
        self.slice_chunk = slice_chunk
        self.spatial_dims = 3  # input is a volume

    def slice_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-slice pooled vectors, shape (batch, slices, features)."""
        if x.ndim != 5:
            raise LmmkitError(
                f"SliceEncoder2D expects (batch, channels, D, H, W); got shape {tuple(x.shape)}."
            )
        b, c, d, h, w = x.shape
        slices = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
        step = self.slice_chunk or slices.shape[0]
        parts = [self.encoder.pooled(slices[i : i + step]) for i in range(0, slices.shape[0], step)]
        return torch.cat(parts, 0).reshape(b, d, -1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """One vector per volume, shape (batch, features)."""
        f = self.slice_features(x)
        if self.aggregation == "mean":
            return f.mean(1)
        if self.aggregation == "max":
            return f.amax(1)
        assert self.attention is not None
        return self.attention(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(x)


class ImageClassifier(nn.Module):
    """An encoder (anything with ``pooled`` and ``out_features``) and a linear head.

    ``forward`` returns logits of shape (batch, n_outputs); :meth:`features` the pooled
    vector the head sees (what :func:`lmmkit.imaging.features.extract_features` returns).

    Examples
    --------
    >>> net = ImageClassifier(ConvEncoder(3, 2, widths=(4, 8)), n_outputs=2)
    >>> net(torch.zeros(3, 2, 16, 16, 16)).shape
    torch.Size([3, 2])
    """

    def __init__(self, encoder: nn.Module, n_outputs: int = 2, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.out_features), int(n_outputs))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.pooled(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))
