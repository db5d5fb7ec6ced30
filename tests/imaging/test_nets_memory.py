"""2-D vs 3-D accounting: activation memory from hooks on the real module checked against
torch's own counter, and receptive fields (chain rule) checked against gradient support."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from lmmkit.errors import LmmkitError  # noqa: E402
from lmmkit.imaging.memory import (  # noqa: E402
    activation_memory,
    compare_2d_3d,
    empirical_receptive_field,
)
from lmmkit.imaging.nets.encoders import ConvEncoder, SliceEncoder2D  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("size", [32, 64])
def test_3d_route_holds_size_times_one_slice(size):
    t = compare_2d_3d(size, widths=(4, 8, 16))
    # one full-resolution layer: exactly `size` times the activations of one slice
    assert t.loc["3D volume", "ratio_first_layer"] == size
    assert t.loc["2D all slices", "first_layer_bytes"] == t.loc["3D volume", "first_layer_bytes"]
    # whole encoder: less than `size` (the 3-D route also halves depth), more than size / 2
    assert size / 2 < t.loc["3D volume", "ratio_activations"] < size
    # hook-based held bytes equal torch's counter (CPU profiler / CUDA allocator)
    for route in t.index:
        held, counter = t.loc[route, "held_bytes"], t.loc[route, "counter_bytes"]
        assert abs(held - counter) <= 0.01 * counter + 1024, route
    # bytes of the first conv: width x voxels x 4
    assert t.loc["3D volume", "first_layer_bytes"] == 4 * size**3 * 4


def test_layer_table_and_training_flag():
    enc = ConvEncoder(3, 2, widths=(4, 8))
    rep = activation_memory(enc, (2, 2, 16, 16, 16))
    conv = rep.layers[rep.layers["type"] == "Conv3d"]
    assert list(conv["output_shape"]) == [(2, 4, 16, 16, 16), (2, 8, 8, 8, 8)]
    assert rep.activation_bytes == int(rep.layers["output_bytes"].sum())
    # without grad-tracked parameters nothing is held for backward but the output
    for p in enc.parameters():
        p.requires_grad_(False)
    rep2 = activation_memory(enc.eval(), (2, 2, 16, 16, 16), train=False)
    assert rep2.held_bytes == 2 * 8 * 8**3 * 4


@pytest.mark.parametrize(
    "dims,strides,shape",
    [(3, (1, 2, 2), (1, 1, 40, 40, 40)), (2, (2, 2, 1), (1, 1, 48, 48)), (2, (1, 1, 1), (1, 1, 21, 21))],
)
def test_receptive_field_chain_rule_equals_gradient_support(dims, strides, shape):
    enc = ConvEncoder(dims, 1, widths=(2, 2, 2), strides=strides)
    rep = activation_memory(enc, shape)
    emp = empirical_receptive_field(enc, shape)
    assert emp == (rep.receptive_field,) * dims
    r, j = 1, 1
    for s in strides:
        r, j = r + 2 * j, j * s
    assert rep.receptive_field == r


def test_slice_encoder_aggregations():
    x = torch.randn(2, 1, 6, 16, 16)
    for agg in ("mean", "max", "attention"):
        enc = SliceEncoder2D(1, widths=(2, 4), aggregation=agg).eval()
        out = enc.pooled(x)
        per_slice = enc.slice_features(x)
        assert out.shape == (2, 4) and per_slice.shape == (2, 6, 4)
        if agg == "mean":
            torch.testing.assert_close(out, per_slice.mean(1))
        if agg == "max":
            torch.testing.assert_close(out, per_slice.amax(1))
        if agg == "attention":
            w = enc.attention.last_weights
            torch.testing.assert_close(w.sum(1), torch.ones(2))
    chunked = SliceEncoder2D(1, widths=(2, 4), slice_chunk=2).eval()
    whole = SliceEncoder2D(1, widths=(2, 4)).eval()
    whole.load_state_dict(chunked.state_dict())
    torch.testing.assert_close(chunked.pooled(x), whole.pooled(x))
    with pytest.raises(LmmkitError, match="aggregation"):
        SliceEncoder2D(1, aggregation="median")


@pytest.mark.slow
def test_seed_example_128_cubed():
    """The seed's example: a 128^3 volume, the 3-D route holds 128x one 2-D slice per layer."""
    t = compare_2d_3d(128, widths=(8, 16, 32, 64))
    assert t.loc["3D volume", "ratio_first_layer"] == 128
    held, counter = t.loc["3D volume", "held_bytes"], t.loc["3D volume", "counter_bytes"]
    assert abs(held - counter) <= 0.01 * counter
