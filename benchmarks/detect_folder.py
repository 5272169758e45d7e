"""Detection throughput: how close `visiontool detect` gets to this machine's limit, per model and backend.

    python benchmarks/detect_folder.py [--data DIR | --images 400] [--rounds 1]
                                       [--models griddet,frcnn] [--backends torch,onnx]
                                       [--griddet PATH | --griddet random] [--batch-size 8]
                                       [--out DIR]

The folder: --data DIR as it is (e.g. make_data.py's DATA/jpegs640), or else --images digit
scenes, 640x480, JPEG quality 90, written once (seeded, one generator per image) with
scripts/digit_scenes.py from its held-out digits and backgrounds, so that the shipped digit
detector finds things in them. They go to OUT/scenes640x480-N/ and are reused from there.

The models:
- griddet: the project's digit detector, the GridDet checkpoint given by --griddet (default: the
  first weights/griddet*.safetensors of this checkout; `--griddet random` writes a seeded
  random-weights GridDet with the ten digit labels, which measures speed only: untrained, it
  hands the decoder and its NMS another number of candidates than a trained one does);
- frcnn: torchvision's fasterrcnn_mobilenet_v3_large_320_fpn with `--weights none` (random
  weights). It takes images at their own size (the pipeline does not resize them; the model
  resizes to 320 px inside), and its ONNX export runs at batch 1.

Each is exported once with `visiontool export` (outside every timing; reused from OUT/models/)
for the onnx backend. Then, in each round, for each model and backend, side by side:

- decode: the pipeline's own decode + preprocess path (pipeline.batches, threads for onnx and
  worker processes for torch, as `detect` runs them) alone, one worker per core, images/s, the
  best of three passes;
- compute: the backend `detect` opens (open_model, on the CPU) on those already preprocessed
  batches, plus the detect task's postprocess (decoding, NMS, boxes back to original pixels),
  measured right before and right after the detect run (images over the seconds of both);
- limit: 1 / (1/decode + 1/compute), what doing both, each with the whole machine, allows;
- detect: `visiontool detect DATA --model M --batch-size B --device cpu --output rows.jsonl -q`
  as a whole process, images/s = images / wall seconds, nothing subtracted (interpreter start,
  imports, loading the model or building the onnxruntime session, decoding, inference,
  postprocess and writing the rows all count), and its ratio to the limit (target for the onnx
  backend: >= 0.85).

Every figure carries the load average before and after it; the summary takes the median over
the rounds. Prints one JSON object on stdout; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import benchlib as bl
from onnx_folder import bracketed_compute, limit, median_of, timed, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
TARGET_ONNX_RATIO = 0.85
FRCNN = "fasterrcnn_mobilenet_v3_large_320_fpn"
MODELS = ("griddet", "frcnn")
BACKENDS = ("torch", "onnx")
SCENE_SIZE = (640, 480)
JPEG_QUALITY = 90
INCLUDED = ("wall seconds of the whole `visiontool detect` process, nothing subtracted: interpreter "
            "start, imports, loading the model (torch) or building the onnxruntime session (onnx), "
            "decoding, preprocessing, inference, postprocess and writing rows.jsonl; images/s = "
            "images / wall seconds")


def visiontool_cmd() -> tuple[list[str], dict]:
    """The command that runs this checkout's visiontool, and its environment (offline).
    VT_VISIONTOOL names another executable."""
    env = bl.offline_env()
    named = os.environ.get("VT_VISIONTOOL")
    if named:
        return [named], env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "visiontool"], env


def digit_scenes():
    spec = importlib.util.spec_from_file_location("_digit_scenes", ROOT / "scripts" / "digit_scenes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_scenes(folder: Path, count: int, seed: int) -> dict:
    """`count` held-out digit scenes, 640x480, JPEG quality 90; files already there are kept."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(count) if not (folder / f"scene_{i:04d}.jpg").exists()]
    if todo:
        bl.log(f"writing {len(todo)} digit scenes to {folder}")
        ds = digit_scenes()
        pools = ds.load_pools("heldout")
        for i in todo:
            scene = ds.make_scene(np.random.default_rng((seed, i)), pools, *SCENE_SIZE)
            path = folder / f"scene_{i:04d}.jpg"
            tmp = path.with_suffix(".tmp")
            Image.fromarray(scene.image).save(tmp, "JPEG", quality=JPEG_QUALITY)
            tmp.replace(path)
    return {"path": str(folder), "written": len(todo), "kind": "digit scenes (scripts/digit_scenes.py, "
            "held-out digits and backgrounds)", "size": list(SCENE_SIZE), "jpeg_quality": JPEG_QUALITY,
            "seed": seed}


def default_griddet() -> Path | None:
    found = sorted((ROOT / "weights").glob("griddet*.safetensors"))
    return found[0] if found else None


def write_random_griddet(path: Path, seed: int = 0) -> None:
    """A GridDet with random weights and the metadata `train --task detect` writes (ten digits,
    letterboxed 320 px input)."""
    import torch

    from visiontool import checkpoint
    from visiontool.models import griddet, registry
    from visiontool.preprocess import Preprocess

    torch.manual_seed(seed)
    labels = [str(d) for d in range(10)]
    size = registry.OWN_ARCHS[griddet.ARCH].preprocess.crop
    module = registry.build(griddet.ARCH, len(labels))
    prep = Preprocess(crop=size, resize=size, mean=griddet.MEAN, std=griddet.STD, fit="letterbox")
    checkpoint.save(path, module.state_dict(), {
        "arch": griddet.ARCH, "task": "detect", "num_classes": len(labels), "labels": labels,
        "preprocess": prep.to_dict(), "arch_kwargs": {}})


class Model:
    """One model of the benchmark: what `detect` (or `segment`) and `export` are given for it."""

    def __init__(self, key: str, model: str, weights: str | None, source: str) -> None:
        self.key, self.model, self.weights, self.source = key, model, weights, source
        self.onnx: Path | None = None
        self.export_run: dict | None = None

    def argument(self, backend: str) -> tuple[str, str | None]:
        """(model, weights) for `detect` and open_model on this backend."""
        return (str(self.onnx), None) if backend == "onnx" else (self.model, self.weights)

    def cli_args(self, backend: str) -> list[str]:
        model, weights = self.argument(backend)
        return ["--model", model] + (["--weights", weights] if weights else [])


def export(m: Model, folder: Path) -> None:
    """`visiontool export` once (verified against PyTorch, as users run it); reused when there."""
    out = folder / f"{m.key}-{Path(m.model).stem}.onnx"  # another checkpoint gets its own file, not a stale one
    m.onnx = out
    if out.exists():
        m.export_run = {"reused": str(out)}
        return
    exe, env = visiontool_cmd()
    cmd = exe + ["export", m.model] + (["--weights", m.weights] if m.weights else []) + \
        ["--output", str(out), "--device", "cpu"]
    run = bl.run_timed(cmd, env=env)
    if run.returncode != 0:
        raise SystemExit(f"export failed ({run.returncode}): {' '.join(cmd)}")
    m.export_run = run.as_dict()


def measure_decode(paths: list[str], prep, batch_size: int, processes: bool) -> tuple[dict, list]:
    """The pipeline's decode + preprocess path with one worker per core; keeps the last pass's
    batches (their geometries too: the task's postprocess needs them)."""
    from visiontool import pipeline

    workers = os.cpu_count() or 1
    passes, kept = [], []
    for _ in range(3):
        kept = []
        seconds, load = timed(lambda: kept.extend(
            pipeline.batches(paths, prep, batch_size, workers=workers, processes=processes)))
        passes.append((seconds, load))
    seconds, load = min(passes, key=lambda p: p[0])
    errors = sum(e is not None for b in kept for e in b.errors)
    if errors:
        raise SystemExit(f"{errors} images of the folder could not be decoded")
    return {"images_per_s": round(len(paths) / seconds, 2), "seconds": round(seconds, 3),
            "all_seconds": [round(p[0], 3) for p in passes], "workers": workers,
            "in": "worker processes" if processes else "threads", **load}, kept


def measure_compute(runner, task, info, kept: list) -> dict:
    """The backend on already preprocessed batches, then the task's postprocess."""
    runner(kept[0].images)  # first call: allocations, lazy initialisation
    n = sum(len(b.paths) for b in kept)
    seconds, load = timed(lambda: [task.postprocess(runner(b.images), b, info) for b in kept])
    return {"images_per_s": round(n / seconds, 2), "seconds": round(seconds, 3), **load}


def read_rows(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {"rows": len(rows), "errors": sum(bool(r.get("error")) for r in rows),
            "detections": sum(len(r.get("detections") or []) for r in rows)}


def measure_detect(m: Model, backend: str, data: Path, batch_size: int, rows: Path, n: int) -> dict:
    exe, env = visiontool_cmd()
    cmd = exe + ["detect", str(data), *m.cli_args(backend), "--batch-size", str(batch_size),
                 "--device", "cpu", "--output", str(rows), "-q"]
    rows.unlink(missing_ok=True)
    run = bl.run_timed(cmd, env=env)
    out = run.as_dict()
    if run.returncode != 0:
        raise SystemExit(f"detect failed ({run.returncode}): {out['command']}")
    out["images_per_s"] = round(n / run.seconds, 2)
    out.update(read_rows(rows))
    if out["rows"] != n:
        raise SystemExit(f"detect wrote {out['rows']} rows for {n} images: {out['command']}")
    return out


def measure_side(m: Model, backend: str, paths: list[str], data: Path, batch_size: int,
                 rows: Path) -> dict:
    from visiontool.backends import open_model
    from visiontool.tasks.detect import Detect

    model, weights = m.argument(backend)
    n = len(paths)
    # As `detect` opens it (images=n: the graph optimization level a folder gets).
    runner, info = open_model(model, weights, backend, "cpu", offline=True, quiet=True, images=n)
    task = Detect()
    task.check_model(info, model)
    side: dict = {"model": model, "weights": weights}
    side["decode"], kept = measure_decode(paths, info.preprocess, batch_size,
                                          getattr(runner, "decode_in_processes", False))
    before = measure_compute(runner, task, info, kept)
    side["detect"] = measure_detect(m, backend, data, batch_size, rows, n)
    side["compute"] = bracketed_compute(before, measure_compute(runner, task, info, kept))
    del kept, runner
    side["limit_images_per_s"] = round(
        limit(side["decode"]["images_per_s"], side["compute"]["images_per_s"]), 2)
    side["ratio_to_limit"] = round(side["detect"]["images_per_s"] / side["limit_images_per_s"], 3)
    bl.log(f"  {m.key}/{backend}: decode {side['decode']['images_per_s']} img/s, compute "
           f"{side['compute']['images_per_s']}, limit {side['limit_images_per_s']}, detect "
           f"{side['detect']['images_per_s']} ({side['ratio_to_limit']} of the limit)")
    return side


def pick(value: str, known: tuple[str, ...], what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in known]
    if bad or not chosen:
        raise SystemExit(f"--{what} {value}: choose from {','.join(known)}")
    return chosen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a folder of images to use as it is (default: "
                    "--images digit scenes written under --out)")
    ap.add_argument("--images", type=int, default=400, help="digit scenes to write (without --data)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS), help="griddet, frcnn or both")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="torch, onnx or both")
    ap.add_argument("--griddet", help="GridDet checkpoint (default: the first weights/griddet*."
                    "safetensors); `random`: a seeded random-weights one")
    ap.add_argument("--batch-size", type=int, default=8, help="detect's default")
    ap.add_argument("--seed", type=int, default=0, help="the scenes' seed")
    ap.add_argument("--out", type=Path, help="keep the scenes, exported models and rows here "
                    "(reused on the next run); default: a temporary folder, removed")
    ap.add_argument("--max-load", type=float, default=1.5,
                    help="before each round, wait (up to --max-wait s) for the 1-min load to drop below this")
    ap.add_argument("--max-wait", type=float, default=60.0)
    args = ap.parse_args()
    models = pick(args.models, MODELS, "models")
    backends = pick(args.backends, BACKENDS, "backends")
    if args.images < 1 or args.rounds < 1:
        raise SystemExit("--images and --rounds must be at least 1")

    from visiontool.sources import expand

    work = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="detect_folder_"))
    (work / "models").mkdir(parents=True, exist_ok=True)
    (work / "rows").mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "detect_folder", "cpus": os.cpu_count(), "batch_size": args.batch_size,
                    "device": "cpu", "loadavg_start": bl.loadavg()}
    try:
        if args.data:
            data = args.data.resolve()
            report["data"] = {"path": str(data), "kind": "given (--data)"}
        else:
            data = work / f"scenes{SCENE_SIZE[0]}x{SCENE_SIZE[1]}-{args.images}"
            report["data"] = write_scenes(data, args.images, args.seed)
        paths = expand([str(data)])
        n = len(paths)
        report["images"] = n

        chosen: list[Model] = []
        if "griddet" in models:
            if args.griddet == "random":
                ckpt = work / "models" / "griddet-random.safetensors"
                if not ckpt.exists():
                    write_random_griddet(ckpt)
                source = "random weights (--griddet random): speed only"
            else:
                ckpt = Path(args.griddet) if args.griddet else default_griddet()
                if ckpt is None:
                    raise SystemExit("no weights/griddet*.safetensors in this checkout: give --griddet "
                                     "PATH (or --griddet random for a random-weights GridDet)")
                source = "checkpoint"
            chosen.append(Model("griddet", str(ckpt.resolve()), None, source))
        if "frcnn" in models:
            chosen.append(Model("frcnn", FRCNN, "none", "torchvision, --weights none (random weights)"))
        if "onnx" in backends:
            for m in chosen:
                export(m, work / "models")
        report["models"] = {m.key: {"model": m.model, "weights": m.weights, "source": m.source,
                                    "onnx": str(m.onnx) if m.onnx else None, "export": m.export_run}
                            for m in chosen}
        report["detect_figure_includes"] = INCLUDED

        rounds = []
        for i in range(args.rounds):
            wait_for_quiet(args.max_load, args.max_wait)
            bl.log(f"round {i + 1}/{args.rounds} (load {bl.loadavg()})")
            rounds.append({f"{m.key}/{b}": measure_side(m, b, paths, data, args.batch_size,
                                                       work / "rows" / f"{m.key}-{b}.jsonl")
                           for m in chosen for b in backends})
        report["rounds"] = rounds

        summary: dict = {}
        targets: dict = {}
        for key in rounds[0]:
            s = {"decode_images_per_s": median_of(rounds, key, "decode", "images_per_s"),
                 "compute_images_per_s": median_of(rounds, key, "compute", "images_per_s"),
                 "limit_images_per_s": median_of(rounds, key, "limit_images_per_s"),
                 "detect_images_per_s": median_of(rounds, key, "detect", "images_per_s"),
                 "ratio_to_limit": median_of(rounds, key, "ratio_to_limit")}
            summary[key] = s
            if key.endswith("/onnx"):
                targets[f"{key} ratio_to_limit >= {TARGET_ONNX_RATIO}"] = \
                    (s["ratio_to_limit"] or 0) >= TARGET_ONNX_RATIO
        summary["targets"] = targets
        report["summary"] = summary
        report["loadavg_end"] = bl.loadavg()
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
