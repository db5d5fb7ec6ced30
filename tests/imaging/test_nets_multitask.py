"""Multi-task: PCGrad on constructed gradients, uncertainty weighting, task-specific BN, the
logged gradient cosine."""

from __future__ import annotations

import numpy as np
import pytest

from tests.imaging.nets_data import cohort, large_lesion, normalized

torch = pytest.importorskip("torch")

from lmmkit.errors import DataError  # noqa: E402
from lmmkit.imaging.multitask import METHODS, pcgrad, train_multitask  # noqa: E402
from lmmkit.imaging.nets.multitask import MultiTaskUNet, TaskBatchNorm  # noqa: E402


def test_pcgrad_constructed_gradients():
    # conflict: each projected onto the other's normal plane, then summed
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    np.testing.assert_allclose(pcgrad([g1, g2]), [0.5, 1.5])
    # no conflict: the plain sum
    np.testing.assert_allclose(pcgrad([np.array([1.0, 2.0]), np.array([3.0, 0.5])]), [4.0, 2.5])
    # opposite gradients cancel completely
    np.testing.assert_allclose(pcgrad([np.array([1.0, 1.0]), np.array([-1.0, -1.0])]), [0, 0])
    # three tasks with a fixed visiting order (hand-computed)
    g = [np.array([1.0, 0.0, 0.0]), np.array([-1.0, 1.0, 0.0]), np.array([0.0, -1.0, 1.0])]
    order = [[1, 2], [0, 2], [0, 1]]
    # task 0: vs g1 (dot -1): [.5,.5,0]; vs g2 (dot -.5): [.5,.25,.25]
    # task 1: vs g0 (dot -1): [0,1,0]; vs g2 (dot -1): [0,.5,.5]
    # task 2: vs g0 (dot 0): unchanged; vs g1 (dot -1): [-.5,-.5,1]
    np.testing.assert_allclose(pcgrad(g, order=order), [0.0, 0.25, 1.75])
    # property: with two tasks each projected gradient is orthogonal to the other's
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=5), rng.normal(size=5)
        total = pcgrad([torch.tensor(a), torch.tensor(b)])
        if a @ b < 0:
            pa = a - (a @ b) / (b @ b) * b
            assert abs(pa @ b) < 1e-12
            np.testing.assert_allclose(total.numpy(), pa + b - (b @ a) / (a @ a) * a)
        else:
            np.testing.assert_allclose(total.numpy(), a + b)


def test_uncertainty_weighting_gradient_and_optimum():
    """0.5 exp(-s) L + 0.5 s: the gradient used in training equals autograd's, and gradient
    descent on s alone reaches s = log L."""
    L = torch.tensor([0.3, 2.5])
    s = torch.zeros(2, requires_grad=True)
    obj = (0.5 * torch.exp(-s) * L + 0.5 * s).sum()
    (auto,) = torch.autograd.grad(obj, s)
    torch.testing.assert_close(auto, 0.5 - 0.5 * torch.exp(-s.detach()) * L)
    with torch.no_grad():
        for _ in range(2000):
            s -= 0.1 * (0.5 - 0.5 * torch.exp(-s) * L)
    torch.testing.assert_close(s, torch.log(L), atol=1e-5, rtol=0)


def test_task_specific_batch_norm():
    net = MultiTaskUNet(2, widths=(4, 8), task_norm=True)
    bns = [m for m in net.modules() if isinstance(m, TaskBatchNorm)]
    assert len(bns) == 2 and all(len(b.bns) == 2 for b in bns)
    # shared: the encoder's convolutions only; per-task BN parameters are not shared
    shared = {id(p) for p in net.shared_parameters()}
    assert all(id(p) not in shared for b in bns for p in b.parameters())
    assert {id(m.weight) for m in net.down.modules() if isinstance(m, torch.nn.Conv3d)} == shared
    plain = MultiTaskUNet(2, widths=(4, 8))
    assert len(plain.shared_parameters()) == 2 + 2 * 2  # conv weights, BN weight and bias
    # a forward pass for one task updates only that task's running statistics
    net.train()
    before = [b.bns[1].running_mean.clone() for b in bns]
    net.encode(torch.randn(2, 2, 16, 16, 16), task=0)
    assert all(torch.equal(a, b.bns[1].running_mean) for a, b in zip(before, bns))
    assert not torch.equal(bns[0].bns[0].running_mean, torch.zeros(4))
    seg, cls = net(torch.randn(2, 2, 16, 16, 16))
    assert seg.shape == (2, 2, 16, 16, 16) and cls.shape == (2, 2)


def test_train_multitask_logs_cosine_for_every_method():
    c, x = cohort(), normalized()
    rows = np.flatnonzero(((c.table["site"] == "site1") & (c.table["rescan"] == 0)).to_numpy())
    y = large_lesion()
    for method in METHODS:
        res = train_multitask(x[rows], c.masks[rows], y[rows], method=method, epochs=1,
                              widths=(4, 8), batch_size=5, seed=0)  # fmt: skip
        assert len(res.steps) == 2
        assert res.steps["cosine"].between(-1, 1).all()
        assert np.isfinite(res.history[["train_seg_loss", "train_cls_loss"]]).all().all()
        if method == "uncertainty":
            assert {"s_seg", "s_cls"} <= set(res.steps.columns)
    with pytest.raises(DataError, match="method='gradnorm'"):
        train_multitask(x[rows], c.masks[rows], y[rows], method="gradnorm")
    with pytest.raises(DataError, match="one of each per image"):
        train_multitask(x[rows], c.masks[rows], y[rows][:3])
