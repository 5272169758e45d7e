"""Segmentation throughput: how close `visiontool segment` gets to this machine's limit, per model and backend.

    python benchmarks/segment_folder.py [--data DIR | --images 400] [--rounds 1]
                                        [--models lraspp,unet] [--backends torch,onnx]
                                        [--unet PATH | --unet random] [--batch-size 8]
                                        [--compute-images 96] [--out DIR]

The folder: --data DIR as it is, or else --images digit scenes, 640x480, JPEG quality 90,
written once with detect_folder.py's `write_scenes` (scripts/digit_scenes.py, held-out digits
and backgrounds) to OUT/scenes640x480-N/ and reused from there.

The models:
- lraspp: torchvision's lraspp_mobilenet_v3_large with `--weights none` (random weights: speed
  only). It sees each image with its shorter side resized to 520 (693x520 here);
- unet: the project's UNet, the checkpoint given by --unet (default: the first
  weights/unet*.safetensors of this checkout; `--unet random` writes a seeded random-weights
  UNet with the eleven digit-scene classes, which measures speed only). It sees each image at
  its own size.

Each is exported once with `visiontool export` (outside every timing; reused from OUT/models/)
for the onnx backend. Then, in each round, for each model and backend, side by side:

- decode: the pipeline's own decode + preprocess path (pipeline.batches, threads for onnx and
  worker processes for torch, keeping the decoded images as `segment --save-dir` does), one
  worker per core, images/s, the best of three passes;
- compute: the backend `segment` opens (open_model, on the CPU) alone, on the first
  --compute-images of those preprocessed batches, measured right before and right after the
  segment run (images over the seconds of both);
- limit: 1 / (1/decode + 1/compute), what doing both, each with the whole machine, allows;
- write: the segment task alone on the compute's outputs: logits back to original pixels,
  classes per image, the mask PNG and the overlay JPEG written (reported; not in the limit);
- segment: `visiontool segment DATA --model M --batch-size B --device cpu --save-dir PICS
  --output rows.jsonl -q` as a whole process, images/s = images / wall seconds, nothing
  subtracted (interpreter start, imports, loading the model or building the onnxruntime
  session, decoding, inference, masks and overlays written, rows written), and its ratio to
  the limit (target for the onnx backend: >= 0.85).

Every figure carries the load average before and after it; the summary takes the median over
the rounds. Prints one JSON object on stdout; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import benchlib as bl
from detect_folder import SCENE_SIZE, Model, export, pick, visiontool_cmd, write_scenes
from onnx_folder import bracketed_compute, limit, median_of, timed, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
TARGET_ONNX_RATIO = 0.85
LRASPP = "lraspp_mobilenet_v3_large"
MODELS = ("lraspp", "unet")
BACKENDS = ("torch", "onnx")
DIGIT_CLASSES = ["background", *(str(d) for d in range(10))]
INCLUDED = ("wall seconds of the whole `visiontool segment` process, nothing subtracted: interpreter "
            "start, imports, loading the model (torch) or building the onnxruntime session (onnx), "
            "decoding, preprocessing, inference, masks back to original pixels, mask PNGs and overlay "
            "pictures written, rows.jsonl written; images/s = images / wall seconds")


def default_unet() -> Path | None:
    found = sorted((ROOT / "weights").glob("unet*.safetensors"))
    return found[0] if found else None


def write_random_unet(path: Path, seed: int = 0) -> None:
    """A UNet with random weights and the metadata `train --task segment` writes (eleven
    digit-scene classes, images at their own size)."""
    import torch

    from visiontool import checkpoint
    from visiontool.models import registry, unet
    from visiontool.preprocess import Preprocess

    torch.manual_seed(seed)
    module = registry.build(unet.ARCH, len(DIGIT_CLASSES))
    side = registry.OWN_ARCHS[unet.ARCH].preprocess.crop
    prep = Preprocess(crop=side, resize=side, mean=unet.MEAN, std=unet.STD, fit="none")
    checkpoint.save(path, module.state_dict(), {
        "arch": unet.ARCH, "task": "segment", "num_classes": len(DIGIT_CLASSES), "labels": DIGIT_CLASSES,
        "preprocess": prep.to_dict(), "arch_kwargs": {}})


def measure_decode(paths: list[str], prep, batch_size: int, processes: bool, keep: int) -> tuple[dict, list]:
    """The pipeline's decode + preprocess path with one worker per core, decoded images kept
    for the overlays as `segment --save-dir` does; returns the first `keep` images' batches of
    the last pass."""
    from visiontool import pipeline

    workers = os.cpu_count() or 1
    passes, kept = [], []

    def one_pass():
        kept.clear()
        for batch in pipeline.batches(paths, prep, batch_size, workers=workers, processes=processes,
                                      keep_images=True):
            if any(e is not None for e in batch.errors):
                raise SystemExit(f"an image of the folder could not be decoded: {batch.errors}")
            if sum(len(b.paths) for b in kept) < keep:
                kept.append(batch)

    for _ in range(3):
        passes.append(timed(one_pass))
    seconds, load = min(passes, key=lambda p: p[0])
    return {"images_per_s": round(len(paths) / seconds, 2), "seconds": round(seconds, 3),
            "all_seconds": [round(p[0], 3) for p in passes], "workers": workers,
            "in": "worker processes" if processes else "threads", "images_kept": True, **load}, kept


def measure_compute(runner, kept: list) -> tuple[dict, list]:
    """The backend alone on already preprocessed batches; returns its outputs too."""
    runner(kept[0].images)  # first call: allocations, lazy initialisation
    n = sum(len(b.paths) for b in kept)
    outputs: list = []
    seconds, load = timed(lambda: outputs.extend(runner(b.images) for b in kept))
    return {"images_per_s": round(n / seconds, 2), "seconds": round(seconds, 3), "images": n, **load}, outputs


def measure_write(task, info, kept: list, outputs: list) -> dict:
    """The segment task alone: masks back to original pixels, rows, mask PNGs and overlays."""
    n = sum(len(b.paths) for b in kept)

    def write():
        for batch, out in zip(kept, outputs):
            rows = task.postprocess(out, batch, info)
            for path, row, image in zip(batch.paths, rows, batch.originals):
                task.save(path, row, image)

    seconds, load = timed(write)
    return {"images_per_s": round(n / seconds, 2), "seconds": round(seconds, 3), "images": n, **load}


def read_rows(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {"rows": len(rows), "errors": sum(bool(r.get("error")) for r in rows),
            "overlays": sum(bool(r.get("overlay")) for r in rows)}


def measure_segment(m: Model, backend: str, data: Path, batch_size: int, work: Path, n: int) -> dict:
    exe, env = visiontool_cmd()
    rows, pictures = work / "rows" / f"{m.key}-{backend}.jsonl", work / "pictures" / f"{m.key}-{backend}"
    shutil.rmtree(pictures, ignore_errors=True)
    rows.unlink(missing_ok=True)
    cmd = exe + ["segment", str(data), *m.cli_args(backend), "--batch-size", str(batch_size), "--device", "cpu",
                 "--save-dir", str(pictures), "--output", str(rows), "-q"]
    run = bl.run_timed(cmd, env=env)
    out = run.as_dict()
    if run.returncode != 0:
        raise SystemExit(f"segment failed ({run.returncode}): {out['command']}")
    out["images_per_s"] = round(n / run.seconds, 2)
    out.update(read_rows(rows))
    if out["rows"] != n or out["overlays"] != n:
        raise SystemExit(f"segment wrote {out['rows']} rows and {out['overlays']} overlays for {n} images")
    return out


def measure_side(m: Model, backend: str, paths: list[str], data: Path, batch_size: int, work: Path,
                 keep: int) -> dict:
    from visiontool.backends import open_model
    from visiontool.tasks.segment import Segment

    model, weights = m.argument(backend)
    n = len(paths)
    runner, info = open_model(model, weights, backend, "cpu", offline=True, quiet=True, images=n)
    side: dict = {"model": model, "weights": weights}
    side["decode"], kept = measure_decode(paths, info.preprocess, batch_size,
                                          getattr(runner, "decode_in_processes", False), keep)
    before, outputs = measure_compute(runner, kept)
    scratch = Path(tempfile.mkdtemp(prefix="segment_write_", dir=work))
    task = Segment(save_dir=scratch)
    task.check_model(info, model)
    side["write"] = measure_write(task, info, kept, outputs)
    shutil.rmtree(scratch, ignore_errors=True)
    del outputs
    side["segment"] = measure_segment(m, backend, data, batch_size, work, n)
    side["compute"] = bracketed_compute(before, measure_compute(runner, kept)[0])
    del kept, runner
    side["limit_images_per_s"] = round(limit(side["decode"]["images_per_s"], side["compute"]["images_per_s"]), 2)
    side["ratio_to_limit"] = round(side["segment"]["images_per_s"] / side["limit_images_per_s"], 3)
    bl.log(f"  {m.key}/{backend}: decode {side['decode']['images_per_s']} img/s, compute "
           f"{side['compute']['images_per_s']}, limit {side['limit_images_per_s']}, write "
           f"{side['write']['images_per_s']}, segment {side['segment']['images_per_s']} "
           f"({side['ratio_to_limit']} of the limit)")
    return side


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a folder of images to use as it is (default: "
                    "--images digit scenes written under --out)")
    ap.add_argument("--images", type=int, default=400, help="digit scenes to write (without --data)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS), help="lraspp, unet or both")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="torch, onnx or both")
    ap.add_argument("--unet", help="UNet checkpoint (default: the first weights/unet*.safetensors); "
                    "`random`: a seeded random-weights one")
    ap.add_argument("--batch-size", type=int, default=8, help="segment's default")
    ap.add_argument("--compute-images", type=int, default=96,
                    help="images the compute and write figures run on (memory: they are held)")
    ap.add_argument("--seed", type=int, default=0, help="the scenes' seed")
    ap.add_argument("--out", type=Path, help="keep the scenes, exported models, rows and pictures "
                    "here (reused on the next run); default: a temporary folder, removed")
    ap.add_argument("--max-load", type=float, default=1.5,
                    help="before each round, wait (up to --max-wait s) for the 1-min load to drop below this")
    ap.add_argument("--max-wait", type=float, default=60.0)
    args = ap.parse_args()
    models = pick(args.models, MODELS, "models")
    backends = pick(args.backends, BACKENDS, "backends")
    if args.images < 1 or args.rounds < 1 or args.compute_images < 1:
        raise SystemExit("--images, --rounds and --compute-images must be at least 1")

    from visiontool.sources import expand

    work = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="segment_folder_"))
    for sub in ("models", "rows", "pictures"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "segment_folder", "cpus": os.cpu_count(), "batch_size": args.batch_size,
                    "device": "cpu", "loadavg_start": bl.loadavg()}
    try:
        if args.data:
            data = args.data.resolve()
            report["data"] = {"path": str(data), "kind": "given (--data)"}
        else:
            data = work / f"scenes{SCENE_SIZE[0]}x{SCENE_SIZE[1]}-{args.images}"
            report["data"] = write_scenes(data, args.images, args.seed)
        paths = expand([str(data)])
        report["images"] = len(paths)

        chosen: list[Model] = []
        if "lraspp" in models:
            chosen.append(Model("lraspp", LRASPP, "none", "torchvision, --weights none (random weights)"))
        if "unet" in models:
            if args.unet == "random":
                ckpt = work / "models" / "unet-random.safetensors"
                if not ckpt.exists():
                    write_random_unet(ckpt)
                source = "random weights (--unet random): speed only"
            else:
                ckpt = Path(args.unet) if args.unet else default_unet()
                if ckpt is None:
                    raise SystemExit("no weights/unet*.safetensors in this checkout: give --unet PATH "
                                     "(or --unet random for a random-weights UNet)")
                source = "checkpoint"
            chosen.append(Model("unet", str(ckpt.resolve()), None, source))
        if "onnx" in backends:
            for m in chosen:
                export(m, work / "models")
        report["models"] = {m.key: {"model": m.model, "weights": m.weights, "source": m.source,
                                    "onnx": str(m.onnx) if m.onnx else None, "export": m.export_run}
                            for m in chosen}
        report["segment_figure_includes"] = INCLUDED

        rounds = []
        for i in range(args.rounds):
            wait_for_quiet(args.max_load, args.max_wait)
            bl.log(f"round {i + 1}/{args.rounds} (load {bl.loadavg()})")
            rounds.append({f"{m.key}/{b}": measure_side(m, b, paths, data, args.batch_size, work,
                                                       args.compute_images)
                           for m in chosen for b in backends})
        report["rounds"] = rounds

        summary: dict = {}
        targets: dict = {}
        for key in rounds[0]:
            s = {"decode_images_per_s": median_of(rounds, key, "decode", "images_per_s"),
                 "compute_images_per_s": median_of(rounds, key, "compute", "images_per_s"),
                 "limit_images_per_s": median_of(rounds, key, "limit_images_per_s"),
                 "write_images_per_s": median_of(rounds, key, "write", "images_per_s"),
                 "segment_images_per_s": median_of(rounds, key, "segment", "images_per_s"),
                 "ratio_to_limit": median_of(rounds, key, "ratio_to_limit")}
            summary[key] = s
            if key.endswith("/onnx"):
                targets[f"{key} ratio_to_limit >= {TARGET_ONNX_RATIO}"] = (s["ratio_to_limit"] or 0) >= TARGET_ONNX_RATIO
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
