"""Check the CUDA paths end to end on a GPU machine and print one JSON object.

    python benchmarks/cuda_check.py DATA OUT

DATA holds `mnist/` (a class-folder dataset: scripts/make_mnist_folder.py) and `scenes/` (a YOLO
dataset: scripts/digit_scenes.py --format yolo). Each step runs the CLI as a user would:
classify, detect and segment on cuda against the CPU's rows (segment: the share of
mask pixels that agree), stylize on cuda, training with mixed precision (fp16 on
CUDA), export with its verification on the CUDA execution provider where onnxruntime has it,
and the ONNX model run on cuda. Every step records its exit code, seconds and the figures that
say whether the path works.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path


def cli(*args: str) -> tuple[int, float, str, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "visiontool", *args], capture_output=True, text=True)
    return done.returncode, round(time.perf_counter() - start, 2), done.stdout, done.stderr[-1500:]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_row(run: Path) -> dict:
    with open(run / "results.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]


def step(report: dict, name: str, *args: str) -> tuple[int, str]:
    rc, seconds, out, err = cli(*args)
    report[name] = {"rc": rc, "seconds": seconds}
    if rc != 0:
        report[name]["stderr"] = err
    return rc, out


def compare_classify(cuda: list[dict], cpu: list[dict]) -> dict:
    same = sum(a["top"][0]["label"] == b["top"][0]["label"] for a, b in zip(cuda, cpu))
    diff = max(abs(a["top"][0]["score"] - b["top"][0]["score"]) for a, b in zip(cuda, cpu))
    return {"images": len(cpu), "same_top1": same, "max_score_diff": round(diff, 5)}


def compare_detect(cuda: list[dict], cpu: list[dict]) -> dict:
    n_cuda = sum(len(r["detections"]) for r in cuda)
    n_cpu = sum(len(r["detections"]) for r in cpu)
    box_diff = 0.0
    for a, b in zip(cuda, cpu):
        for da, db in zip(a["detections"], b["detections"]):
            box_diff = max(box_diff, *(abs(x - y) for x, y in zip(da["box"], db["box"])))
    return {"images": len(cpu), "detections_cuda": n_cuda, "detections_cpu": n_cpu, "max_box_diff_px": round(box_diff, 3)}


def compare_masks(cuda: list[dict], cpu: list[dict]) -> dict:
    import numpy as np
    from PIL import Image

    same = total = 0
    for a, b in zip(cuda, cpu):
        ma, mb = np.asarray(Image.open(a["mask"])), np.asarray(Image.open(b["mask"]))
        same, total = same + int((ma == mb).sum()), total + ma.size
    return {"images": len(cpu), "mask_pixels_equal": round(same / max(total, 1), 5)}


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    import onnxruntime
    import torch

    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}

    for device in ("cuda", "cpu"):
        step(report, f"classify_{device}", "classify", "samples/digits", "--model", "lenet5-mnist",
             "--device", device, "-q", "--output", str(out / f"classify-{device}.jsonl"))
        step(report, f"detect_{device}", "detect", "samples/scenes", "--model", "griddet-digits",
             "--device", device, "-q", "--output", str(out / f"detect-{device}.jsonl"))
    if report["classify_cuda"]["rc"] == report["classify_cpu"]["rc"] == 0:
        report["classify_cuda"].update(compare_classify(rows(out / "classify-cuda.jsonl"), rows(out / "classify-cpu.jsonl")))
    if report["detect_cuda"]["rc"] == report["detect_cpu"]["rc"] == 0:
        report["detect_cuda"].update(compare_detect(rows(out / "detect-cuda.jsonl"), rows(out / "detect-cpu.jsonl")))
    for device in ("cuda", "cpu"):
        step(report, f"segment_{device}", "segment", "samples/scenes", "--model", "unet-digits", "--device", device,
             "-q", "--save-dir", str(out / f"segment-{device}"), "--output", str(out / f"segment-{device}.jsonl"))
    if report["segment_cuda"]["rc"] == report["segment_cpu"]["rc"] == 0:
        report["segment_cuda"].update(compare_masks(rows(out / "segment-cuda.jsonl"), rows(out / "segment-cpu.jsonl")))
    step(report, "stylize_cuda", "stylize", "samples/scenes", "--model", "glass", "--device", "cuda", "-q",
         "--save-dir", str(out / "stylize-cuda"), "--output", str(out / "stylize-cuda.jsonl"))

    runs = out / "runs"
    rc, _ = step(report, "train_classify_amp", "train", str(data / "mnist"), "--model", "lenet5", "--epochs", "3",
                 "--device", "cuda", "--amp", "--no-flip", "-q", "--output", str(runs / "lenet5"))
    if rc == 0:
        report["train_classify_amp"]["last_epoch"] = last_row(runs / "lenet5")
        report["train_classify_amp"]["config_amp"] = json.loads((runs / "lenet5" / "config.json").read_text()).get("amp")
    rc, _ = step(report, "train_detect_amp", "train", "--task", "detect", str(data / "scenes" / "data.yaml"),
                 "--epochs", "4", "--image-size", "320", "--device", "cuda", "--amp", "-q", "--output", str(runs / "griddet"))
    if rc == 0:
        report["train_detect_amp"]["last_epoch"] = last_row(runs / "griddet")

    for name, model in (("lenet5", runs / "lenet5" / "best.safetensors"), ("griddet", runs / "griddet" / "best.safetensors")):
        if not model.exists():
            continue
        for half in (False, True):
            key = f"export_{name}_{'fp16' if half else 'fp32'}_cuda"
            onnx_path = out / f"{name}-{'fp16' if half else 'fp32'}.onnx"
            rc, text = step(report, key, "export", str(model), "--device", "cuda", "--json", "-q",
                            "--output", str(onnx_path), *(["--half"] if half else []))
            if rc == 0:
                report[key]["result"] = json.loads(text)
    if (out / "lenet5-fp32.onnx").exists():
        step(report, "classify_onnx_cuda", "classify", "samples/digits", "--model", str(out / "lenet5-fp32.onnx"),
             "--device", "cuda", "-q", "--output", str(out / "classify-onnx-cuda.jsonl"))
    if (out / "griddet-fp32.onnx").exists():
        step(report, "detect_onnx_cuda", "detect", "samples/scenes", "--model", str(out / "griddet-fp32.onnx"),
             "--device", "cuda", "-q", "--output", str(out / "detect-onnx-cuda.jsonl"))
    rc, text = step(report, "benchmark_resnet50_cuda", "benchmark", "resnet50", "--weights", "none", "--device", "cuda",
                    "--backends", "torch", "onnx", "--batch-size", "32", "--iterations", "10", "--json", "-q")
    if rc == 0:
        report["benchmark_resnet50_cuda"]["result"] = json.loads(text)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
