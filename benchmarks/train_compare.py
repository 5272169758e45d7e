"""Training from scratch: `visiontool train` against timm's train.py, same model, data and recipe.

    python benchmarks/train_compare.py DATA/small64 [--epochs 10] [--skip-peer]
                                       [--visiontool-args "--lr 0.002 ..."]

ResNet-18 from random init on a 64x64 folder dataset (train/ and val/), 10 epochs, AdamW, a
cosine schedule, batch 64, on the CPU. Reports each side's final and best val top-1 (read from
its own per-epoch log), wall seconds, training images/s, and the ratios. Target: visiontool
reaches timm's val top-1 (within 1 point) in at most 0.9x its wall time.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import benchlib as bl

TARGET_TIME_RATIO = 0.9
TARGET_TOP1_SLACK = 1.0  # points


def timm_train_cmd(data: Path, out: Path, a: argparse.Namespace) -> list[str]:
    # As a user would run timm's script for this job: the recipe named on the command line,
    # an AdamW learning rate and weight decay (its defaults are SGD's), one warm-up epoch of
    # ten (its default is five), two loader workers, the CPU.
    return [bl.TIMM_PYTHON, str(bl.TIMM_DIR / "train.py"), str(data.resolve()),
            "--model", a.model, "--num-classes", str(a.num_classes), "--img-size", str(a.image_size),
            "--epochs", str(a.epochs), "--opt", "adamw", "--lr", "1e-3", "--weight-decay", "0.05",
            "--sched", "cosine", "--warmup-epochs", "1", "--batch-size", str(a.batch_size),
            "--workers", str(a.workers), "--device", "cpu", "--seed", "42",
            "--output", str(out), "--experiment", "run", "--checkpoint-hist", "1"]


def visiontool_train_cmd(data: Path, out: Path, a: argparse.Namespace) -> list[str]:
    return [bl.visiontool_exe(), "train", str(data), "--model", a.model, "--epochs", str(a.epochs),
            "--optimizer", "adamw", "--scheduler", "cosine", "--image-size", str(a.image_size),
            "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--device", "cpu",
            "--seed", "42", "--out", str(out), "--quiet", *shlex.split(a.visiontool_args)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.training_arguments(ap, model="resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    classes = sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir())
    args.num_classes = len(classes)
    n_train = bl.count_images(args.data / "train")
    report: dict = {"benchmark": "train_compare", "data": str(args.data), "classes": len(classes),
                    "train_images": n_train, "val_images": bl.count_images(args.data / "val"),
                    "model": args.model, "epochs": args.epochs, "image_size": args.image_size}

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        if not args.skip_peer:
            out = root / "timm"
            run = bl.run_timed(timm_train_cmd(args.data, out, args), cwd=bl.TIMM_DIR,
                               env=bl.offline_env())
            report["timm_train"] = bl.training_result(run, out / "run" / "summary.csv", [r"^eval_top1$"],
                                        n_train, args.epochs)
        if not args.skip_visiontool:
            out = root / "visiontool"
            report["visiontool"] = bl.visiontool_training(visiontool_train_cmd(args.data, out, args), out, n_train, args.epochs)

    peer, vt = report.get("timm_train", {}), report.get("visiontool", {})
    if "val_top1_final" in peer and "val_top1_final" in vt:
        time_ratio = vt["seconds"] / peer["seconds"]
        report["time_ratio_vs_timm"] = round(time_ratio, 3)
        report["top1_delta_points"] = round(vt["val_top1_final"] - peer["val_top1_final"], 2)
        report["meets_target"] = (time_ratio <= TARGET_TIME_RATIO and
                                  report["top1_delta_points"] >= -TARGET_TOP1_SLACK)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
