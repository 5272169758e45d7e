"""Shared pieces of the benchmark scripts: timed child processes, machine load, peer paths.

Every benchmark prints one JSON object on stdout; progress and the children's output go to
stderr. Peers (timm's reference scripts, Ultralytics) live outside the repository; their
places come from environment variables so the scripts work wherever they were installed:

    VT_TIMM_DIR        a checkout of timm's repository (holds inference.py, train.py)
    VT_TIMM_PYTHON     the Python that runs those scripts (default: this one, so both sides
                       use the same torch)
    VT_YOLO            Ultralytics' `yolo` executable
    VT_VISIONTOOL      the `visiontool` executable (default: the one beside this Python)
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TIMM_DIR = Path(os.environ.get("VT_TIMM_DIR", "/work/peers/pytorch-image-models"))
TIMM_PYTHON = os.environ.get("VT_TIMM_PYTHON", sys.executable)
YOLO = os.environ.get("VT_YOLO", "/work/peers/venv/bin/yolo")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Run:
    cmd: list[str]
    returncode: int
    seconds: float
    peak_rss_mb: float
    load_before: list[float]
    load_after: list[float]

    def as_dict(self) -> dict:
        return {"command": " ".join(self.cmd), "returncode": self.returncode,
                "seconds": round(self.seconds, 3), "peak_rss_mb": round(self.peak_rss_mb, 1),
                "loadavg_before": self.load_before, "loadavg_after": self.load_after}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_timed(cmd: list[str], cwd: str | Path | None = None, env: dict | None = None,
              quiet: bool = False, stdout=None) -> Run:
    """Run `cmd`, its output on our stderr (its stdout to the file `stdout` when given); wall
    seconds and the peak RSS of the process tree.

    os.wait4 gives the child's own rusage, whose ru_maxrss is the largest resident set of the
    child or of any descendant it waited for (DataLoader workers included)."""
    log("$ " + " ".join(cmd))
    before = loadavg()
    out = subprocess.DEVNULL if quiet else sys.stderr
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout or out, stderr=out,
                            stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(cmd, proc.returncode, seconds, usage.ru_maxrss / 1024.0, before, loadavg())


def offline_env() -> dict:
    """This environment, with the hubs' offline switches on: a benchmark downloads nothing."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", YOLO_OFFLINE="1", VISIONTOOL_OFFLINE="1")
    return env


def visiontool_exe() -> str | None:
    named = os.environ.get("VT_VISIONTOOL")
    if named:
        return named
    beside = Path(sys.executable).with_name("visiontool")
    return str(beside) if beside.exists() else shutil.which("visiontool")


def visiontool_has(command: str) -> str | None:
    """None when `visiontool COMMAND --help` works, else why it can't be benchmarked yet."""
    exe = visiontool_exe()
    if exe is None:
        return "no visiontool executable found (set VT_VISIONTOOL)"
    res = subprocess.run([exe, command, "--help"], capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        return f"`visiontool {command}` is not available yet: {tail[0]}"
    return None


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def top1_column(rows: list[dict], patterns: list[str]) -> tuple[str, list[float]]:
    """The first column whose name matches one of `patterns`, as percentages."""
    for pat in patterns:
        for name in rows[0]:
            if re.search(pat, name, re.IGNORECASE):
                vals = [float(r[name]) for r in rows if r.get(name) not in (None, "")]
                if vals and max(vals) <= 1.0:  # fractions -> percent
                    vals = [v * 100.0 for v in vals]
                return name, vals
    raise KeyError(f"no column matching {patterns} in {list(rows[0])}")


def accuracy_summary(rows: list[dict], patterns: list[str]) -> dict:
    name, vals = top1_column(rows, patterns)
    return {"val_top1_final": round(vals[-1], 2), "val_top1_best": round(max(vals), 2),
            "epochs_logged": len(vals), "column": name}


def training_result(run: Run, csv_path: Path, patterns: list[str], n_train: int,
                    epochs: int) -> dict:
    """One side of a training comparison: the timed run plus val top-1 from its epoch log."""
    out = run.as_dict()
    out["train_images_per_s"] = round(n_train * epochs / run.seconds, 2)
    if run.returncode == 0 and csv_path.exists():
        out.update(accuracy_summary(read_csv_rows(csv_path), patterns))
    else:
        out["error"] = f"no per-epoch log at {csv_path}"
    return out


def count_images(folder: Path) -> int:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in exts)


def visiontool_training(cmd: list[str], out: Path, n_train: int, epochs: int) -> dict:
    """Run a `visiontool train` command writing to `out` and read its results.csv; a note
    instead when this visiontool has no train command."""
    missing = visiontool_has("train")
    if missing:
        return {"skipped": missing}
    run = run_timed(cmd, env=offline_env())
    return training_result(run, out / "results.csv", [r"val.*top.?1", r"val.*acc"], n_train, epochs)


def training_arguments(ap, model: str, model_help: str | None = None) -> None:
    """The options both training comparisons take (the data folder, the visiontool side, and
    which sides to run)."""
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default=model, help=model_help)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--visiontool-args", default="", help="extra options for visiontool train")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--skip-visiontool", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep both run folders under this folder")
