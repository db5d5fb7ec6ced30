"""lmmkit radiomics: folders in, tidy CSV + settings sidecar out; bad settings exit 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("mirp")

from lmmkit.cli.main import main  # noqa: E402
from lmmkit.imaging import write_image  # noqa: E402
from lmmkit.imaging.radiomics.simulate import simulate_lesions  # noqa: E402


def test_cli_radiomics(tmp_path, capsys):
    man, imgs = simulate_lesions(2, shape=(14, 14, 14), spacing=(1, 1, 1))
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for _, r in man.iterrows():
        write_image(imgs[r["image"]], tmp_path / "img" / f"{r['subject']}.nii.gz")
        write_image(imgs[r["mask"]], tmp_path / "msk" / f"{r['subject']}_mask.nii.gz")
    (tmp_path / "s.toml").write_text('[radiomics]\nfamilies = ["stat"]\n')
    out = tmp_path / "f.csv"
    args = ["radiomics", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "msk"),
            "--settings", str(tmp_path / "s.toml"), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    table = pd.read_csv(out)
    assert sorted(table["subject"].unique()) == ["s01", "s02"]
    side = json.loads((tmp_path / "f.csv.settings.json").read_text())
    assert table["settings_id"].unique().tolist() == [side["settings_id"]]
    (tmp_path / "bad.toml").write_text("bin_cont = 16\n")
    args[6] = str(tmp_path / "bad.toml")
    assert main(args) == 2
    assert "unknown radiomics setting 'bin_cont'" in capsys.readouterr().err
