"""Start-up time of `visiontool --help`, and what it imports.

    python benchmarks/startup.py [--runs 10] [--args "--help"]

Times whole processes (after one untimed warm-up run that fills the file cache) and reports the
median, with a bare `python -c pass` as the floor this machine allows. Then runs the same command
once under `python -X importtime` and lists which heavy modules (torch, torchvision, cv2,
onnxruntime) were imported: `--help` must import none of them. Target: median under 0.3 s.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time

import benchlib as bl

TARGET_SECONDS = 0.3
HEAVY = ("torch", "torchvision", "cv2", "onnxruntime", "onnx", "matplotlib", "numpy")


def median_seconds(cmd: list[str], runs: int) -> tuple[float, list[float]]:
    subprocess.run(cmd, capture_output=True)  # warm-up: file cache, .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - start)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.decode()[-300:]}")
    return statistics.median(times), times


def imported_top_level(cmd_args: list[str]) -> set[str]:
    """Top-level packages imported while running the console script, from -X importtime."""
    script = bl.visiontool_exe()
    res = subprocess.run([sys.executable, "-X", "importtime", script, *cmd_args],
                         capture_output=True, text=True)
    names = set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--args", default="--help", help="what to pass to visiontool")
    args = ap.parse_args()
    exe = bl.visiontool_exe()
    if exe is None:
        print(json.dumps({"benchmark": "startup", "skipped": "no visiontool executable found"}))
        return 1
    cmd_args = shlex.split(args.args)
    report: dict = {"benchmark": "startup", "command": " ".join(["visiontool", *cmd_args]),
                    "runs": args.runs, "loadavg_before": bl.loadavg()}
    floor, _ = median_seconds([sys.executable, "-c", "pass"], args.runs)
    med, times = median_seconds([exe, *cmd_args], args.runs)
    report.update(median_seconds=round(med, 4), all_seconds=[round(t, 4) for t in times],
                  python_floor_seconds=round(floor, 4), loadavg_after=bl.loadavg())
    loaded = imported_top_level(cmd_args)
    heavy = sorted(m for m in HEAVY if m in loaded)
    report["heavy_modules_imported"] = heavy
    report["torch_imported"] = "torch" in loaded
    report["target_seconds"] = TARGET_SECONDS
    report["meets_target"] = med < TARGET_SECONDS and not report["torch_imported"]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
