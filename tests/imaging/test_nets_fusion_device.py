"""Fusion studies (sequences; image + clinical for survival) on a small cohort, the one place
that chooses the device, and seeded, deterministic training on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tests.imaging.nets_data import HELD_OUT

torch = pytest.importorskip("torch")

from lmmkit.errors import DataError, LmmkitError  # noqa: E402
from lmmkit.imaging.device import get_device, seed_everything  # noqa: E402


def _small():
    """5 subjects per site, 16^3, first scans only: enough to run every variant once."""
    from lmmkit.imaging.synthetic import make_multisite
    from lmmkit.imaging.train import normalize_intensity

    c = make_multisite(5, shape=(16, 16, 16), seed=3)
    return c, normalize_intensity(c.images)


def test_device_is_chosen_in_one_place(monkeypatch):
    monkeypatch.delenv("LMMKIT_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected
    assert get_device("cpu").type == "cpu"
    monkeypatch.setenv("LMMKIT_DEVICE", "cpu")
    assert get_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(LmmkitError, match="'cuda:1' requested but CUDA is not available"):
            get_device("cuda:1")


def test_training_is_seeded_and_deterministic():
    from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    from lmmkit.imaging.train import train_classifier

    c, x = _small()
    y = (c.table["z_size"].to_numpy() > 0).astype(int)

    def run(seed):
        seed_everything(seed)
        net = ImageClassifier(ConvEncoder(3, 2, widths=(4, 8), strides=(2, 2)))
        net, hist = train_classifier(net, x, y, epochs=2, lr=1e-2, batch_size=4, seed=seed)
        return net.state_dict(), hist

    a, ha = run(0)
    b, hb = run(0)
    d, _ = run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ha["train_loss"].tolist() == hb["train_loss"].tolist()
    assert not all(torch.equal(a[k], d[k]) for k in a)


def test_fusion_studies_run_every_variant_and_refuse_bad_input():
    from lmmkit.imaging.fusion import sequence_fusion_study, survival_fusion_study

    c, x = _small()
    t = c.table
    y = (t["heterogeneity"] > 0.5).astype(int).to_numpy()
    seq = sequence_fusion_study(
        x, y, t["site"], target=HELD_OUT, widths=(4, 8, 8), epochs=1, seed=0
    )
    assert list(seq.index) == ["T1 only", "T2 only", "channel stacking", "late fusion"]
    assert seq["target_auc"].between(0, 1).all()
    # late fusion has two encoders: about twice the parameters of one branch
    assert seq.loc["late fusion", "parameters"] > 1.8 * seq.loc["T1 only", "parameters"]
    clin = ((t[["age", "sex"]] - t[["age", "sex"]].mean()) / t[["age", "sex"]].std()).to_numpy()
    surv = survival_fusion_study(x, clin, t["time"], t["event"], t["site"], target=HELD_OUT,
                                 widths=(4, 8, 8), epochs=1, seed=0)  # fmt: skip
    assert list(surv.index) == ["clinical only", "image only", "early fusion",
                                "intermediate fusion", "late fusion"]  # fmt: skip
    assert surv["target_cindex"].between(0, 1).all()
    with pytest.raises(DataError, match="target site 'site9' is not among"):
        sequence_fusion_study(x, y, t["site"], target="site9", epochs=1)
    with pytest.raises(DataError, match="images have 1 channels; give 2"):
        sequence_fusion_study(x[:, :1], y, t["site"], target=HELD_OUT, epochs=1)
    with pytest.raises(DataError, match="3 site labels for 20 images"):
        survival_fusion_study(x, clin, t["time"], t["event"], np.array(["a"] * 3),
                              target=HELD_OUT)  # fmt: skip
