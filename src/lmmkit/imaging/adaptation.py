"""Scanner shift: no adaptation vs DANN vs ComBat on deep features, on a held-out scanner.

The setting is unsupervised domain adaptation: labels are known at the training (source)
scanners; images of the target scanner are available without labels; performance is measured
on the target scanner's labels, which no method sees.

* ``none`` -- an :class:`~lmmkit.imaging.nets.encoders.ImageClassifier` trained on the source
  scanners; its own head scores the target images.
* ``dann`` -- the same encoder and head in a :class:`~lmmkit.imaging.nets.dann.DANN`, trained
  with the label loss on source images and the domain (scanner) loss on source and target
  images through the gradient-reversal layer (weight ramped by
  :func:`~lmmkit.imaging.nets.dann.grl_schedule`).
* ``combat`` -- the ``none`` network's deep features of every image, harmonized across
  scanners with :func:`lmmkit.combat` (empirical-Bayes location/scale per scanner; the target
  scanner's images are used without labels), then a logistic regression fitted on the
  harmonized source features scores the target.
* ``none_features`` -- that logistic regression on the raw features (so ``combat`` differs from
  it only by the harmonization).

Per method: the target scanner's AUC, the source AUC (training data, an optimism check), and
the scanner predictability of the features (cross-validated accuracy of telling the scanners
apart, :func:`lmmkit.batch_predictability`; chance = the largest scanner's share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.imaging.device import get_device, require_torch, seed_everything

__all__ = ["ShiftStudy", "train_dann", "scanner_shift_study", "check_sites"]


def check_sites(sites: Any, *, minimum: int = 2, where: str = "") -> pd.Series:
    """Scanner/site labels as a Series; raise if a site has fewer than ``minimum`` images.

    Examples
    --------
    >>> check_sites(["a", "a", "b", "b"]).value_counts().to_dict()
    {'a': 2, 'b': 2}
    """
    s = pd.Series(np.asarray(sites)).astype(str)
    counts = s.value_counts()
    small = counts[counts < minimum]
    if len(small):
        raise DataError(
            f"{where}site(s) {', '.join(f'{k!r} ({v} image)' for k, v in small.items())} have "
            f"fewer than {minimum} images; a per-site location and scale (ComBat, a domain "
            "classifier) cannot be estimated from one subject. Merge the site with a similar "
            "one or leave it out."
        )
    return s


def train_dann(
    net: Any,
    source_images: Any,
    source_labels: Any,
    source_domains: Any,
    target_images: Any,
    target_domains: Any,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 8,
    domain_weight: float = 1.0,
    seed: int = 0,
    device: Any = None,
) -> tuple[Any, pd.DataFrame]:
    """Train a :class:`~lmmkit.imaging.nets.dann.DANN`: label loss on source batches, domain
    loss on source and (unlabelled) target batches, reversal weight ramped over training.

    Parameters
    ----------
    net : DANN
    source_images, source_labels, source_domains : arrays
        Labelled images and their integer scanner codes.
    target_images, target_domains : arrays
        Unlabelled images of the target scanner(s) and their codes.
    epochs, lr, batch_size, seed, device :
        As :func:`lmmkit.imaging.train.train_loop`.
    domain_weight : float
        Weight of the domain loss.

    Returns
    -------
    (net, history)
        History per epoch: ``label_loss``, ``domain_loss``, ``domain_accuracy``, ``lambda``.

    Examples
    --------
    >>> from lmmkit.imaging.nets import DANN, ConvEncoder
    >>> rng = np.random.default_rng(0)
    >>> xs, xt = (rng.normal(size=(4, 1, 8, 8, 8)).astype(np.float32) for _ in range(2))
    >>> net = DANN(ConvEncoder(3, 1, widths=(2, 4)), n_classes=2, n_domains=2)
    >>> _, h = train_dann(net, xs, [0, 1, 0, 1], [0] * 4, xt, [1] * 4, epochs=1, batch_size=4)
    >>> list(h.columns)[:3]
    ['epoch', 'label_loss', 'domain_loss']
    """
    torch = require_torch()
    from lmmkit.imaging.nets.dann import grl_schedule
    from lmmkit.imaging.train import check_images

    dev = get_device(device)
    gen = seed_everything(seed)
    xs, xt = check_images(source_images), check_images(target_images)
    ys = np.asarray(source_labels).astype(np.int64)
    ds, dt = np.asarray(source_domains).astype(np.int64), np.asarray(target_domains).astype(np.int64)
    if not (len(xs) == len(ys) == len(ds)) or len(xt) != len(dt):
        raise DataError("train_dann: images, labels and domains differ in length.")
    if len(xs) < 2 or len(xt) < 2:
        raise DataError(
            f"train_dann: {len(xs)} source and {len(xt)} target images; each needs at least 2."
        )
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    ce = torch.nn.CrossEntropyLoss()
    T = [torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in (xs, ys, ds, xt, dt)]
    n_s, n_t = len(xs), len(xt)
    steps = max(1, n_s // int(batch_size))
    total_steps = steps * int(epochs)
    rows, step = [], 0
    for epoch in range(1, int(epochs) + 1):
        net.train()
        ps = torch.randperm(n_s, generator=gen).to(dev)
        acc = {"label_loss": 0.0, "domain_loss": 0.0, "domain_correct": 0.0, "domain_n": 0}
        for b in range(steps):
            lam = grl_schedule(step / max(total_steps - 1, 1))
            net.grl.lam = lam
            i_s = ps[b * int(batch_size) : (b + 1) * int(batch_size)]
            i_t = torch.randint(0, n_t, (len(i_s),), generator=gen).to(dev)
            x = torch.cat([T[0][i_s], T[3][i_t]])
            dom = torch.cat([T[2][i_s], T[4][i_t]])
            logits, dlogits = net(x)
            l_label = ce(logits[: len(i_s)], T[1][i_s])
            l_dom = ce(dlogits, dom)
            opt.zero_grad(set_to_none=True)
            (l_label + domain_weight * l_dom).backward()
            opt.step()
            acc["label_loss"] += float(l_label.detach())
            acc["domain_loss"] += float(l_dom.detach())
            acc["domain_correct"] += float((dlogits.argmax(1) == dom).sum())
            acc["domain_n"] += len(dom)
            step += 1
        rows.append(
            {
                "epoch": epoch,
                "label_loss": acc["label_loss"] / steps,
                "domain_loss": acc["domain_loss"] / steps,
                "domain_accuracy": acc["domain_correct"] / max(acc["domain_n"], 1),
                "lambda": net.grl.lam,
            }
        )
    net.eval()
    return net, pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class ShiftStudy:
    """The scanner-shift comparison.

    Attributes
    ----------
    table : DataFrame
        One row per method: ``target_auc``, ``source_auc``, ``scanner_accuracy``
        (scanner predictability of the features), ``chance_accuracy``.
    target : str
        The held-out scanner.
    histories : dict of DataFrame
        Training curves of the ``none`` and ``dann`` networks.
    features : dict of DataFrame
        Deep features (images x features) used for ``none_features`` and ``combat``.
    """

    table: pd.DataFrame
    target: str
    histories: dict[str, pd.DataFrame] = field(repr=False)
    features: dict[str, pd.DataFrame] = field(repr=False)


def _logistic_auc(train_x: Any, train_y: Any, test_x: Any, test_y: Any) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lmmkit.imaging.metrics import auc

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(train_x, train_y)
    return (
        auc(test_y, clf.decision_function(test_x)),
        auc(train_y, clf.decision_function(train_x)),
    )


def _scanner_accuracy(features: pd.DataFrame, sites: pd.Series) -> float:
    from lmmkit.omics.diagnostics import batch_predictability

    res = batch_predictability(features.T, sites, n_features=None, n_splits=3)
    return float(res.accuracy)


def scanner_shift_study(
    images: Any,
    labels: Any,
    sites: Any,
    *,
    target: str,
    encoder: Any = None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
    device: Any = None,
) -> ShiftStudy:
    """Compare no adaptation, DANN and ComBat-on-features on the held-out scanner ``target``.

    Parameters
    ----------
    images : ndarray (n, C, D, H, W)
    labels : array (n,), 0/1
    sites : array (n,)
        Scanner (site) of each image; each needs at least 2 images.
    target : str
        The scanner held out (its labels are used only for evaluation).
    encoder : callable, optional
        ``encoder() -> nn.Module`` with ``pooled`` and ``out_features``; default a 3-D
        :class:`~lmmkit.imaging.nets.encoders.ConvEncoder` of widths (8, 16, 32).
    epochs, lr, batch_size, seed, device :
        Training settings (the same for both networks).

    Returns
    -------
    ShiftStudy

    Raises
    ------
    DataError
        ``target`` is not a site, or a site with fewer than 2 images.
    """
    require_torch()
    from lmmkit.imaging.features import deep_features
    from lmmkit.imaging.metrics import auc
    from lmmkit.imaging.nets.dann import DANN
    from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    from lmmkit.imaging.train import check_images, predict, train_classifier
    from lmmkit.omics.combat import combat

    x = check_images(images)
    y = np.asarray(labels).astype(int)
    s = check_sites(sites, minimum=2, where="scanner_shift_study: ")
    if str(target) not in set(s):
        raise DataError(
            f"scanner_shift_study: target={target!r} is not a site; sites are {sorted(set(s))}."
        )
    is_t = (s == str(target)).to_numpy()
    codes = {name: k for k, name in enumerate(sorted(set(s)))}
    d = s.map(codes).to_numpy()

    def make_encoder() -> Any:
        seed_everything(seed)
        if encoder is not None:
            return encoder()
        return ConvEncoder(3, x.shape[1], widths=(8, 16, 32), strides=(2, 2, 1))

    kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device)
    none, h_none = train_classifier(
        ImageClassifier(make_encoder()), x[~is_t], y[~is_t], val=(x[is_t], y[is_t]), **kw
    )
    dann, h_dann = train_dann(
        DANN(make_encoder(), n_classes=2, n_domains=len(codes)),
        x[~is_t], y[~is_t], d[~is_t], x[is_t], d[is_t], **kw,
    )  # fmt: skip
    ids = [f"img{i}" for i in range(len(x))]
    rows = []
    feats = {}
    for name, net in (("none", none), ("dann", dann)):
        lo = predict(net, x)
        lo = lo[0] if isinstance(lo, tuple) else lo
        score = lo[:, 1] - lo[:, 0]
        f = deep_features(net, x, ids=ids)
        feats[name] = f
        rows.append(
            {
                "method": name,
                "target_auc": auc(y[is_t], score[is_t]),
                "source_auc": auc(y[~is_t], score[~is_t]),
                "scanner_accuracy": _scanner_accuracy(f, pd.Series(s.to_numpy(), index=ids)),
            }
        )
    raw = feats["none"]
    keep = raw.columns[raw.std(axis=0) > 1e-8]  # ComBat needs non-constant features
    harmonized = combat(raw[keep].T, pd.Series(s.to_numpy(), index=ids)).T
    feats["combat"] = harmonized
    for name, f in (("none_features", raw[keep]), ("combat", harmonized)):
        t_auc, s_auc = _logistic_auc(f[~is_t], y[~is_t], f[is_t], y[is_t])
        rows.append(
            {
                "method": name,
                "target_auc": t_auc,
                "source_auc": s_auc,
                "scanner_accuracy": _scanner_accuracy(f, pd.Series(s.to_numpy(), index=ids)),
            }
        )
    table = pd.DataFrame(rows).set_index("method")
    table["chance_accuracy"] = float(s.value_counts(normalize=True).max())
    return ShiftStudy(table, str(target), {"none": h_none, "dann": h_dann}, feats)
