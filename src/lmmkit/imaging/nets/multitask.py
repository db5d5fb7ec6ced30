"""Segmentation networks: MONAI's U-Net, and a small 3-D U-Net whose encoder is shared by a
segmentation decoder and a classification head (multi-task), optionally with task-specific
batch normalization (shared convolution weights, one set of BN parameters and statistics per
task).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmmkit.errors import LmmkitError

__all__ = ["make_unet", "TaskBatchNorm", "MultiTaskUNet", "TASKS"]

TASKS = ("seg", "cls")


def make_unet(
    in_channels: int,
    out_channels: int = 2,
    *,
    channels: Sequence[int] = (8, 16, 32),
    strides: Sequence[int] = (2, 2),
    spatial_dims: int = 3,
    num_res_units: int = 0,
    norm: str = "instance",
) -> nn.Module:
    """MONAI ``UNet`` with small defaults for CPU training on 32^3-64^3 volumes.

    Parameters
    ----------
    in_channels, out_channels : int
        Input sequences; output classes (2 = background and lesion, softmax).
    channels, strides, spatial_dims, num_res_units, norm :
        Passed to :class:`monai.networks.nets.UNet`.

    Returns
    -------
    monai.networks.nets.UNet

    Examples
    --------
    >>> net = make_unet(2)
    >>> net(torch.zeros(1, 2, 16, 16, 16)).shape
    torch.Size([1, 2, 16, 16, 16])
    """
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=num_res_units,
        norm=norm,
    )


class TaskBatchNorm(nn.Module):
    """One ``BatchNorm3d`` per task; :attr:`task` selects which one a forward pass uses.

    Examples
    --------
    >>> bn = TaskBatchNorm(4, n_tasks=2)
    >>> bn.task = 1
    >>> bn(torch.randn(2, 4, 3, 3, 3)).shape
    torch.Size([2, 4, 3, 3, 3])
    """

    def __init__(self, channels: int, n_tasks: int) -> None:
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm3d(channels) for _ in range(n_tasks))
        self.task = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bns[self.task](x)


def _block(cin: int, cout: int, stride: int, norm: nn.Module) -> nn.Sequential:
    conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, norm, nn.ReLU())


class MultiTaskUNet(nn.Module):
    """A 3-D U-Net (encoder shared) with a segmentation decoder and a classification head.

    Parameters
    ----------
    in_channels : int
    n_classes : int, default 2
        Classes of the classification head (the segmentation has 2: background, lesion).
    widths : sequence of int
        Encoder widths; every level halves the resolution (the decoder restores it, with
        instance normalization, and skip connections from the encoder).
    task_norm : bool, default False
        Task-specific batch normalization: the encoder's convolutions are shared, each task has
        its own BN parameters and running statistics, and the encoder runs once per task.

    Notes
    -----
    :meth:`shared_parameters` are the parameters both tasks' losses depend on (the encoder's
    convolutions, and its BN parameters when ``task_norm`` is off); everything else belongs
    to one task. ``forward`` returns ``(seg_logits, cls_logits)``.

    Examples
    --------
    >>> net = MultiTaskUNet(2, widths=(4, 8, 16), task_norm=True)
    >>> seg, cls = net(torch.zeros(2, 2, 16, 16, 16))
    >>> tuple(seg.shape), tuple(cls.shape)
    ((2, 2, 16, 16, 16), (2, 2))
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int = 2,
        *,
        widths: Sequence[int] = (8, 16, 32),
        task_norm: bool = False,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise LmmkitError(f"MultiTaskUNet: widths={widths!r} needs at least two levels.")
        self.task_norm = bool(task_norm)
        self.widths = widths

        def norm(c: int) -> nn.Module:
            return TaskBatchNorm(c, len(TASKS)) if task_norm else nn.BatchNorm3d(c)

        cin = int(in_channels)
        self.down = nn.ModuleList()
        for w in widths:
            self.down.append(_block(cin, w, 2, norm(w)))
            cin = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            w = widths[i - 1]
            self.up.append(nn.ConvTranspose3d(widths[i], w, 2, stride=2))
            self.merge.append(_block(2 * w, w, 1, nn.InstanceNorm3d(w, affine=True)))
        self.seg_out = nn.Sequential(  # back to full resolution, 2 classes
            nn.Upsample(scale_factor=2, mode="trilinear"), nn.Conv3d(widths[0], 2, 3, padding=1)
        )
        self.cls_head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(widths[-1], n_classes))
        self.out_features = widths[-1]

    def _set_task(self, task: int) -> None:
        for m in self.down.modules():
            if isinstance(m, TaskBatchNorm):
                m.task = task

    def encode(self, x: torch.Tensor, task: int = 0) -> list[torch.Tensor]:
        """Feature maps of every encoder level (with task ``task``'s BN when task-specific)."""
        self._set_task(task)
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], 1))
        return self.seg_out(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled bottleneck features (the classification task's view)."""
        return self.cls_head[1](self.cls_head[0](self.encode(x, TASKS.index("cls"))[-1]))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = self.encode(x, 0)
        seg = self.decode(skips)
        bottleneck = self.encode(x, 1)[-1] if self.task_norm else skips[-1]
        return seg, self.cls_head(bottleneck)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that both tasks' losses depend on."""
        out = []
        for m in self.down.modules():
            if isinstance(m, nn.Conv3d) or (isinstance(m, nn.BatchNorm3d) and not self.task_norm):
                out.extend(p for p in m.parameters(recurse=False))
        return out
