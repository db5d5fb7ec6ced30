"""Freeze IBSI 1 reference values from the IBSI reference manual into a CSV.

Source: the public repository theibsi/ibsi-doc, file docs/03_Image_features.rst (the reference
manual's feature chapter), commit b952e71 ("Added missing permanent identifiers."). Each feature
section there has a title, a permanent identifier (e.g. ``RNU0``), a formula whose
``\\mathit{...}`` tag names the feature (e.g. ``morph.vol``) and a table of reference values:
data set (dig. phantom, config. A-E), for texture features the aggregation method, value,
tolerance and consensus.

Usage (from the repository root, with a checkout of theibsi/ibsi-doc)::

    python tests/reference/ibsi/parse_ibsi_manual.py /path/to/ibsi-doc/docs/03_Image_features.rst

writes tests/reference/ibsi/ibsi1_reference_values.csv with one row per (feature, data set,
aggregation): family, ibsi_id, ibsi_tag, title, data (dig, A..E), aggregation, value, tolerance
(the phantom's "—" = exact, written 0), consensus, and ``feature`` = the MIRP column name
(family prefix + MIRP's short name from ``MIRP_NAMES`` below + aggregation suffix).

``MIRP_NAMES`` maps the IBSI tag to MIRP's feature name; it was written by reading MIRP's
feature modules (the ``*_features.py`` name lists; same order as the manual) and is checked by
``tests/imaging/test_ibsi.py`` (every mapped column must exist in MIRP's output).
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

FAMILY_OF_CHAPTER = {
    "Morphological features": "morph",
    "Local intensity features": "loc",
    "Intensity-based statistical features": "stat",
    "Intensity histogram features": "ih",
    "Intensity-volume histogram features": "ivh",
    "Grey level co-occurrence based features": "cm",
    "Grey level run length based features": "rlm",
    "Grey level size zone based features": "szm",
    "Grey level distance zone based features": "dzm",
    "Neighbourhood grey tone difference based features": "ngt",
    "Neighbouring grey level dependence based features": "ngl",
}
# The percentile sections define P10/P90 in words, without an F_{\mathit{...}} tag.
TAG_OF_ANCHOR = {
    "feat_stat_p10": "stat.p10", "feat_stat_p90": "stat.p90",
    "feat_int_hist_p10": "ih.p10", "feat_int_hist_p90": "ih.p90",
}  # fmt: skip
AGGREGATION_SUFFIX = {
    # GLCM / GLRLM (cm gets the distance "d1_" before it)
    "2D, averaged": "2d_avg",
    "2D, slice-merged": "2d_s_mrg",
    "2.5D, direction-merged": "2.5d_d_mrg",
    "2.5D, merged": "2.5d_v_mrg",
    "3D, averaged": "3d_avg",
    "3D, merged": "3d_v_mrg",
    # zone and dependence families
    "2D": "2d",
    "2.5D": "2.5d",
    "3D": "3d",
}
DATA = {"dig. phantom": "dig", **{f"config. {c}": c for c in "ABCDE"}}


def _number(text: str) -> float | None:
    text = text.strip().replace("−", "-").replace("–", "-")
    text = re.sub(r"^:math:`-`\\\s*", "-", text)  # ":math:`-`\ 277" = -277
    text = re.sub(r"^:math:`-\s*([\d.]+)`$", r"-\1", text)
    if text in ("—", "-", "--", ""):
        return None
    m = re.fullmatch(r":math:`(-?[\d.]+)\s*\\times\s*10\^\{(-?\d+)\}`", text)
    if m:
        return float(m.group(1)) * 10 ** int(m.group(2))
    m = re.fullmatch(r":math:`(-?[\d.]+)`", text)
    if m:
        return float(m.group(1))
    return float(text)


def parse(rst: str) -> list[dict]:
    lines = rst.splitlines()
    rows: list[dict] = []
    family = title = ibsi_id = anchor = None
    tags: list[str] = []  # tags named in the current section, in order
    n_tables = 0  # tables seen in the current section (IVH sections hold two: V10 and V90)
    for i, line in enumerate(lines):
        m = re.match(r"\.\. _(feat_\w+):", line)
        if m:
            anchor = m.group(1)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.startswith("---") and set(nxt) == {"-"} and line.strip() in FAMILY_OF_CHAPTER:
            family = FAMILY_OF_CHAPTER[line.strip()]
            continue
        if nxt.startswith("^^^") and set(nxt.strip()) == {"^"} and line.strip():
            title, ibsi_id, n_tables = line.strip(), None, 0
            tags = [TAG_OF_ANCHOR[anchor]] if anchor in TAG_OF_ANCHOR else []
            continue
        m = re.search(r'text-align:right">(\w{4})</p>', line)
        if m and title:
            ibsi_id = m.group(1)
        for m in re.finditer(r"F_\{\\mathit\{([A-Za-z0-9_.]+)\}\}", line):
            if title and m.group(1) not in tags:
                tags.append(m.group(1))
        if line.lstrip().startswith("|") and family and tags:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            cells = [c.replace("**", "") for c in cells]
            if cells and cells[0] == "data":
                n_tables += 1
                continue
            if not cells or cells[0] not in DATA:
                continue
            tag = tags[min(max(n_tables - 1, 0), len(tags) - 1)]
            if len(cells) == 5:
                data, agg, value, tol, cons = cells
            elif len(cells) == 4:
                (data, value, tol, cons), agg = cells, ""
            else:
                continue
            v = _number(value)
            if v is None:
                continue  # no reference value for this data set
            t = _number(tol)
            rows.append({
                "family": family, "ibsi_id": ibsi_id or "", "ibsi_tag": tag, "title": title,
                "data": DATA[data], "aggregation": agg, "value": v,
                "tolerance": 0.0 if t is None else t, "consensus": cons,
            })  # fmt: skip
    return rows


# IBSI tag -> MIRP feature name without family prefix and aggregation suffix.
MIRP_NAMES = {
    "morph.vol": "volume", "morph.approx.vol": "vol_approx", "morph.area": "area_mesh",
    "morph.av": "av", "morph.comp.1": "comp_1", "morph.comp.2": "comp_2",
    "morph.sph.dispr": "sph_dispr", "morph.sphericity": "sphericity",
    "morph.asphericity": "asphericity", "morph.com": "com", "morph.diam": "diam",
    "morph.pca.major": "pca_maj_axis", "morph.pca.minor": "pca_min_axis",
    "morph.pca.least": "pca_least_axis", "morph.pca.elongation": "pca_elongation",
    "morph.pca.flatness": "pca_flatness", "morph.v.dens.aabb": "vol_dens_aabb",
    "morph.a.dens.aabb": "area_dens_aabb", "morph.v.dens.ombb": "vol_dens_ombb",
    "morph.a.dens.ombb": "area_dens_ombb", "morph.v.dens.aee": "vol_dens_aee",
    "morph.a.dens.aee": "area_dens_aee", "morph.v.dens.mvee": "vol_dens_mvee",
    "morph.a.dens.mvee": "area_dens_mvee", "morph.v.dens.conv.hull": "vol_dens_conv_hull",
    "morph.a.dens.conv.hull": "area_dens_conv_hull", "morph.integ.int": "integ_int",
    "morph.moran.i": "moran_i", "morph.geary.c": "geary_c",
    "loc.peak.local": "peak_loc", "loc.peak.global": "peak_glob",
    "stat.mean": "mean", "stat.var": "var", "stat.skew": "skew", "stat.kurt": "kurt",
    "stat.median": "median", "stat.min": "min", "stat.p10": "p10", "stat.p90": "p90",
    "stat.max": "max", "stat.iqr": "iqr", "stat.range": "range", "stat.mad": "mad",
    "stat.rmad": "rmad", "stat.medad": "medad", "stat.cov": "cov", "stat.qcod": "qcod",
    "stat.energy": "energy", "stat.rms": "rms",
    "ih.mean": "mean", "ih.var": "var", "ih.skew": "skew", "ih.kurt": "kurt",
    "ih.median": "median", "ih.min": "min", "ih.p10": "p10", "ih.p90": "p90", "ih.max": "max",
    "ih.mode": "mode", "ih.iqr": "iqr", "ih.range": "range", "ih.mad": "mad", "ih.rmad": "rmad",
    "ih.medad": "medad", "ih.cov": "cov", "ih.qcod": "qcod", "ih.entropy": "entropy",
    "ih.uniformity": "uniformity", "ih.max.grad": "max_grad", "ih.max.grad.gl": "max_grad_g",
    "ih.min.grad": "min_grad", "ih.min.grad.gl": "min_grad_g",
    "ivh.V10": "v10", "ivh.V90": "v90", "ivh.I10": "i10", "ivh.I90": "i90",
    "ivh.V10minusV90": "diff_v10_v90", "ivh.I10minusI90": "diff_i10_i90", "ivh.auc": "auc",
    "cm.joint.max": "joint_max", "cm.joint.avg": "joint_avg", "cm.joint.var": "joint_var",
    "cm.joint.entr": "joint_entr", "cm.diff.avg": "diff_avg", "cm.diff.var": "diff_var",
    "cm.diff.entr": "diff_entr", "cm.sum.avg": "sum_avg", "cm.sum.var": "sum_var",
    "cm.sum.entr": "sum_entr", "cm.energy": "energy", "cm.contrast": "contrast",
    "cm.dissimilarity": "dissimilarity", "cm.inv.diff": "inv_diff",
    "cm.inv.diff.norm": "inv_diff_norm", "cm.inv.diff.mom": "inv_diff_mom",
    "cm.inv.diff.mom.norm": "inv_diff_mom_norm", "cm.inv.var": "inv_var", "cm.corr": "corr",
    "cm.auto.corr": "auto_corr", "cm.clust.tend": "clust_tend", "cm.clust.shade": "clust_shade",
    "cm.clust.prom": "clust_prom", "cm.info.corr.1": "info_corr1", "cm.info.corr.2": "info_corr2",
    "rlm.sre": "sre", "rlm.lre": "lre", "rlm.lgre": "lgre", "rlm.hgre": "hgre",
    "rlm.srlge": "srlge", "rlm.srhge": "srhge", "rlm.lrlge": "lrlge", "rlm.lrhge": "lrhge",
    "rlm.glnu": "glnu", "rlm.glnu.norm": "glnu_norm", "rlm.rlnu": "rlnu",
    "rlm.rlnu.norm": "rlnu_norm", "rlm.r.perc": "r_perc", "rlm.gl.var": "gl_var",
    "rlm.rl.var": "rl_var", "rlm.rl.entr": "rl_entr",
    "szm.sze": "sze", "szm.lze": "lze", "szm.lgze": "lgze", "szm.hgze": "hgze",
    "szm.szlge": "szlge", "szm.szhge": "szhge", "szm.lzlge": "lzlge", "szm.lzhge": "lzhge",
    "szm.glnu": "glnu", "szm.glnu.norm": "glnu_norm", "szm.zsnu": "zsnu",
    "szm.zsnu.norm": "zsnu_norm", "szm.z.perc": "z_perc", "szm.gl.var": "gl_var",
    "szm.zs.var": "zs_var", "szm.zs.entr": "zs_entr",
    "dzm.sde": "sde", "dzm.lde": "lde", "dzm.lgze": "lgze", "dzm.hgze": "hgze",
    "dzm.sdlge": "sdlge", "dzm.sdhge": "sdhge", "dzm.ldlge": "ldlge", "dzm.ldhge": "ldhge",
    "dzm.glnu": "glnu", "dzm.glnu.norm": "glnu_norm", "dzm.zdnu": "zdnu",
    "dzm.zdnu.norm": "zdnu_norm", "dzm.z.perc": "z_perc", "dzm.gl.var": "gl_var",
    "dzm.zd.var": "zd_var", "dzm.zd.entr": "zd_entr",
    "ngt.coarseness": "coarseness", "ngt.contrast": "contrast", "ngt.busyness": "busyness",
    "ngt.complexity": "complexity", "ngt.strength": "strength",
    "ngl.lde": "lde", "ngl.hde": "hde", "ngl.lgce": "lgce", "ngl.hgce": "hgce",
    "ngl.ldlge": "ldlge", "ngl.ldhge": "ldhge", "ngl.hdlge": "hdlge", "ngl.hdhge": "hdhge",
    "ngl.glnu": "glnu", "ngl.glnu.norm": "glnu_norm", "ngl.dcnu": "dcnu",
    "ngl.dcnu.norm": "dcnu_norm", "ngl.dc.perc": "dc_perc", "ngl.gl.var": "gl_var",
    "ngl.dc.var": "dc_var", "ngl.dc.entr": "dc_entr", "ngl.dc.energy": "dc_energy",
}  # fmt: skip


def mirp_feature(row: dict) -> str:
    # the family comes from the chapter (the manual writes "ntg.complexity" once for ngt)
    key = f"{row['family']}.{row['ibsi_tag'].split('.', 1)[1]}"
    base = MIRP_NAMES.get(key, MIRP_NAMES.get(key.lower()))
    if base is None:
        return ""
    name = f"{row['family']}_{base}"
    agg = row["aggregation"]
    if agg:
        suffix = AGGREGATION_SUFFIX[agg]
        # MIRP names the neighbourhood: GLCM distance 1 ("d1"), NGLDM distance 1 and
        # coarseness 0 ("d1_a0.0"), the values of every IBSI 1 configuration
        infix = {"cm": "_d1", "ngl": "_d1_a0.0"}.get(row["family"], "")
        name += f"{infix}_{suffix}"
    return name


def main(path: str) -> None:
    rows = parse(Path(path).read_text(encoding="utf-8"))
    for r in rows:
        r["feature"] = mirp_feature(r)
    tags = sorted({r["ibsi_tag"] for r in rows})
    unmapped = sorted({r["ibsi_tag"] for r in rows if not r["feature"]})
    out = Path(__file__).with_name("ibsi1_reference_values.csv")
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} reference values for {len(tags)} features -> {out}")
    print(f"unmapped IBSI tags: {unmapped}")


if __name__ == "__main__":
    main(sys.argv[1])
