"""Folder classification throughput: `visiontool classify` against timm's inference.py.

    python benchmarks/classify_throughput.py DATA/jpegs640 [--model resnet18] [--batch-size 32]
                                             [--repeat 1] [--skip-peer]

Both sides classify the same folder with a randomly initialised model of the same architecture
(throughput does not depend on the weights' values), batch 32, torch backend, on the CPU. Each
side is one whole process as a user would run it: start-up, model build, decode, inference,
writing results. Reports wall seconds, images/s and the peak RSS of the process tree; with
--repeat N the run with the median time is reported.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as bl

TARGET_RATIO = 1.4  # visiontool images/s over timm inference.py's


def median_run(make_cmd, repeat: int, cwd=None) -> dict:
    runs = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(bl.run_timed(make_cmd(Path(tmp)), cwd=cwd, env=bl.offline_env()))
        if runs[-1].returncode != 0:
            break
    runs.sort(key=lambda r: r.seconds)
    mid = runs[len(runs) // 2]
    out = mid.as_dict()
    out["all_seconds"] = [round(r.seconds, 3) for r in runs]
    return out


def write_random_timm_weights(model: str, path: Path) -> None:
    code = ("import sys, timm, torch; from safetensors.torch import save_file; torch.manual_seed(0); "
            "m = timm.create_model(sys.argv[1]); save_file(m.state_dict(), sys.argv[2])")
    subprocess.run([bl.TIMM_PYTHON, "-c", code, model, str(path)], cwd=bl.TIMM_DIR, check=True,
                   env=bl.offline_env())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-peer", action="store_true", help="only run visiontool")
    ap.add_argument("--skip-visiontool", action="store_true", help="only run the peer")
    args = ap.parse_args()

    n = bl.count_images(args.data)
    report: dict = {"benchmark": "classify_throughput", "images": n, "model": args.model,
                    "batch_size": args.batch_size, "data": str(args.data)}

    if not args.skip_peer:
        # inference.py insists on weights (pretrained ones from a hub unless --checkpoint is
        # given), so hand it a randomly initialised state_dict written beforehand, untimed.
        weights_dir = tempfile.TemporaryDirectory()
        weights = Path(weights_dir.name) / f"{args.model}-random.safetensors"
        write_random_timm_weights(args.model, weights)

        def timm_cmd(tmp: Path) -> list[str]:
            # As a user runs it on a CPU machine: its defaults, plus --device cpu (the default
            # is cuda) and a weights file.
            return [bl.TIMM_PYTHON, str(bl.TIMM_DIR / "inference.py"), str(args.data.resolve()),
                    "--model", args.model, "--checkpoint", str(weights), "--device", "cpu",
                    "--batch-size", str(args.batch_size), "--results-dir", str(tmp),
                    "--no-console-results"]
        peer = median_run(timm_cmd, args.repeat, cwd=bl.TIMM_DIR)
        weights_dir.cleanup()
        peer["images_per_s"] = round(n / peer["seconds"], 2)
        report["timm_inference"] = peer

    if not args.skip_visiontool:
        missing = bl.visiontool_has("classify")
        if missing:
            report["visiontool"] = {"skipped": missing}
        else:
            def vt_cmd(tmp: Path) -> list[str]:
                return [bl.visiontool_exe(), "classify", str(args.data), "--model", args.model,
                        "--weights", "none", "--batch-size", str(args.batch_size),
                        "--output", str(tmp / "rows.jsonl"), "--quiet"]
            vt = median_run(vt_cmd, args.repeat)
            vt["images_per_s"] = round(n / vt["seconds"], 2)
            report["visiontool"] = vt

    peer, vt = report.get("timm_inference"), report.get("visiontool", {})
    if peer and "images_per_s" in vt:
        ratio = vt["images_per_s"] / peer["images_per_s"]
        report["ratio_vs_timm"] = round(ratio, 3)
        report["target_ratio"] = TARGET_RATIO
        report["meets_target"] = ratio >= TARGET_RATIO
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
