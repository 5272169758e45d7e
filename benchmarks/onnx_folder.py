"""ONNX path throughput: how close `visiontool classify --model FILE.onnx` gets to this machine's limit.

    python benchmarks/onnx_folder.py DATA/jpegs640 [--model resnet18] [--batch-size 32]
                                     [--rounds 2] [--timm-ips X | --skip-peer] [--models-dir DIR]

Exports MODEL with random weights (one seeded file, so that fp32 and int8 hold the same model)
to fp32 ONNX and to static int8 calibrated on the folder (or reuses both from --models-dir),
then, in each round, measures side by side:

- decode: the pipeline's own decode + preprocess path alone, all cores, images/s (the best of
  three passes: the limit is what the machine allows);
- compute: onnxruntime alone (the backend the CLI uses) on the already preprocessed batches;
- limit: 1 / (1/decode + 1/compute), what doing both, each with the whole machine, allows;
- classify: `visiontool classify DATA --model FILE.onnx` as a whole process, images/s, and its
  ratio to the limit (target >= 0.9 for fp32);
- the same for int8 (targets: compute >= 2.5x fp32's, classify >= 5x timm inference.py's);
- timm's inference.py on the same folder (resnet18, random weights, batch 32, CPU), unless
  --timm-ips gives its images/s or --skip-peer.

Then the one-image case: the median wall time of 5 `visiontool classify ONE.jpg --model
FILE.onnx` processes (target < 0.8 s) and whether torch was imported, and the top-1 agreement of
int8 with fp32 over the folder. The machine's load moves every figure: each one carries the
load average before and after it, and the summary takes the median over the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

TARGET_LIMIT_RATIO = 0.9
TARGET_INT8_SPEEDUP = 2.5
TARGET_INT8_VS_TIMM = 5.0
TARGET_ONE_IMAGE_S = 0.8


def write_random_weights(model: str, path: Path) -> None:
    code = ("import sys, torch, torchvision; from safetensors.torch import save_file; "
            "torch.manual_seed(0); m = torchvision.models.get_model(sys.argv[1]); "
            "save_file(m.state_dict(), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, model, str(path)], check=True)


def export(model: str, weights: Path, out: Path, calibration: Path | None) -> None:
    cmd = [bl.visiontool_exe(), "export", model, "--weights", str(weights), "--output", str(out)]
    if calibration is not None:
        cmd += ["--int8", "--calibration", str(calibration)]
    run = bl.run_timed(cmd, env=bl.offline_env())
    if run.returncode != 0:
        raise SystemExit(f"export failed ({run.returncode}): {' '.join(cmd)}")


def timed(fn) -> tuple[float, dict]:
    """(seconds, load record) of fn()."""
    before = bl.loadavg()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, {"loadavg_before": before, "loadavg_after": bl.loadavg()}


def measure_decode(paths: list[str], prep, batch_size: int) -> tuple[dict, list]:
    """The pipeline's decode + preprocess path with one worker per core; keeps the batches."""
    from visiontool import pipeline

    passes = []
    for _ in range(3):
        batches: list = []
        seconds, load = timed(lambda: batches.extend(
            pipeline.batches(paths, prep, batch_size, workers=os.cpu_count() or 1)))
        passes.append((seconds, load))
    seconds, load = min(passes, key=lambda p: p[0])
    return {"images_per_s": round(len(paths) / seconds, 2), "seconds": round(seconds, 3),
            "all_seconds": [round(p[0], 3) for p in passes], "workers": os.cpu_count(),
            **load}, [b.images for b in batches]


def open_backend(model: Path):
    """The backend the CLI uses (fully optimized graph, as the CLI runs a folder)."""
    from visiontool.backends.onnx_backend import OnnxBackend

    return OnnxBackend(model, "cpu")


def measure_compute(backend, arrays: list) -> dict:
    """onnxruntime alone on already preprocessed batches."""
    backend(arrays[0])
    n = sum(len(a) for a in arrays)
    seconds, load = timed(lambda: [backend(a) for a in arrays])
    return {"images_per_s": round(n / seconds, 2), "seconds": round(seconds, 3), **load}


def bracketed_compute(before: dict, after: dict) -> dict:
    """Compute measured right before and right after the classify run it is compared with:
    images over total seconds of both, so a change of load during the run affects both sides."""
    seconds = before["seconds"] + after["seconds"]
    n = before["images_per_s"] * before["seconds"] + after["images_per_s"] * after["seconds"]
    return {"images_per_s": round(n / seconds, 2), "before": before, "after": after}


def measure_classify(model: Path, data: Path, batch_size: int, rows: Path, n: int) -> dict:
    cmd = [bl.visiontool_exe(), "classify", str(data), "--model", str(model),
           "--batch-size", str(batch_size), "-o", str(rows), "-q"]
    run = bl.run_timed(cmd, env=bl.offline_env())
    out = run.as_dict()
    if run.returncode != 0:
        raise SystemExit(f"classify failed ({run.returncode}): {out['command']}")
    out["images_per_s"] = round(n / run.seconds, 2)
    return out


def measure_timm(model: str, data: Path, batch_size: int, weights: Path, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [bl.TIMM_PYTHON, str(bl.TIMM_DIR / "inference.py"), str(data), "--model", model,
               "--checkpoint", str(weights), "--device", "cpu", "--batch-size", str(batch_size),
               "--results-dir", tmp, "--no-console-results"]
        run = bl.run_timed(cmd, cwd=bl.TIMM_DIR, env=bl.offline_env())
    out = run.as_dict()
    out["images_per_s"] = round(n / run.seconds, 2) if run.returncode == 0 else None
    return out


def limit(decode_ips: float, compute_ips: float) -> float:
    return 1.0 / (1.0 / decode_ips + 1.0 / compute_ips)


def one_image(model: Path, image: str, runs: int) -> dict:
    cmd = [bl.visiontool_exe(), "classify", image, "--model", str(model)]
    subprocess.run(cmd, capture_output=True, env=bl.offline_env())  # warm the file cache
    times, before = [], bl.loadavg()
    for _ in range(runs):
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, env=bl.offline_env())
        times.append(time.perf_counter() - start)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.decode()[-300:]}")
    # Which top-level packages the same process imported, from -X importtime.
    res = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True,
                         text=True, env=bl.offline_env())
    loaded = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in res.stderr.splitlines()
              if line.startswith("import time:") and "|" in line}
    med = statistics.median(times)
    return {"command": " ".join(cmd), "median_seconds": round(med, 3),
            "all_seconds": [round(t, 3) for t in times], "loadavg_before": before,
            "loadavg_after": bl.loadavg(), "torch_imported": "torch" in loaded,
            "torchvision_imported": "torchvision" in loaded, "target_seconds": TARGET_ONE_IMAGE_S,
            "meets_target": med < TARGET_ONE_IMAGE_S and "torch" not in loaded}


def top1_agreement(rows_a: Path, rows_b: Path) -> dict:
    def top1(path: Path) -> dict:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {r["path"]: r["top"][0]["index"] for r in rows if not r.get("error")}

    a, b = top1(rows_a), top1(rows_b)
    common = sorted(set(a) & set(b))
    same = sum(a[p] == b[p] for p in common)
    return {"images": len(common), "agreement": round(same / max(len(common), 1), 4)}


def wait_for_quiet(max_load: float, max_wait: float) -> None:
    """Give other people's jobs (and our own previous round) a moment to end."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)


def median_of(rounds: list[dict], *keys: str) -> float | None:
    vals = []
    for r in rounds:
        v = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return round(statistics.median(vals), 3) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timm-ips", type=float, help="timm inference.py's images/s, measured elsewhere")
    ap.add_argument("--skip-peer", action="store_true", help="do not run timm's inference.py")
    ap.add_argument("--models-dir", type=Path, help="keep (or reuse) the exported files here")
    ap.add_argument("--max-load", type=float, default=1.5,
                    help="before each round, wait (up to --max-wait s) for the 1-min load to drop below this")
    ap.add_argument("--max-wait", type=float, default=60.0)
    args = ap.parse_args()
    if bl.visiontool_exe() is None:
        raise SystemExit("no visiontool executable found (set VT_VISIONTOOL)")

    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.sources import expand

    data = args.data.resolve()
    paths = expand([str(data)])
    n = len(paths)
    work = Path(tempfile.mkdtemp(prefix="onnx_folder_"))
    models = args.models_dir or work
    models.mkdir(parents=True, exist_ok=True)
    fp32, int8 = models / f"{args.model}.onnx", models / f"{args.model}-int8.onnx"
    report: dict = {"benchmark": "onnx_folder", "images": n, "model": args.model,
                    "batch_size": args.batch_size, "data": str(data), "cpus": os.cpu_count(),
                    "loadavg_start": bl.loadavg()}
    try:
        if not (fp32.exists() and int8.exists()):
            weights = work / f"{args.model}-random.safetensors"
            write_random_weights(args.model, weights)
            export(args.model, weights, fp32, None)
            export(args.model, weights, int8, data)
        prep = OnnxBackend(fp32, "cpu").info.preprocess

        timm_weights = None
        if args.timm_ips is None and not args.skip_peer:
            from classify_throughput import write_random_timm_weights

            timm_weights = work / f"{args.model}-random.safetensors"
            write_random_timm_weights(args.model, timm_weights)

        rounds = []
        for i in range(args.rounds):
            wait_for_quiet(args.max_load, args.max_wait)
            bl.log(f"round {i + 1}/{args.rounds} (load {bl.loadavg()})")
            r: dict = {}
            r["decode"], arrays = measure_decode(paths, prep, args.batch_size)
            for name, model in (("fp32", fp32), ("int8", int8)):
                backend = open_backend(model)
                side: dict = {}
                before = measure_compute(backend, arrays)
                side["classify"] = measure_classify(model, data, args.batch_size,
                                                    work / f"rows-{name}.jsonl", n)
                side["compute"] = bracketed_compute(before, measure_compute(backend, arrays))
                del backend
                side["limit_images_per_s"] = round(
                    limit(r["decode"]["images_per_s"], side["compute"]["images_per_s"]), 2)
                side["ratio_to_limit"] = round(
                    side["classify"]["images_per_s"] / side["limit_images_per_s"], 3)
                r[name] = side
                bl.log(f"  {name}: compute {side['compute']['images_per_s']} img/s, limit "
                       f"{side['limit_images_per_s']}, classify {side['classify']['images_per_s']} "
                       f"({side['ratio_to_limit']} of the limit)")
            del arrays
            r["int8_compute_speedup"] = round(
                r["int8"]["compute"]["images_per_s"] / r["fp32"]["compute"]["images_per_s"], 3)
            if timm_weights is not None:
                r["timm_inference"] = measure_timm(args.model, data, args.batch_size, timm_weights, n)
            timm_ips = args.timm_ips or (r.get("timm_inference") or {}).get("images_per_s")
            if timm_ips:
                r["int8_classify_vs_timm"] = round(r["int8"]["classify"]["images_per_s"] / timm_ips, 3)
                r["fp32_classify_vs_timm"] = round(r["fp32"]["classify"]["images_per_s"] / timm_ips, 3)
            rounds.append(r)
        report["rounds"] = rounds
        report["int8_top1_agreement_vs_fp32"] = top1_agreement(work / "rows-fp32.jsonl",
                                                               work / "rows-int8.jsonl")
        report["int8_top1_agreement_vs_fp32"]["note"] = "random weights, same in both files"
        report["one_image"] = one_image(fp32, paths[0], runs=5)

        s = {
            "decode_images_per_s": median_of(rounds, "decode", "images_per_s"),
            "fp32_compute_images_per_s": median_of(rounds, "fp32", "compute", "images_per_s"),
            "fp32_limit_images_per_s": median_of(rounds, "fp32", "limit_images_per_s"),
            "fp32_classify_images_per_s": median_of(rounds, "fp32", "classify", "images_per_s"),
            "fp32_ratio_to_limit": median_of(rounds, "fp32", "ratio_to_limit"),
            "int8_compute_images_per_s": median_of(rounds, "int8", "compute", "images_per_s"),
            "int8_limit_images_per_s": median_of(rounds, "int8", "limit_images_per_s"),
            "int8_classify_images_per_s": median_of(rounds, "int8", "classify", "images_per_s"),
            "int8_ratio_to_limit": median_of(rounds, "int8", "ratio_to_limit"),
            "int8_compute_speedup": median_of(rounds, "int8_compute_speedup"),
            "timm_images_per_s": args.timm_ips or median_of(rounds, "timm_inference", "images_per_s"),
            "int8_classify_vs_timm": median_of(rounds, "int8_classify_vs_timm"),
            "fp32_classify_vs_timm": median_of(rounds, "fp32_classify_vs_timm"),
            "one_image_median_seconds": report["one_image"]["median_seconds"],
        }
        s["targets"] = {
            "fp32_ratio_to_limit >= 0.9": (s["fp32_ratio_to_limit"] or 0) >= TARGET_LIMIT_RATIO,
            "int8_compute_speedup >= 2.5": (s["int8_compute_speedup"] or 0) >= TARGET_INT8_SPEEDUP,
            "int8_classify_vs_timm >= 5": (s["int8_classify_vs_timm"] or 0) >= TARGET_INT8_VS_TIMM
            if s["int8_classify_vs_timm"] is not None else None,
            "one_image < 0.8 s, no torch": report["one_image"]["meets_target"],
        }
        report["summary"] = s
        report["loadavg_end"] = bl.loadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
