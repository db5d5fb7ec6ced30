"""The imaging-network tables of docs/imaging-models.md (CPU; one torch thread by default).

    .venv/bin/python benchmarks/bench_imaging.py memory                 # 2-D vs 3-D, 128^3
    .venv/bin/python benchmarks/bench_imaging.py federated              # FedAvg drift vs exact
    .venv/bin/python benchmarks/bench_imaging.py fusion    [--seeds 0 1 2]
    .venv/bin/python benchmarks/bench_imaging.py multitask [--seeds 0 1 2]
    .venv/bin/python benchmarks/bench_imaging.py shift     [--seeds 0 1 2]
    .venv/bin/python benchmarks/bench_imaging.py saliency  [--seeds 0 1 2]
    .venv/bin/python benchmarks/bench_imaging.py all

Each study prints a Markdown table (mean and SD over seeds; a fresh synthetic cohort per seed,
site4 held out) and writes its CSV to ``--out`` (default ``benchmarks/_data/imaging``, not tracked).
Options: ``--n-per-site`` (default 20), ``--epochs`` (default 10), ``--threads`` (default 1).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import pandas as pd

HELD_OUT = "site4"


def _cohort(n: int, seed: int, rescans: int = 1):
    from lmmkit.imaging.synthetic import make_multisite
    from lmmkit.imaging.train import normalize_intensity

    c = make_multisite(n, shape=(32, 32, 32), n_rescans=rescans, seed=seed)
    return c, normalize_intensity(c.images)


def _summary(frames: list[pd.DataFrame]) -> pd.DataFrame:
    allf = pd.concat(frames)
    num = allf.select_dtypes("number")
    g = num.groupby(level=0, sort=False)
    out = g.mean().round(3).astype(str) + " ± " + g.std().fillna(0).round(3).astype(str)
    return out if len(frames) > 1 else g.mean().round(4)


def _markdown(table: pd.DataFrame) -> str:
    t = table.reset_index()
    t.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in t.columns]
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in t.to_numpy()]
    lines = ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def _emit(name: str, table: pd.DataFrame, out: Path, note: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv")
    print(f"\n### {name}{(' (' + note + ')') if note else ''}\n")
    print(_markdown(table), flush=True)


def bench_memory(args: argparse.Namespace) -> None:
    from lmmkit.imaging.memory import compare_2d_3d

    for size, widths in ((128, (8, 16, 32, 64)), (64, (8, 16, 32))):
        t0 = time.perf_counter()
        t = compare_2d_3d(size, widths=widths)
        cols = ["input_shape", "first_layer_bytes", "activation_bytes", "held_bytes",
                "counter_bytes", "ratio_first_layer", "ratio_activations", "ratio_counter",
                "receptive_field"]  # fmt: skip
        t = t[cols].copy()
        for c in ("first_layer_bytes", "activation_bytes", "held_bytes", "counter_bytes"):
            t[c.replace("bytes", "MiB")] = (t.pop(c) / 2**20).round(2)
        _emit(f"memory_{size}", t, args.out,
              f"widths {widths}, strides (1, 2, 2, ...), {time.perf_counter() - t0:.0f} s")  # fmt: skip


def bench_federated(args: argparse.Namespace) -> None:
    from lmmkit.imaging.federated import drift_study, exact_multisite

    c, _ = _cohort(60, 1)
    m = c.masks.astype(bool)
    tab = c.table.copy()
    tab["t2_mean"] = [float(c.images[i, 1][m[i]].mean()) for i in range(len(m))]
    drift = drift_study(tab[["heterogeneity", "age", "z_size"]].to_numpy(), tab["t2_mean"].to_numpy(),
                        tab["site"].to_numpy(), local_epochs=(1, 2, 5, 10, 20), rounds=500,
                        lr=0.05)  # fmt: skip
    _emit("fedavg_drift", drift.set_index(["scheme", "local_epochs"]), args.out,
          "t2_mean ~ heterogeneity + age + z_size, 4 sites x 60 (site case mix in age and lesion "
          "size), full-batch local steps, 500 rounds")  # fmt: skip
    t0 = time.perf_counter()
    exact = exact_multisite(tab, "t2_mean ~ heterogeneity + age + z_size + (1 | site)", site="site")
    _emit("exact_multisite", exact, args.out,
          f"REML, per-site summaries vs pooled lmm, {time.perf_counter() - t0:.1f} s")  # fmt: skip


def bench_fusion(args: argparse.Namespace) -> None:
    from lmmkit.imaging.fusion import sequence_fusion_study, survival_fusion_study

    seq, surv = [], []
    for seed in args.seeds:
        c, x = _cohort(args.n_per_site, seed)
        t = c.table
        label = (t["heterogeneity"] > 0.5).astype(int).to_numpy()  # core: T1 dark, T2 bright
        seq.append(sequence_fusion_study(x, label, t["site"], target=HELD_OUT,
                                         epochs=args.epochs, seed=seed))  # fmt: skip
        clin = ((t[["age", "sex"]] - t[["age", "sex"]].mean()) / t[["age", "sex"]].std()).to_numpy()
        surv.append(survival_fusion_study(x, clin, t["time"], t["event"], t["site"],
                                          target=HELD_OUT, epochs=args.epochs, seed=seed))  # fmt: skip
    note = f"{len(args.seeds)} seeds, {args.n_per_site}/site, {args.epochs} epochs, held out {HELD_OUT}"
    _emit("fusion_sequences", _summary(seq), args.out, "label: heterogeneity > 0.5; " + note)
    _emit("fusion_survival", _summary(surv), args.out, "Cox (Efron), Harrell's C; " + note)


def bench_multitask(args: argparse.Namespace) -> None:
    from lmmkit.imaging.multitask import METHODS, train_multitask

    frames = []
    for seed in args.seeds:
        c, x = _cohort(args.n_per_site, seed)
        t = c.table
        y = (t["z_size"] > 0).astype(int).to_numpy()
        tr = (t["site"] != HELD_OUT).to_numpy()
        rows = []
        for method in METHODS:
            t0 = time.perf_counter()
            r = train_multitask(x[tr], c.masks[tr], y[tr], method=method, epochs=args.epochs,
                                lr=5e-3, val=(x[~tr], c.masks[~tr], y[~tr]), seed=seed)  # fmt: skip
            last = r.history.iloc[-1]
            rows.append({"method": method, "val_dice": last["val_dice"], "val_auc": last["val_auc"],
                         "mean_cosine": r.steps["cosine"].mean(),
                         "conflict_fraction": float((r.steps["cosine"] < 0).mean()),
                         "seconds": time.perf_counter() - t0})  # fmt: skip
        frames.append(pd.DataFrame(rows).set_index("method"))
    _emit("multitask", _summary(frames), args.out,
          f"seg (Dice+CE) + large-lesion classification; {len(args.seeds)} seeds, "
          f"{args.n_per_site}/site, {args.epochs} epochs, held out {HELD_OUT}")  # fmt: skip


def bench_shift(args: argparse.Namespace) -> None:
    from lmmkit.imaging.adaptation import scanner_shift_study

    frames = []
    for seed in args.seeds:
        c, _ = _cohort(args.n_per_site, seed)
        y = (c.table["z_size"] > 0).astype(int).to_numpy()
        st = scanner_shift_study(c.images, y, c.table["site"], target=HELD_OUT,
                                 epochs=args.epochs, lr=3e-3, seed=seed)  # fmt: skip
        frames.append(st.table)
    _emit("scanner_shift", _summary(frames), args.out,
          f"raw intensities (no z-scoring), large-lesion label; {len(args.seeds)} seeds, "
          f"{args.n_per_site}/site, {args.epochs} epochs, target {HELD_OUT}")  # fmt: skip


def bench_saliency(args: argparse.Namespace) -> None:
    import torch

    from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    from lmmkit.imaging.saliency import grad_cam, lesion_hit_test
    from lmmkit.imaging.train import train_classifier

    rows = []
    for seed in args.seeds:
        c, x = _cohort(args.n_per_site, seed)
        te = (c.table["site"] == HELD_OUT).to_numpy()
        labels = {"necrotic core": (c.table["heterogeneity"] > 0.5).astype(int).to_numpy(),
                  "large lesion": (c.table["z_size"] > 0).astype(int).to_numpy()}  # fmt: skip
        for (label, y), pool in itertools.product(labels.items(), ("avg", "max")):
            torch.manual_seed(seed)
            net = ImageClassifier(ConvEncoder(3, 2, widths=(8, 16, 32), strides=(2, 2, 1),
                                              pool=pool))  # fmt: skip
            net, _ = train_classifier(net, x[~te], y[~te], epochs=args.epochs, lr=3e-3, seed=seed)
            for layer in ("encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2"):
                cam = grad_cam(net, x[te], layer=layer)
                h = lesion_hit_test(cam.maps, c.masks[te])
                rows.append({"label": label, "pool": pool, "layer": layer, "seed": seed,
                             "grid": "x".join(map(str, cam.grid)), "cell_voxels": cam.cell[0],
                             "hit_rate": h.hit_rate, "chance_rate": h.chance_rate,
                             "p_value": h.p_value})  # fmt: skip
    t = pd.DataFrame(rows)
    keys = ["label", "pool", "layer", "grid", "cell_voxels"]
    summ = t.groupby(keys, sort=False)[["hit_rate", "chance_rate"]].agg(["mean", "std"])
    summ[("p_value", "median")] = t.groupby(keys, sort=False)["p_value"].median()
    _emit("saliency_by_layer", summ.round(4), args.out,
          f"Grad-CAM (captum) on the held-out site; {len(args.seeds)} seeds")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("study", choices=["memory", "federated", "fusion", "multitask", "shift",
                                     "saliency", "all"])  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-per-site", type=int, default=20)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "_data" / "imaging")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    studies = {"memory": bench_memory, "federated": bench_federated, "fusion": bench_fusion,
               "multitask": bench_multitask, "shift": bench_shift, "saliency": bench_saliency}  # fmt: skip
    for name in studies if args.study == "all" else [args.study]:
        t0 = time.perf_counter()
        studies[name](args)
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
