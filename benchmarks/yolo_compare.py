"""Small-data training: `visiontool train` with its default recipe against Ultralytics'
`yolo classify train` (yolov8n-cls from scratch), same data, epochs and image size.

    python benchmarks/yolo_compare.py DATA/textures6 [--model mobilenet_v3_large] [--skip-peer]
                                      [--visiontool-args "..."]

Ultralytics runs with its own defaults except what keeps it offline and comparable: the model
from its YAML (no weights), pretrained=False, amp=False (its AMP check downloads a model),
plots=False (plots fetch a font), device=cpu. visiontool runs with only --model, --epochs and
--image-size given, so its defaults are what is measured. Reports final and best val top-1 and
wall seconds of each. Target: visiontool's top-1 >= yolo's in no more wall time.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import benchlib as bl


def yolo_cmd(data: Path, out: Path, a: argparse.Namespace) -> list[str]:
    return [bl.YOLO, "classify", "train", "model=yolov8n-cls.yaml", f"data={data.resolve()}",
            f"epochs={a.epochs}", f"imgsz={a.image_size}", "pretrained=False", "amp=False",
            "plots=False", "device=cpu", f"workers={a.workers}", "seed=0",
            f"project={out}", "name=run", "exist_ok=True"]


def visiontool_cmd(data: Path, out: Path, a: argparse.Namespace) -> list[str]:
    return [bl.visiontool_exe(), "train", str(data), "--model", a.model, "--epochs", str(a.epochs),
            "--image-size", str(a.image_size), "--device", "cpu", "--out", str(out), "--quiet",
            *shlex.split(a.visiontool_args)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.training_arguments(ap, model="mobilenet_v3_small",
                          model_help="the visiontool architecture (yolov8n-cls has 1.4M parameters)")
    args = ap.parse_args()
    n_train = bl.count_images(args.data / "train")
    report: dict = {"benchmark": "yolo_compare", "data": str(args.data), "train_images": n_train,
                    "val_images": bl.count_images(args.data / "val"), "epochs": args.epochs,
                    "image_size": args.image_size, "visiontool_model": args.model}

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        if not args.skip_peer:
            out = root / "yolo"
            env = bl.offline_env()
            env["YOLO_CONFIG_DIR"] = str(root / "yolo-settings")  # not the user's settings
            run = bl.run_timed(yolo_cmd(args.data, out, args), cwd=root, env=env)
            report["yolo"] = bl.training_result(run, out / "run" / "results.csv", [r"accuracy_top1"],
                                  n_train, args.epochs)
        if not args.skip_visiontool:
            out = root / "visiontool"
            report["visiontool"] = bl.visiontool_training(visiontool_cmd(args.data, out, args), out, n_train, args.epochs)

    peer, vt = report.get("yolo", {}), report.get("visiontool", {})
    if "val_top1_final" in peer and "val_top1_final" in vt:
        report["time_ratio_vs_yolo"] = round(vt["seconds"] / peer["seconds"], 3)
        report["top1_delta_points"] = round(vt["val_top1_final"] - peer["val_top1_final"], 2)
        report["meets_target"] = vt["seconds"] <= peer["seconds"] and report["top1_delta_points"] >= 0
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
