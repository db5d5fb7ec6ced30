"""Training loops: one seeded mini-batch loop and the segmentation, classification and survival
trainers built on it, plus image checks and intensity normalization.

Every trainer returns ``(net, history)``: the trained module (on the chosen device) and a
DataFrame with one row per epoch (``epoch``, ``train_loss`` and the validation metrics), the
learning curve.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.imaging.device import get_device, require_torch, seed_everything

__all__ = [
    "check_images",
    "normalize_intensity",
    "train_loop",
    "predict",
    "train_segmentation",
    "segment",
    "train_classifier",
    "train_survival",
]


def check_images(images: Any, *, ids: Sequence[Any] | None = None, ndim: int = 5) -> np.ndarray:
    """``images`` as a float32 array of ``ndim`` dimensions without NaN or infinite voxels.

    Parameters
    ----------
    images : array-like
        (n, channels, D, H, W) for ``ndim=5``.
    ids : sequence, optional
        Image identifiers, named in errors.
    ndim : int

    Returns
    -------
    ndarray (float32)

    Raises
    ------
    DataError
        Wrong number of dimensions, or NaN/infinite voxels (naming the image and the first
        bad voxel).

    Examples
    --------
    >>> check_images(np.zeros((1, 1, 4, 4, 4))).dtype
    dtype('float32')
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != ndim:
        raise DataError(
            f"images have shape {arr.shape}; expected {ndim} dimensions "
            "(images, channels, D, H, W). Add a channel axis with a[:, None] if needed."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        per_image = bad.reshape(len(arr), -1).sum(1)
        i = int(np.flatnonzero(per_image)[0])
        name = ids[i] if ids is not None else f"#{i}"
        vox = tuple(int(v) for v in np.argwhere(bad[i])[0])
        raise DataError(
            f"image {name!s} has {int(per_image[i])} NaN/infinite voxel(s), first at "
            f"(channel, z, y, x) = {vox}; {int((per_image > 0).sum())} image(s) affected. "
            "Fill or mask them (e.g. np.nan_to_num with the background value) before training."
        )
    return arr


def normalize_intensity(images: Any, *, ids: Sequence[Any] | None = None) -> np.ndarray:
    """Channel-wise z-scoring of every image (MONAI ``NormalizeIntensity``).

    The input is not modified.

    Examples
    --------
    >>> x = normalize_intensity(np.arange(16.0).reshape(1, 1, 2, 2, 4))
    >>> round(float(x.mean()), 6), round(float(x.std()), 4)
    (0.0, 1.0)
    """
    from monai.transforms import NormalizeIntensity

    arr = check_images(images, ids=ids)
    tf = NormalizeIntensity(channel_wise=True)
    # MONAI normalizes NumPy input in place: work on copies, never on the caller's array
    return np.stack([np.asarray(tf(a.copy())) for a in arr]).astype(np.float32)


def _tensors(arrays: Sequence[Any], device: Any) -> list[Any]:
    torch = require_torch()
    out = []
    for a in arrays:
        t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
        out.append(t.to(device))
    return out


def train_loop(
    net: Any,
    loss_fn: Callable[..., Any],
    arrays: Sequence[Any],
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 8,
    weight_decay: float = 0.0,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    extra_parameters: Sequence[Any] = (),
    seed: int = 0,
    device: Any = None,
) -> tuple[Any, pd.DataFrame]:
    """Adam on mini-batches of ``arrays`` (shuffled by a seeded generator).

    Parameters
    ----------
    net : torch.nn.Module
    loss_fn : callable
        ``loss_fn(net, *batch) -> scalar tensor``; the batch holds one slice of each array.
    arrays : sequence of ndarray
        Same first dimension (the samples).
    epochs, lr, batch_size, weight_decay :
        Optimizer settings. A last batch of one sample is dropped (batch norm needs two).
    evaluate : callable, optional
        ``evaluate(net) -> dict`` called after every epoch (in eval mode, no gradients);
        its values become columns of the history.
    extra_parameters : sequence of tensors
        Further trainable tensors (e.g. uncertainty-weighting log-variances).
    seed : int
    device : optional
        See :func:`lmmkit.imaging.device.get_device`.

    Returns
    -------
    (net, history)

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(1, 1)
    >>> x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
    >>> _, h = train_loop(net, lambda m, a, b: ((m(a) - b) ** 2).mean(), [x, 2 * x], epochs=30,
    ...                   lr=0.1)
    >>> bool(h["train_loss"].iloc[-1] < h["train_loss"].iloc[0])
    True
    """
    torch = require_torch()
    dev = get_device(device)
    gen = seed_everything(seed)
    net = net.to(dev)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise DataError(f"train_loop: arrays differ in length {[len(a) for a in arrays]}.")
    if n < 2:
        raise DataError(f"train_loop: {n} training sample(s); training needs at least 2.")
    tensors = _tensors(arrays, dev)
    params = [p for p in net.parameters() if p.requires_grad] + list(extra_parameters)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    rows = []
    t0 = _time.perf_counter()
    for epoch in range(1, int(epochs) + 1):
        net.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        total, count = 0.0, 0
        for start in range(0, n, int(batch_size)):
            idx = perm[start : start + int(batch_size)]
            if len(idx) < 2:
                continue
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net, *[t[idx] for t in tensors])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        row = {"epoch": epoch, "train_loss": total / max(count, 1)}
        if evaluate is not None:
            net.eval()
            with torch.no_grad():
                row.update(evaluate(net))
        row["seconds"] = _time.perf_counter() - t0
        rows.append(row)
    net.eval()
    return net, pd.DataFrame(rows)


def predict(net: Any, images: Any, *, batch_size: int = 16, fn: Callable | None = None) -> Any:
    """Outputs of ``net`` (or ``fn(net, batch)``) on ``images`` in eval mode, as NumPy
    (a tuple of arrays when the net returns a tuple).

    Examples
    --------
    >>> import torch
    >>> predict(torch.nn.Flatten(), np.ones((3, 1, 2, 2, 2), np.float32)).shape
    (3, 8)
    """
    torch = require_torch()
    try:
        dev = next(net.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    net.eval()
    outs: list[Any] = []
    with torch.no_grad():
        for s in range(0, len(images), int(batch_size)):
            xb = torch.from_numpy(np.ascontiguousarray(images[s : s + int(batch_size)])).to(dev)
            o = net(xb) if fn is None else fn(net, xb)
            outs.append(o)
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate([o[k].cpu().numpy() for o in outs]) for k in range(len(outs[0])))
    return np.concatenate([o.cpu().numpy() for o in outs])


def segment(net: Any, images: Any, *, batch_size: int = 8) -> np.ndarray:
    """Binary lesion masks (argmax of a 2-class segmentation output, or of its first output
    when the net returns a tuple), shape (n, *spatial).

    Examples
    --------
    >>> from lmmkit.imaging.nets.multitask import make_unet
    >>> segment(make_unet(1), np.zeros((1, 1, 16, 16, 16), np.float32)).shape
    (1, 16, 16, 16)
    """

    def first(net: Any, xb: Any) -> Any:
        out = net(xb)
        return (out[0] if isinstance(out, tuple) else out).argmax(1)

    return predict(net, images, batch_size=batch_size, fn=first).astype(bool)


def train_segmentation(
    images: Any,
    masks: Any,
    *,
    net: Any = None,
    val: tuple[Any, Any] | None = None,
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 4,
    seed: int = 0,
    device: Any = None,
) -> tuple[Any, pd.DataFrame]:
    """Train a U-Net (default :func:`lmmkit.imaging.nets.multitask.make_unet`) with Dice +
    cross-entropy (:func:`lmmkit.imaging.losses.dice_ce_loss`).

    Parameters
    ----------
    images : ndarray (n, C, D, H, W)
    masks : ndarray (n, D, H, W), 0/1
    net : torch.nn.Module, optional
    val : (images, masks), optional
        Validation set; the history then has ``val_dice`` (mean over images, an empty
        predicted mask counting 0).
    epochs, lr, batch_size, seed, device :
        As :func:`train_loop`.

    Returns
    -------
    (net, history)

    Examples
    --------
    >>> from lmmkit.imaging.synthetic import make_multisite
    >>> c = make_multisite(2, shape=(16, 16, 16))
    >>> net, h = train_segmentation(c.images, c.masks, epochs=1)
    >>> list(h.columns)[:2]
    ['epoch', 'train_loss']
    """
    from lmmkit.imaging.losses import dice_ce_loss
    from lmmkit.imaging.metrics import mean_dice
    from lmmkit.imaging.nets.multitask import make_unet

    x = check_images(images)
    y = np.asarray(masks)
    if y.shape != (x.shape[0], *x.shape[2:]):
        raise DataError(
            f"train_segmentation: masks have shape {y.shape}; images {x.shape} need masks of "
            f"shape {(x.shape[0], *x.shape[2:])}."
        )
    require_torch()
    seed_everything(seed)
    net = net if net is not None else make_unet(x.shape[1])
    loss = dice_ce_loss()

    def loss_fn(m: Any, xb: Any, yb: Any) -> Any:
        out = m(xb)
        out = out[0] if isinstance(out, tuple) else out
        return loss(out, yb[:, None])

    evaluate = None
    if val is not None:
        vx, vy = check_images(val[0]), np.asarray(val[1])

        def evaluate(m: Any) -> dict[str, float]:
            return {"val_dice": mean_dice(segment(m, vx), vy)}

    return train_loop(
        net, loss_fn, [x, y.astype(np.int64)], epochs=epochs, lr=lr, batch_size=batch_size,
        evaluate=evaluate, seed=seed, device=device,
    )  # fmt: skip


def train_classifier(
    net: Any,
    images: Any,
    labels: Any,
    *,
    val: tuple[Any, Any] | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 8,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: Any = None,
) -> tuple[Any, pd.DataFrame]:
    """Cross-entropy training of a classifier returning logits (or a tuple whose first item is
    the logits). With ``val`` the history has ``val_auc`` (binary) and ``val_loss``.

    Examples
    --------
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    >>> net = ImageClassifier(ConvEncoder(3, 1, widths=(2, 4)))
    >>> x = np.random.default_rng(0).normal(size=(6, 1, 8, 8, 8)).astype(np.float32)
    >>> _, h = train_classifier(net, x, np.array([0, 1] * 3), epochs=1)
    >>> len(h)
    1
    """
    torch = require_torch()
    from lmmkit.imaging.metrics import auc

    x = check_images(images)
    y = np.asarray(labels).astype(np.int64)
    if len(y) != len(x):
        raise DataError(f"train_classifier: {len(y)} labels for {len(x)} images.")
    ce = torch.nn.CrossEntropyLoss()

    def logits(m: Any, xb: Any) -> Any:
        out = m(xb)
        return out[0] if isinstance(out, tuple) else out

    def loss_fn(m: Any, xb: Any, yb: Any) -> Any:
        return ce(logits(m, xb), yb)

    evaluate = None
    if val is not None:
        vx, vy = check_images(val[0]), np.asarray(val[1]).astype(np.int64)

        def evaluate(m: Any) -> dict[str, float]:
            lo = predict(m, vx, fn=logits)
            res = {"val_loss": float(ce(torch.from_numpy(lo), torch.from_numpy(vy)))}
            if lo.shape[1] == 2:
                res["val_auc"] = auc(vy, lo[:, 1] - lo[:, 0])
            return res

    return train_loop(
        net, loss_fn, [x, y], epochs=epochs, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, evaluate=evaluate, seed=seed, device=device,
    )  # fmt: skip


def train_survival(
    net: Any,
    images: Any,
    clinical: Any,
    time: Any,
    event: Any,
    *,
    val: tuple[Any, Any, Any, Any] | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    ties: str = "efron",
    seed: int = 0,
    device: Any = None,
) -> tuple[Any, pd.DataFrame]:
    """Train a risk network ``net(images, clinical) -> eta`` with the Cox partial likelihood
    (:func:`lmmkit.imaging.losses.cox_loss`, Efron ties) over mini-batch risk sets. With
    ``val = (images, clinical, time, event)`` the history has ``val_cindex``.

    Examples
    --------
    >>> from lmmkit.imaging.nets.fusion import SurvivalFusionNet
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(8, 1, 8, 8, 8)).astype(np.float32)
    >>> c = rng.normal(size=(8, 2)).astype(np.float32)
    >>> net = SurvivalFusionNet(1, 2, widths=(2, 4))
    >>> _, h = train_survival(net, x, c, np.arange(1.0, 9), np.ones(8), epochs=1, batch_size=8)
    >>> len(h)
    1
    """
    from lmmkit.imaging.losses import cox_loss
    from lmmkit.imaging.metrics import concordance_index

    x = check_images(images)
    c = np.asarray(clinical, dtype=np.float32)
    t = np.asarray(time, dtype=np.float32)
    e = np.asarray(event, dtype=np.float32)
    if not (len(x) == len(c) == len(t) == len(e)):
        raise DataError(
            f"train_survival: {len(x)} images, {len(c)} clinical rows, {len(t)} times, "
            f"{len(e)} events; give one of each per subject."
        )

    def loss_fn(m: Any, xb: Any, cb: Any, tb: Any, eb: Any) -> Any:
        return cox_loss(m(xb, cb), tb, eb, ties=ties)

    evaluate = None
    if val is not None:
        vx, vc = check_images(val[0]), np.asarray(val[1], dtype=np.float32)
        vt, ve = np.asarray(val[2], dtype=float), np.asarray(val[3], dtype=float)

        def evaluate(m: Any) -> dict[str, float]:
            risk = predict_risk(m, vx, vc)
            return {"val_cindex": concordance_index(vt, ve, risk)}

    return train_loop(
        net, loss_fn, [x, c, t, e], epochs=epochs, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, evaluate=evaluate, seed=seed, device=device,
    )  # fmt: skip


def predict_risk(net: Any, images: Any, clinical: Any, *, batch_size: int = 16) -> np.ndarray:
    """Risk scores ``net(images, clinical)`` in eval mode."""
    torch = require_torch()
    dev = next(net.parameters()).device
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size])).to(dev)
            cb = torch.from_numpy(np.ascontiguousarray(clinical[s : s + batch_size])).to(dev)
            out.append(net(xb, cb).cpu().numpy())
    return np.concatenate(out)
