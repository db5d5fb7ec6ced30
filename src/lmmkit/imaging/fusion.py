"""Fusion studies on a held-out site: sequences (channel stacking vs two-branch late fusion vs
one sequence) for a binary label, and image + clinical covariates (early / intermediate / late)
for survival with the Cox partial likelihood.

Every variant is trained with the same seed, epochs and optimizer on the training sites and
scored on the held-out site (AUC, or Harrell's C), so the tables compare fusion designs, not
training luck; the benchmark repeats them over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.imaging.device import require_torch, seed_everything

__all__ = ["sequence_fusion_study", "survival_fusion_study"]


def _split(sites: Any, target: str, n: int) -> np.ndarray:
    s = np.asarray(sites).astype(str)
    if len(s) != n:
        raise DataError(f"fusion study: {len(s)} site labels for {n} images.")
    if str(target) not in set(s):
        raise DataError(f"fusion study: target site {target!r} is not among {sorted(set(s))}.")
    is_t = s == str(target)
    if is_t.sum() < 2 or (~is_t).sum() < 2:
        raise DataError(
            f"fusion study: {int((~is_t).sum())} training and {int(is_t.sum())} held-out images; "
            "each side needs at least 2."
        )
    return is_t


def sequence_fusion_study(
    images: Any,
    labels: Any,
    sites: Any,
    *,
    target: str,
    sequences: Sequence[str] = ("T1", "T2"),
    widths: tuple[int, ...] = (8, 16, 32),
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 8,
    seed: int = 0,
    device: Any = None,
) -> pd.DataFrame:
    """Held-out-site AUC of one sequence alone, channel stacking, and two-branch late fusion.

    Parameters
    ----------
    images : ndarray (n, 2, D, H, W)
        Two sequences (or phases) as channels.
    labels : array (n,), 0/1
    sites : array (n,)
    target : str
        Held-out site.
    sequences : pair of str
        Names of the two channels (row labels).
    widths, epochs, lr, batch_size, seed, device :
        Network width and training settings, the same for every variant.

    Returns
    -------
    DataFrame
        Index ``variant`` (``<seq> only``, ``channel stacking``, ``late fusion``); columns
        ``target_auc``, ``train_auc``, ``parameters``, ``seconds``.
    """
    import time

    require_torch()
    from lmmkit.imaging.metrics import auc
    from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    from lmmkit.imaging.nets.fusion import LateFusionNet
    from lmmkit.imaging.train import check_images, predict, train_classifier

    x = check_images(images)
    if x.shape[1] != 2:
        raise DataError(f"sequence_fusion_study: images have {x.shape[1]} channels; give 2.")
    y = np.asarray(labels).astype(int)
    is_t = _split(sites, target, len(x))
    strides = (2, 2, 1)
    variants = {
        f"{sequences[0]} only": (lambda: ImageClassifier(ConvEncoder(3, 1, widths=widths, strides=strides)), [0]),
        f"{sequences[1]} only": (lambda: ImageClassifier(ConvEncoder(3, 1, widths=widths, strides=strides)), [1]),
        "channel stacking": (lambda: ImageClassifier(ConvEncoder(3, 2, widths=widths, strides=strides)), [0, 1]),
        "late fusion": (lambda: LateFusionNet(1, 1, widths=widths, strides=strides), [0, 1]),
    }  # fmt: skip
    rows = []
    for name, (make, ch) in variants.items():
        seed_everything(seed)
        net = make()
        xs = x[:, ch]
        t0 = time.perf_counter()
        net, _ = train_classifier(net, xs[~is_t], y[~is_t], epochs=epochs, lr=lr,
                                  batch_size=batch_size, seed=seed, device=device)  # fmt: skip
        lo = predict(net, xs)
        score = lo[:, 1] - lo[:, 0]
        rows.append(
            {
                "variant": name,
                "target_auc": auc(y[is_t], score[is_t]),
                "train_auc": auc(y[~is_t], score[~is_t]),
                "parameters": int(sum(p.numel() for p in net.parameters())),
                "seconds": time.perf_counter() - t0,
            }
        )
    return pd.DataFrame(rows).set_index("variant")


def survival_fusion_study(
    images: Any,
    clinical: Any,
    time: Any,
    event: Any,
    sites: Any,
    *,
    target: str,
    widths: tuple[int, ...] = (8, 16, 32),
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    device: Any = None,
) -> pd.DataFrame:
    """Held-out-site concordance of Cox risk scores: clinical only (a linear Cox model trained
    with the same loss), image only, and early / intermediate / late image + clinical fusion.

    Parameters
    ----------
    images : ndarray (n, C, D, H, W)
    clinical : array (n, k)
        Standardized clinical covariates.
    time, event : arrays (n,)
    sites : array (n,)
    target : str
    widths, epochs, lr, batch_size, seed, device :
        The same for every variant.

    Returns
    -------
    DataFrame
        Index ``variant``; columns ``target_cindex``, ``train_cindex``, ``seconds``.
    """
    import time as _time

    torch = require_torch()
    from lmmkit.imaging.metrics import concordance_index
    from lmmkit.imaging.nets.fusion import SurvivalFusionNet
    from lmmkit.imaging.train import check_images, predict_risk, train_survival

    x = check_images(images)
    c = np.asarray(clinical, dtype=np.float32)
    if c.ndim == 1:
        c = c[:, None]
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    is_t = _split(sites, target, len(x))

    class ClinicalOnly(torch.nn.Module):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(k, 1, bias=False)

        def forward(self, xb: Any, cb: Any) -> Any:
            return self.lin(cb).squeeze(-1)

    class ImageOnly(SurvivalFusionNet):
        def forward(self, xb: Any, cb: Any) -> Any:
            return self.head(self.encoder.pooled(xb)).squeeze(-1)

    k = c.shape[1]
    strides = (2, 2, 1)
    variants = {
        "clinical only": lambda: ClinicalOnly(k),
        "image only": lambda: ImageOnly(x.shape[1], k, fusion="late", widths=widths,
                                        strides=strides),
        **{
            f"{f} fusion": (lambda f=f: SurvivalFusionNet(x.shape[1], k, fusion=f, widths=widths,
                                            strides=strides))
            for f in ("early", "intermediate", "late")
        },
    }
    rows = []
    for name, make in variants.items():
        seed_everything(seed)
        net = make()
        t0 = _time.perf_counter()
        net, _ = train_survival(net, x[~is_t], c[~is_t], t[~is_t], e[~is_t], epochs=epochs,
                                lr=lr, batch_size=batch_size, seed=seed, device=device)  # fmt: skip
        risk = predict_risk(net, x, c)
        rows.append(
            {
                "variant": name,
                "target_cindex": concordance_index(t[is_t], e[is_t], risk[is_t]),
                "train_cindex": concordance_index(t[~is_t], e[~is_t], risk[~is_t]),
                "seconds": _time.perf_counter() - t0,
            }
        )
    return pd.DataFrame(rows).set_index("variant")
