"""Segmentation U-Net (Dice + CE) evaluated on the held-out site with lmmkit's Dice/HD95;
saliency (Grad-CAM) on a trained classifier; fusion networks; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.imaging.nets_data import HELD_OUT, classifier, cohort, necrotic_core, normalized

torch = pytest.importorskip("torch")

from lmmkit.errors import DataError, LmmkitError  # noqa: E402
from lmmkit.imaging.metrics import segmentation_table  # noqa: E402
from lmmkit.imaging.saliency import grad_cam, lesion_hit_test, poisson_binomial_sf  # noqa: E402
from lmmkit.imaging.train import check_images, segment, train_segmentation  # noqa: E402
from lmmkit.validation.segmentation import dice  # noqa: E402


def test_unet_segments_the_held_out_site():
    c, x = cohort(), normalized()
    first = (c.table["rescan"] == 0).to_numpy()
    tr = first & (c.table["site"] != HELD_OUT).to_numpy()
    te = first & (c.table["site"] == HELD_OUT).to_numpy()
    net, hist = train_segmentation(x[tr], c.masks[tr], val=(x[te], c.masks[te]), epochs=8,
                                   lr=1e-2, seed=0)  # fmt: skip
    assert hist["train_loss"].iloc[-1] < 0.7 * hist["train_loss"].iloc[0]
    pred = segment(net, x[te])
    table = segmentation_table(pred, c.masks[te], ids=c.table["image_id"][te], empty="nan",
                               spacing=c.spacing)  # fmt: skip
    # margin: an untrained net scores ~0.05; trained ones reach 0.6-0.8 across seeds
    assert table["dice"].mean() > 0.4
    assert table["hd95"].median() < 10
    # the table's Dice is lmmkit's dice
    i = 0
    assert table["dice"].iloc[i] == pytest.approx(dice(pred[i], c.masks[te][i]))
    assert hist["val_dice"].iloc[-1] == pytest.approx(table["dice"].mean(), abs=1e-9)


def test_bad_images_and_masks():
    x = normalized()[:3].copy()
    x[1, 0, 2, 3, 4] = np.nan
    with pytest.raises(DataError, match="image s0000_r1 has 1 NaN.*\\(0, 2, 3, 4\\)"):
        check_images(x, ids=cohort().table["image_id"][:3].tolist())
    with pytest.raises(DataError, match="masks have shape"):
        train_segmentation(normalized()[:3], cohort().masks[:3, :16], epochs=1)


def test_grad_cam_maximum_falls_in_the_lesion():
    net, _ = classifier()
    c, x = cohort(), normalized()
    te = (c.table["site"] == HELD_OUT).to_numpy()
    # the first block (stride 2): a 16^3 grid, each map cell 2 voxels wide
    cam = grad_cam(net, x[te], layer="encoder.blocks.0")
    assert cam.maps.shape == (te.sum(), 32, 32, 32) and cam.coarse.shape == (te.sum(), 16, 16, 16)
    assert cam.grid == (16, 16, 16) and cam.cell == (2.0, 2.0, 2.0)  # the resolution limit
    assert np.array_equal(cam.target, net(torch.from_numpy(x[te])).argmax(1).numpy())
    test = lesion_hit_test(cam.maps, c.masks[te], ids=c.table["image_id"][te])
    assert test.chance_rate < 0.05
    # far more often than chance (benchmark: 80-95% vs ~2% chance, over seeds)
    assert test.hit_rate > 5 * test.chance_rate and test.p_value < 1e-3
    # a deeper layer's grid is coarser: the limit grows with the stride
    deep = grad_cam(net, x[te][:2], layer="encoder.blocks.2")
    assert deep.grid == (8, 8, 8) and deep.cell == (4.0, 4.0, 4.0)


def test_grad_cam_errors_and_poisson_binomial():
    net, _ = classifier()
    with pytest.raises(LmmkitError, match="no layer 'encoder.block.1'.*Did you mean"):
        grad_cam(net, normalized()[:2], layer="encoder.block.1")
    m = np.zeros((2, 4, 4, 4), bool)
    m[0, 1, 1, 1] = True
    with pytest.raises(DataError, match="image 'b' has an empty lesion mask"):
        lesion_hit_test(np.ones((2, 4, 4, 4)), m, ids=["a", "b"])
    from scipy import stats

    assert poisson_binomial_sf(3, [0.2] * 10) == pytest.approx(stats.binom.sf(2, 10, 0.2))
    # a flat map is a miss, not a lucky hit at index 0
    m2 = np.zeros((1, 4, 4, 4), bool)
    m2[0, 0, 0, 0] = True
    assert lesion_hit_test(np.zeros((1, 4, 4, 4)), m2).hits == 0


def test_classifier_learned_and_fusion_nets():
    from lmmkit.imaging.metrics import auc
    from lmmkit.imaging.nets.fusion import LateFusionNet, SurvivalFusionNet
    from lmmkit.imaging.train import predict

    net, hist = classifier()
    c, x, y = cohort(), normalized(), necrotic_core()
    te = (c.table["site"] == HELD_OUT).to_numpy()
    lo = predict(net, x[te])
    assert auc(y[te], lo[:, 1] - lo[:, 0]) > 0.7
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    late = LateFusionNet(1, 1, widths=(4, 8))
    a, b = torch.zeros(2, 1, 16, 16, 16), torch.zeros(2, 1, 8, 8, 8)  # two resolutions
    assert late(a, b).shape == (2, 2)
    with pytest.raises(LmmkitError, match="give two phases"):
        late(a)
    for f in ("early", "intermediate", "late"):
        s = SurvivalFusionNet(2, 3, fusion=f, widths=(4, 8))
        assert s(torch.zeros(4, 2, 16, 16, 16), torch.zeros(4, 3)).shape == (4,)
    with pytest.raises(LmmkitError, match="expected \\(batch, 3\\)"):
        s(torch.zeros(4, 2, 16, 16, 16), torch.zeros(4, 2))
