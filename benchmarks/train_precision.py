"""Training in fp32 against `--amp` (bf16 autocast on a CPU, fp16 on CUDA): the same
`visiontool train` command twice, back to back, on the same data, recipe and seed.

    python benchmarks/train_precision.py DATA [--epochs 2] [--device cpu]
                                         [--visiontool-args "--task segment --image-size 224 ..."]

Reports each side's wall seconds, mean epoch seconds (from its results.csv, so start-up and data
decoding are left out), its last epoch's validation figures, the epoch-time ratio, and what the
CPU offers (torch's vector capability, whether oneDNN takes bf16 on it, and whether its flags
name AVX-512 BF16 or AMX, the instructions that compute in bf16 natively). Target: on a CPU with
those, `--amp` epochs in <= 0.6x the fp32 time with validation figures within noise.
"""
from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path

import benchlib as bl


def cpu_bf16_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16"))


def side(data: Path, out: Path, amp: bool, a: argparse.Namespace) -> dict:
    cmd = [bl.visiontool_exe(), "train", str(data), "--epochs", str(a.epochs), "--device", a.device,
           "--seed", "0", "--output", str(out), "--quiet", "--amp" if amp else "--no-amp",
           *shlex.split(a.visiontool_args)]
    run = bl.run_timed(cmd, env=bl.offline_env())
    report = run.as_dict()
    if run.returncode != 0 or not (out / "results.csv").exists():
        report["error"] = f"no per-epoch log at {out / 'results.csv'}"
        return report
    rows = bl.read_csv_rows(out / "results.csv")
    report["epoch_seconds"] = round(sum(float(r["seconds"]) for r in rows) / len(rows), 2)
    report["last_epoch"] = {k: float(v) for k, v in rows[-1].items() if k.startswith("val_")}
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--visiontool-args", default="", help="the rest of the recipe, the same on both sides")
    args = ap.parse_args()

    import torch

    report: dict = {"benchmark": "train_precision", "data": str(args.data), "epochs": args.epochs,
                    "device": args.device, "recipe": args.visiontool_args, "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                    "cpu_bf16_flags": cpu_bf16_flags()}
    with tempfile.TemporaryDirectory() as tmp:
        report["fp32"] = side(args.data, Path(tmp) / "fp32", False, args)
        report["amp"] = side(args.data, Path(tmp) / "amp", True, args)
    if "epoch_seconds" in report["fp32"] and "epoch_seconds" in report["amp"]:
        report["amp_epoch_time_ratio"] = round(report["amp"]["epoch_seconds"] / report["fp32"]["epoch_seconds"], 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
