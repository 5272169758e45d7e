"""Top-1 agreement of a static int8 export with its fp32 export, on a labelled folder.

    python benchmarks/int8_agreement.py MODEL CALIBRATION_DIR EVAL_DIR [--image-size N]

MODEL is anything `visiontool export` takes (the shipped `lenet5-mnist`, a trained
best.safetensors). CALIBRATION_DIR feeds the static quantization (training images, never the
evaluation ones); EVAL_DIR holds <class>/<image>, so top-1 accuracy of both files is reported
too. Both exports and both classify runs are visiontool's own commands, as a user runs them.
Prints one JSON object (target: agreement >= 0.99).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import benchlib as bl

TARGET_AGREEMENT = 0.99


def classify_rows(exe: str, model: Path, folder: Path, out: Path) -> dict[str, str]:
    run = bl.run_timed([exe, "classify", str(folder), "-r", "--model", str(model), "--top-k", "1",
                        "--batch-size", "64", "-o", str(out), "-q"], env=bl.offline_env())
    if run.returncode not in (0, 3):
        raise SystemExit(f"classify failed ({run.returncode}): {run.cmd}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["path"]: r["top"][0]["label"] for r in rows if not r["error"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("calibration", type=Path)
    ap.add_argument("eval", type=Path)
    args = ap.parse_args()
    exe = bl.visiontool_exe()
    if exe is None:
        raise SystemExit("visiontool is not installed beside this Python")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32, int8 = tmp / "fp32.onnx", tmp / "int8.onnx"
        for out, extra in ((fp32, []), (int8, ["--int8", "--calibration", str(args.calibration)])):
            run = bl.run_timed([exe, "export", args.model, "-o", str(out), "-q", *extra], env=bl.offline_env())
            if run.returncode != 0:
                raise SystemExit(f"export failed ({run.returncode}): {run.cmd}")
        a = classify_rows(exe, fp32, args.eval, tmp / "fp32.jsonl")
        b = classify_rows(exe, int8, args.eval, tmp / "int8.jsonl")

    common = sorted(set(a) & set(b))
    truth = {p: Path(p).parent.name for p in common}
    agree = sum(a[p] == b[p] for p in common) / len(common)
    report = {
        "benchmark": "int8_agreement", "model": args.model, "calibration": str(args.calibration),
        "eval": str(args.eval), "images": len(common),
        "top1_agreement": round(agree, 4),
        "fp32_top1": round(sum(a[p] == truth[p] for p in common) / len(common), 4),
        "int8_top1": round(sum(b[p] == truth[p] for p in common) / len(common), 4),
        "target_agreement": TARGET_AGREEMENT, "meets_target": agree >= TARGET_AGREEMENT,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
