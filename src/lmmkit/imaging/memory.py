"""Measured activation memory and receptive fields of a network (2-D vs 3-D accounting).

Three numbers per forward pass, all measured on the real module:

* ``activation_bytes`` -- the sum over leaf modules of the bytes of their outputs, recorded by
  forward hooks: what one forward pass produces.
* ``held_bytes`` -- the bytes of the distinct tensor storages that autograd keeps for the
  backward pass (recorded by :func:`torch.autograd.graph.saved_tensors_hooks`) plus the output,
  excluding the input and the parameters: what training holds between forward and backward.
* ``counter_bytes`` -- torch's own count of the memory still allocated after the forward pass:
  ``torch.cuda.memory_allocated`` on a GPU, the net allocation recorded by
  ``torch.profiler.profile(profile_memory=True)`` on the CPU. It must equal ``held_bytes``
  up to small bookkeeping tensors (checked in the tests).

Receptive fields are computed per layer along the module's execution order with the usual
recursion ``r_l = r_{l-1} + (k_l - 1) d_l j_{l-1}``, ``j_l = j_{l-1} s_l`` (kernel k, dilation
d, stride s, jump j), valid for a chain of layers (encoders; not for a U-Net's skip paths), and
checked empirically by :func:`empirical_receptive_field` (the support of the gradient of one
output unit with respect to the input).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.imaging.device import require_torch

__all__ = [
    "ActivationReport",
    "activation_memory",
    "empirical_receptive_field",
    "compare_2d_3d",
]


@dataclass(frozen=True, eq=False)
class ActivationReport:
    """Per-layer outputs and the three memory totals of one forward pass.

    Attributes
    ----------
    layers : DataFrame
        One row per leaf-module call in execution order: ``layer``, ``type``, ``output_shape``,
        ``output_bytes``, ``kernel``, ``stride``, ``dilation``, ``jump``, ``receptive_field``
        (voxels along the first spatial axis, chain rule).
    input_shape : tuple of int
    activation_bytes, held_bytes, counter_bytes : int
        See the module docstring.
    counter : str
        Which torch counter gave ``counter_bytes``.
    """

    layers: pd.DataFrame = field(repr=False)
    input_shape: tuple[int, ...]
    activation_bytes: int
    held_bytes: int
    counter_bytes: int
    counter: str

    @property
    def receptive_field(self) -> int:
        """Receptive field of the last layer (voxels along one axis)."""
        return int(self.layers["receptive_field"].iloc[-1])


def _triple(v: Any) -> int:
    return int(v[0] if isinstance(v, tuple | list) else v)


def _spatial_params(module: Any) -> tuple[int, int, int] | None:
    torch = require_torch()
    nn = torch.nn
    if isinstance(module, nn.modules.conv._ConvNd):
        return _triple(module.kernel_size), _triple(module.stride), _triple(module.dilation)
    if isinstance(module, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d):
        k = _triple(module.kernel_size)
        s = _triple(module.stride if module.stride is not None else k)
        return k, s, _triple(module.dilation)
    if isinstance(module, nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d):
        k = _triple(module.kernel_size)
        return k, _triple(module.stride if module.stride is not None else k), 1
    return None


def _nbytes(t: Any) -> int:
    return int(t.numel() * t.element_size())


def _storage_key(t: Any) -> tuple[int, int]:
    st = t.untyped_storage()
    return int(st.data_ptr()), int(st.nbytes())


def _counter_forward(model: Any, x: Any, record_saved: Any) -> tuple[Any, int, str]:
    """Run the forward pass under torch's memory counter; returns (output, bytes, name)."""
    torch = require_torch()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        before = torch.cuda.memory_allocated(x.device)
        with torch.autograd.graph.saved_tensors_hooks(record_saved, lambda t: t):
            out = model(x)
        torch.cuda.synchronize(x.device)
        return out, int(torch.cuda.memory_allocated(x.device) - before), "cuda.memory_allocated"
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.autograd.graph.saved_tensors_hooks(record_saved, lambda t: t):
            out = model(x)
    net = sum(int(e.self_cpu_memory_usage) for e in prof.key_averages())
    return out, int(net), "profiler(profile_memory).net_cpu_allocation"


def activation_memory(model: Any, x: Any, *, train: bool = True) -> ActivationReport:
    """Measure one forward pass of ``model`` on ``x`` (a tensor, or a shape for zeros).

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor or tuple of int
        The input batch, or its shape (then a tensor of standard-normal values, float32, on
        the model's device).
    train : bool, default True
        Run in training mode with autograd (what training holds); ``False`` runs
        ``model.eval()`` under autograd too, so that the held bytes are still recorded.

    Returns
    -------
    ActivationReport

    Examples
    --------
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder
    >>> rep = activation_memory(ConvEncoder(3, 1, widths=(2,), strides=(1,)), (1, 1, 8, 8, 8))
    >>> rep.layers["output_bytes"].iloc[0]   # conv output: 2 channels x 8^3 x 4 bytes
    4096
    """
    torch = require_torch()
    try:
        param = next(model.parameters())
        device = param.device
    except StopIteration:
        device = torch.device("cpu")
    if not isinstance(x, torch.Tensor):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(tuple(int(v) for v in x), generator=gen).to(device)
    model.train(train)
    rows: list[dict[str, Any]] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module: Any, _inp: Any, out: Any) -> None:
        t = out[0] if isinstance(out, tuple | list) else out
        if not isinstance(t, torch.Tensor):
            return
        rows.append(
            {
                "layer": names.get(module, type(module).__name__),
                "type": type(module).__name__,
                "output_shape": tuple(int(v) for v in t.shape),
                "output_bytes": _nbytes(t),
                "params": _spatial_params(module),
            }
        )

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if not list(m.children())
    ]
    existing = {_storage_key(p) for p in model.parameters()}
    existing |= {_storage_key(b) for b in model.buffers()}
    existing.add(_storage_key(x))
    saved: dict[tuple[int, int], int] = {}

    def record_saved(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            key = _storage_key(t)
            if key not in existing:
                saved[key] = key[1]
        return t

    try:
        out, counter_bytes, counter = _counter_forward(model, x, record_saved)
    finally:
        for h in handles:
            h.remove()
    outputs = out if isinstance(out, tuple | list) else [out]
    for t in outputs:
        if isinstance(t, torch.Tensor):
            saved[_storage_key(t)] = _storage_key(t)[1]
    r, j = 1, 1
    for row in rows:
        p = row.pop("params")
        if p is not None:
            k, s, d = p
            r += (k - 1) * d * j
            j *= s
            row.update(kernel=k, stride=s, dilation=d)
        else:
            row.update(kernel=1, stride=1, dilation=1)
        row.update(jump=j, receptive_field=r)
    layers = pd.DataFrame(rows)
    return ActivationReport(
        layers=layers,
        input_shape=tuple(int(v) for v in x.shape),
        activation_bytes=int(layers["output_bytes"].sum()) if len(layers) else 0,
        held_bytes=int(sum(saved.values())),
        counter_bytes=int(counter_bytes),
        counter=counter,
    )


def empirical_receptive_field(model: Any, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Extent (voxels per spatial axis) of the input region that reaches the central unit of
    the model's output map: the support of that unit's input gradient.

    A copy of the model is made monotone (all weights positive and equal, biases zero,
    normalization as the identity in eval mode) so that no activation is cut to zero and the
    support is the full theoretical receptive field.

    Parameters
    ----------
    model : torch.nn.Module
        Returns a spatial map (batch, channels, *spatial).
    input_shape : tuple of int
        (1, channels, *spatial), large enough to contain the receptive field.

    Returns
    -------
    tuple of int
        Extent along each spatial axis.

    Examples
    --------
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder
    >>> empirical_receptive_field(ConvEncoder(2, 1, widths=(2, 2), strides=(1, 1)), (1, 1, 15, 15))
    (5, 5)
    """
    torch = require_torch()
    nn = torch.nn
    m = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.conv._ConvNd | nn.Linear):
                mod.weight.fill_(1.0 / max(1, mod.weight[0].numel()))
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.reset_parameters()
            elif isinstance(mod, nn.modules.instancenorm._InstanceNorm):
                mod.track_running_stats = True
                mod.running_mean = torch.zeros(mod.num_features)
                mod.running_var = torch.ones(mod.num_features)
                mod.eps = 0.0
                if mod.affine:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
    x = torch.ones(tuple(int(v) for v in input_shape), requires_grad=True)
    out = m(x)
    centre = tuple(s // 2 for s in out.shape[2:])
    out[(0, slice(None), *centre)].sum().backward()
    support = (x.grad[0].abs().sum(0) > 0).numpy()
    extents = []
    for ax in range(support.ndim):
        other = tuple(i for i in range(support.ndim) if i != ax)
        idx = np.flatnonzero(support.any(axis=other))
        extents.append(int(idx.max() - idx.min() + 1) if idx.size else 0)
    return tuple(extents)


def compare_2d_3d(
    size: int = 128,
    *,
    in_channels: int = 1,
    widths: tuple[int, ...] = (8, 16, 32, 64),
    strides: tuple[int, ...] | None = None,
    norm: str = "batch",
    device: Any = None,
) -> pd.DataFrame:
    """The 2-D and 3-D routes on a ``size``-cubed volume at equal widths, measured.

    Rows: ``3D volume`` (one forward pass on (1, C, size, size, size)), ``2D one slice``
    ((1, C, size, size)) and ``2D all slices`` (the ``size`` slices as one batch). Columns:
    ``input_shape``, ``first_layer_bytes`` (the first conv's output), ``activation_bytes``,
    ``held_bytes``, ``counter_bytes`` (torch's counter), ``counter``, the ratios of each to
    the 2-D slice (``ratio_first_layer``, ``ratio_activations``, ``ratio_counter``), and the
    receptive field of the last layer (voxels in-plane; through-plane for the 3-D route and 1
    for a slice).

    Parameters
    ----------
    size : int
        Side of the cube (128 reproduces the seed's example).
    in_channels, widths, strides, norm :
        As :class:`lmmkit.imaging.nets.encoders.ConvEncoder`.
    device : optional
        As :func:`lmmkit.imaging.device.get_device`.

    Returns
    -------
    DataFrame

    Examples
    --------
    >>> t = compare_2d_3d(16, widths=(2, 4))
    >>> float(t.loc["3D volume", "ratio_first_layer"])
    16.0
    """
    from lmmkit.imaging.device import get_device
    from lmmkit.imaging.nets.encoders import ConvEncoder

    torch = require_torch()
    dev = get_device(device)
    torch.manual_seed(0)
    enc3 = ConvEncoder(3, in_channels, widths=widths, strides=strides, norm=norm).to(dev)
    enc2 = ConvEncoder(2, in_channels, widths=widths, strides=strides, norm=norm).to(dev)
    runs = {
        "3D volume": (enc3, (1, in_channels, size, size, size)),
        "2D one slice": (enc2, (1, in_channels, size, size)),
        "2D all slices": (enc2, (size, in_channels, size, size)),
    }
    rows = []
    for route, (enc, shape) in runs.items():
        rep = activation_memory(enc, shape)
        first = rep.layers.loc[rep.layers["type"].str.startswith("Conv")].iloc[0]
        rows.append(
            {
                "route": route,
                "input_shape": "x".join(map(str, shape)),
                "first_layer_bytes": int(first["output_bytes"]),
                "activation_bytes": rep.activation_bytes,
                "held_bytes": rep.held_bytes,
                "counter_bytes": rep.counter_bytes,
                "counter": rep.counter,
                "receptive_field": rep.receptive_field,
            }
        )
        del rep
    table = pd.DataFrame(rows).set_index("route")
    ref = table.loc["2D one slice"]
    table["ratio_first_layer"] = table["first_layer_bytes"] / ref["first_layer_bytes"]
    table["ratio_activations"] = table["activation_bytes"] / ref["activation_bytes"]
    table["ratio_counter"] = table["counter_bytes"] / ref["counter_bytes"]
    return table
