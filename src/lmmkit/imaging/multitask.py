"""Multi-task training of a shared encoder with segmentation and classification heads.

Methods (``method=``):

* ``"sum"`` -- the plain summed loss ``L_seg + L_cls``.
* ``"pcgrad"`` -- projecting conflicting gradients (Yu et al. 2020): on the shared parameters,
  each task's gradient ``g_i`` is projected onto the normal plane of every other task's
  gradient ``g_j`` it conflicts with (``g_i . g_j < 0``): ``g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j``
  (other tasks visited in a random order), and the projected gradients are summed;
  task-specific parameters get their own task's gradient. :func:`pcgrad` is the projection.
* ``"uncertainty"`` -- homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018):
  ``sum_i 0.5 exp(-s_i) L_i + 0.5 s_i`` with learned log-variances ``s_i``; at fixed losses the
  optimum is ``s_i = log L_i``.
* ``"task_bn"`` -- task-specific batch normalization: shared convolution weights, one set of BN
  parameters and statistics per task (``MultiTaskUNet(task_norm=True)``), summed loss.

Every step logs the cosine between the two tasks' gradients on the shared parameters (the
conflict diagnostic; computed from the unweighted losses) in the ``steps`` table.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.imaging.device import get_device, require_torch, seed_everything

__all__ = ["METHODS", "pcgrad", "MultiTaskResult", "train_multitask"]

METHODS = ("sum", "pcgrad", "uncertainty", "task_bn")


def pcgrad(grads: list[Any], *, order: list[list[int]] | None = None, rng: Any = None) -> Any:
    """PCGrad combination of per-task gradient vectors.

    Parameters
    ----------
    grads : list of 1-D tensors or arrays
        One flattened gradient per task.
    order : list of lists, optional
        ``order[i]``: the order in which task i visits the other tasks (default: random from
        ``rng``; with two tasks the order does not matter).
    rng : numpy.random.Generator, optional

    Returns
    -------
    Same type as the inputs: the sum of the projected gradients.

    Examples
    --------
    >>> import numpy as np
    >>> pcgrad([np.array([1.0, 0.0]), np.array([-1.0, 1.0])]).tolist()
    [0.5, 1.5]
    """
    k = len(grads)
    rng = rng if rng is not None else np.random.default_rng(0)
    out = []
    for i in range(k):
        g = grads[i] * 1.0
        others = order[i] if order is not None else [int(j) for j in rng.permutation(k) if j != i]
        for j in others:
            dot = float((g * grads[j]).sum())
            if dot < 0:
                g = g - dot / float((grads[j] * grads[j]).sum()) * grads[j]
        out.append(g)
    total = out[0]
    for g in out[1:]:
        total = total + g
    return total


@dataclass(frozen=True, eq=False)
class MultiTaskResult:
    """A trained multi-task network and its logs.

    Attributes
    ----------
    net : torch.nn.Module
    method : str
    history : DataFrame
        Per epoch: ``train_seg_loss``, ``train_cls_loss``, ``mean_cosine``,
        ``conflict_fraction`` (steps with negative cosine), and with validation ``val_dice``,
        ``val_auc``; ``seconds``.
    steps : DataFrame
        Per optimizer step: ``epoch``, ``step``, ``seg_loss``, ``cls_loss``, ``cosine``,
        and for uncertainty weighting ``s_seg``, ``s_cls``.
    """

    net: Any = field(repr=False)
    method: str
    history: pd.DataFrame = field(repr=False)
    steps: pd.DataFrame = field(repr=False)


def _flat(grads: list[Any], like: list[Any]) -> Any:
    torch = require_torch()
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, like)]
    )


def train_multitask(
    images: Any,
    masks: Any,
    labels: Any,
    *,
    method: str = "sum",
    val: tuple[Any, Any, Any] | None = None,
    widths: tuple[int, ...] = (8, 16, 32),
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 4,
    seed: int = 0,
    device: Any = None,
) -> MultiTaskResult:
    """Train :class:`lmmkit.imaging.nets.multitask.MultiTaskUNet` on segmentation (Dice + CE)
    and binary classification (CE) with one of :data:`METHODS`.

    Parameters
    ----------
    images : ndarray (n, C, D, H, W)
    masks : ndarray (n, D, H, W)
    labels : ndarray (n,), 0/1
    method : {"sum", "pcgrad", "uncertainty", "task_bn"}
    val : (images, masks, labels), optional
    widths, epochs, lr, batch_size, seed, device :
        Network widths and optimizer settings (Adam), as
        :func:`lmmkit.imaging.train.train_loop`.

    Returns
    -------
    MultiTaskResult

    Raises
    ------
    DataError
        Unknown method, or inputs of different lengths.

    Examples
    --------
    >>> from lmmkit.imaging.synthetic import make_multisite
    >>> c = make_multisite(2, shape=(16, 16, 16))
    >>> r = train_multitask(c.images, c.masks, c.table["y"], method="pcgrad", epochs=1,
    ...                     widths=(4, 8))
    >>> sorted(r.steps.columns)[:3]
    ['cls_loss', 'cosine', 'epoch']
    """
    torch = require_torch()
    from lmmkit.imaging.losses import dice_ce_loss
    from lmmkit.imaging.metrics import auc, mean_dice
    from lmmkit.imaging.nets.multitask import MultiTaskUNet
    from lmmkit.imaging.train import check_images, predict

    if method not in METHODS:
        raise DataError(f"train_multitask: method={method!r} is not one of {METHODS}.")
    x = check_images(images)
    m = np.asarray(masks).astype(np.int64)
    y = np.asarray(labels).astype(np.int64)
    if not (len(x) == len(m) == len(y)):
        raise DataError(
            f"train_multitask: {len(x)} images, {len(m)} masks, {len(y)} labels; "
            "give one of each per image."
        )
    dev = get_device(device)
    gen = seed_everything(seed)
    rng = np.random.default_rng(seed)
    net = MultiTaskUNet(x.shape[1], 2, widths=widths, task_norm=(method == "task_bn")).to(dev)
    shared = net.shared_parameters()
    shared_ids = {id(p) for p in shared}
    params = list(net.parameters())
    log_var = torch.zeros(2, device=dev, requires_grad=(method == "uncertainty"))
    opt = torch.optim.Adam(params + ([log_var] if method == "uncertainty" else []), lr=lr)
    seg_loss, ce = dice_ce_loss(), torch.nn.CrossEntropyLoss()
    xt, mt, yt = (torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in (x, m, y))
    n = len(x)
    step_rows, rows = [], []
    t0 = _time.perf_counter()
    for epoch in range(1, int(epochs) + 1):
        net.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        for start in range(0, n, int(batch_size)):
            idx = perm[start : start + int(batch_size)]
            if len(idx) < 2:
                continue
            seg, cls = net(xt[idx])
            losses = [seg_loss(seg, mt[idx][:, None]), ce(cls, yt[idx])]
            g_task = [
                torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                for loss in losses
            ]
            g_shared = [_flat([g[k] for k, p in enumerate(params) if id(p) in shared_ids],
                              shared) for g in g_task]  # fmt: skip
            cos = float(
                torch.nn.functional.cosine_similarity(g_shared[0], g_shared[1], dim=0, eps=1e-12)
            )
            if method == "uncertainty":
                w = [0.5 * torch.exp(-log_var[i]).detach() for i in range(2)]
            else:
                w = [1.0, 1.0]
            opt.zero_grad(set_to_none=True)
            for k, p in enumerate(params):
                parts = [w[i] * g_task[i][k] for i in range(2) if g_task[i][k] is not None]
                p.grad = sum(parts) if parts else None
            if method == "pcgrad":  # shared parameters: the projected sum instead
                combined, offset = pcgrad(g_shared, rng=rng), 0
                for p in shared:
                    p.grad = combined[offset : offset + p.numel()].view_as(p).clone()
                    offset += p.numel()
            if method == "uncertainty":
                lv = torch.stack([loss.detach() for loss in losses])
                log_var.grad = 0.5 - 0.5 * torch.exp(-log_var.detach()) * lv
            opt.step()
            row = {
                "epoch": epoch, "step": len(step_rows), "seg_loss": float(losses[0].detach()),
                "cls_loss": float(losses[1].detach()), "cosine": cos,
            }  # fmt: skip
            if method == "uncertainty":
                row.update(s_seg=float(log_var[0].detach()), s_cls=float(log_var[1].detach()))
            step_rows.append(row)
        ep = pd.DataFrame([r for r in step_rows if r["epoch"] == epoch])
        hist = {
            "epoch": epoch,
            "train_seg_loss": float(ep["seg_loss"].mean()),
            "train_cls_loss": float(ep["cls_loss"].mean()),
            "mean_cosine": float(ep["cosine"].mean()),
            "conflict_fraction": float((ep["cosine"] < 0).mean()),
        }
        if val is not None:
            vx = check_images(val[0])
            seg_p, cls_p = predict(net, vx)
            hist["val_dice"] = mean_dice(seg_p.argmax(1), val[1])
            hist["val_auc"] = auc(np.asarray(val[2]), cls_p[:, 1] - cls_p[:, 0])
        hist["seconds"] = _time.perf_counter() - t0
        rows.append(hist)
    net.eval()
    return MultiTaskResult(net, method, pd.DataFrame(rows), pd.DataFrame(step_rows))
