"""Grad-CAM saliency (captum's ``LayerGradCam``) and the lesion-hit test.

Grad-CAM weights the chosen layer's feature maps by their spatially averaged gradients of the
class score and keeps the positive part; the map lives on **that layer's grid** and is
upsampled (trilinear) to the image. The grid is the resolution limit: with a layer of
stride ``s`` a map cell covers ``s`` voxels per axis, so a lesion smaller than a cell cannot be
localized more finely than the cell that contains it, whatever the upsampling draws.
:class:`CamResult` reports the grid and the cell size.

The lesion-hit test asks whether the map's maximum falls inside the true lesion more often than
a voxel drawn uniformly from the image (or from ``region``) would: under chance image i is a
hit with probability ``p_i = |lesion_i| / |region_i|``; the number of hits is then
Poisson-binomial, and the p-value is its exact upper tail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, LmmkitError, close_matches
from lmmkit.imaging.device import require_torch

__all__ = ["CamResult", "HitTest", "grad_cam", "lesion_hit_test", "poisson_binomial_sf"]


class LayerNotFoundError(LmmkitError):
    """The named layer is not a submodule of the model."""


@dataclass(frozen=True, eq=False)
class CamResult:
    """Grad-CAM maps of a batch of images.

    Attributes
    ----------
    maps : ndarray (n, *spatial)
        Upsampled to the image grid, each scaled to [0, 1] (all zero when the map is flat).
    coarse : ndarray (n, *grid)
        The maps on the layer's own grid (before upsampling), unscaled.
    layer : str
    grid : tuple of int
        The layer's spatial shape.
    cell : tuple of float
        Voxels per map cell along each axis (image shape / grid): the resolution limit.
    target : ndarray (n,)
        The class whose score was explained for each image.
    """

    maps: np.ndarray = field(repr=False)
    coarse: np.ndarray = field(repr=False)
    layer: str
    grid: tuple[int, ...]
    cell: tuple[float, ...]
    target: np.ndarray = field(repr=False)


def _find_layer(model: Any, layer: str) -> Any:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        conv_like = [n for n, m in modules.items() if n and "Conv" in type(m).__name__]
        raise LayerNotFoundError(
            f"grad_cam: the model ({type(model).__name__}) has no layer {layer!r}."
            f"{close_matches(layer, list(modules))} Convolution layers: {conv_like[:12]}."
        )
    return modules[layer]


def grad_cam(
    model: Any,
    images: Any,
    *,
    layer: str,
    target: int | Sequence[int] | None = None,
    output: Callable[[Any], Any] | None = None,
    batch_size: int = 8,
) -> CamResult:
    """Grad-CAM of ``model`` at ``layer`` through captum, upsampled to the image.

    Parameters
    ----------
    model : torch.nn.Module
        Returns class logits, or a tuple whose first item (or ``output(out)``) is the logits.
    images : ndarray (n, C, *spatial)
    layer : str
        A name from ``model.named_modules()`` (e.g. ``"encoder.blocks.1"``).
    target : int or sequence of int, optional
        Class to explain per image (default: the predicted class).
    output : callable, optional
        Selects the logits from the model's output (default: the output, or its first item).
    batch_size : int

    Returns
    -------
    CamResult

    Raises
    ------
    LayerNotFoundError
        ``layer`` is not a submodule (the message lists close names and the conv layers).

    Examples
    --------
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    >>> net = ImageClassifier(ConvEncoder(3, 1, widths=(2, 4)))
    >>> cam = grad_cam(net, np.ones((1, 1, 8, 8, 8), np.float32), layer="encoder.blocks.1")
    >>> cam.grid, cam.cell
    ((4, 4, 4), (2.0, 2.0, 2.0))
    """
    torch = require_torch()
    from captum.attr import LayerAttribution, LayerGradCam

    from lmmkit.imaging.train import check_images

    x = check_images(images, ndim=np.asarray(images).ndim)
    mod = _find_layer(model, layer)
    select = output or (lambda out: out[0] if isinstance(out, tuple | list) else out)
    dev = next(model.parameters()).device
    model.eval()
    cam = LayerGradCam(lambda inp: select(model(inp)), mod)
    coarse, fine, targets = [], [], []
    spatial = x.shape[2:]
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    for s in range(0, len(x), int(batch_size)):
        xb = torch.from_numpy(np.ascontiguousarray(x[s : s + int(batch_size)])).to(dev)
        if target is None:
            with torch.no_grad():
                tb = select(model(xb)).argmax(1)
        elif isinstance(target, int | np.integer):
            tb = torch.full((len(xb),), int(target), device=dev)
        else:
            tb = torch.as_tensor(np.asarray(target)[s : s + int(batch_size)], device=dev)
        attr = cam.attribute(xb, target=tb.tolist(), relu_attributions=True)
        up = LayerAttribution.interpolate(attr, tuple(spatial), interpolate_mode=mode)
        coarse.append(attr.detach().cpu().numpy()[:, 0])
        fine.append(up.detach().cpu().numpy()[:, 0])
        targets.append(tb.cpu().numpy())
    maps = np.concatenate(fine)
    peak = maps.reshape(len(maps), -1).max(1)
    scale = np.where(peak > 0, peak, 1.0).reshape((-1,) + (1,) * len(spatial))
    maps = np.clip(maps / scale, 0, None)
    c = np.concatenate(coarse)
    grid = tuple(int(v) for v in c.shape[1:])
    return CamResult(
        maps=maps.astype(np.float32),
        coarse=c,
        layer=layer,
        grid=grid,
        cell=tuple(float(a) / float(g) for a, g in zip(spatial, grid)),
        target=np.concatenate(targets),
    )


def poisson_binomial_sf(k: int, p: Any) -> float:
    """P(X >= k) for X a sum of independent Bernoulli(p_i).

    Examples
    --------
    >>> round(poisson_binomial_sf(1, [0.5, 0.5]), 4)
    0.75
    """
    dist = np.array([1.0])
    for pi in np.asarray(p, dtype=float):
        dist = np.convolve(dist, [1.0 - pi, pi])
    return float(dist[int(k) :].sum()) if k > 0 else 1.0


@dataclass(frozen=True, eq=False)
class HitTest:
    """How often the saliency maximum lies inside the lesion, against chance.

    Attributes
    ----------
    hits, n : int
    hit_rate : float
    chance_rate : float
        Mean over images of the chance probability ``|lesion| / |region|``.
    p_value : float
        Exact Poisson-binomial upper tail ``P(hits >= observed)`` under chance.
    n_flat : int
        Images whose map was flat (all zero): counted as misses.
    per_image : DataFrame
        ``image``, ``hit``, ``chance``, ``argmax`` (voxel index), ``flat``.
    """

    hits: int
    n: int
    hit_rate: float
    chance_rate: float
    p_value: float
    n_flat: int
    per_image: pd.DataFrame = field(repr=False)


def lesion_hit_test(
    maps: Any, masks: Any, *, region: Any = None, ids: Sequence[Any] | None = None
) -> HitTest:
    """Test whether each map's maximum falls inside its lesion more often than chance.

    Parameters
    ----------
    maps : ndarray (n, *spatial)
        Saliency maps on the image grid (e.g. :attr:`CamResult.maps`).
    masks : ndarray (n, *spatial)
        True lesion masks.
    region : ndarray (n, *spatial), optional
        Where a chance hit may land (e.g. the body); default the whole image.
    ids : sequence, optional
        Image identifiers (named in errors and in ``per_image``).

    Returns
    -------
    HitTest

    Raises
    ------
    DataError
        Shapes differ, or an empty lesion mask (the hit is undefined), naming the image.

    Examples
    --------
    >>> m = np.zeros((2, 4, 4), bool); m[:, 1, 1] = True
    >>> lesion_hit_test(m.astype(float), m).hits
    2
    """
    mp = np.asarray(maps, dtype=float)
    mk = np.asarray(masks).astype(bool)
    if mp.shape != mk.shape:
        raise DataError(f"lesion_hit_test: maps {mp.shape} and masks {mk.shape} differ in shape.")
    rg = np.ones_like(mk) if region is None else np.asarray(region).astype(bool)
    if rg.shape != mk.shape:
        raise DataError(f"lesion_hit_test: region {rg.shape} and masks {mk.shape} differ.")
    names = [f"image{i}" for i in range(len(mk))] if ids is None else [str(v) for v in ids]
    rows = []
    for name, m, k, r in zip(names, mp, mk, rg):
        if not k.any():
            raise DataError(
                f"lesion_hit_test: image {name!r} has an empty lesion mask; a hit is undefined. "
                "Leave the image out of the test."
            )
        flat = bool(m.max() <= m.min())
        arg = int(np.argmax(np.where(r, m, -np.inf)))
        rows.append(
            {
                "image": name,
                "hit": bool(k.reshape(-1)[arg]) and not flat,
                "chance": float((k & r).sum() / max(int(r.sum()), 1)),
                "argmax": arg,
                "flat": flat,
            }
        )
    per = pd.DataFrame(rows)
    hits = int(per["hit"].sum())
    return HitTest(
        hits=hits,
        n=len(per),
        hit_rate=hits / len(per),
        chance_rate=float(per["chance"].mean()),
        p_value=poisson_binomial_sf(hits, per["chance"].to_numpy()),
        n_flat=int(per["flat"].sum()),
        per_image=per,
    )
