"""Detection training against Ultralytics: `visiontool train --task detect` with its default
model against `yolo detect train model=yolov8n.yaml` (from scratch), on the same YOLO-format
digit scenes, both scored by pycocotools on the same val images.

    python benchmarks/yolo_detect_compare.py [--data DIR] [--epochs 10] [--out DIR]
                                             [--yolo PATH] [--skip-peer | --peer-json FILE]

Data: without --data, scripts/digit_scenes.py writes 1,000 train and 200 val scenes of 256x256
(seed 0, YOLO layout) under --out (or a temporary folder); --data reuses a YOLO dataset (a
data.yaml with names, train and val). Ultralytics reads its own copy of the data.yaml: the
absolute paths of the very images visiontool's scanner found (its `path: .` would otherwise be
read under Ultralytics' datasets folder).

Ultralytics runs as its users run it: `yolo detect train model=yolov8n.yaml imgsz=256 epochs=10
batch=32 plots=False`, plus pretrained=False (no weights), device=cpu, seed=0 and where to
write. It runs offline: YOLO_OFFLINE=1 (no update check, no events), YOLO_AUTOINSTALL=0 (no pip),
its own settings folder (YOLO_CONFIG_DIR) with sync off and an Arial.ttf in it, because its
dataset check otherwise asks the network for that font even with plots off. Its AMP check
downloads a model on GPUs only; on CPU it returns at once. visiontool runs `visiontool train
--task detect DATA --epochs 10 --image-size 256 --out RUN` (plus --device cpu): its defaults,
model included, are what is measured.

Scoring: the best checkpoint of each side predicts the val images at confidence 0.001, each with
its own pre- and post-processing (`visiontool val RUN/best.safetensors DATA --json`; `yolo val
best.pt conf=0.001 save_txt=True save_conf=True`, whose normalized boxes are mapped back to
pixels here), and visiontool.train.coco_eval.evaluate (pycocotools' COCOeval) scores both
against the same ground truth. Each side's own per-epoch mAP (results.csv) is reported beside.

Prints one JSON object: per side the training wall seconds and peak RSS (the largest process of
the tree, from wait4), the scoring run, mAP@0.5, mAP@0.5:0.95 and mAP@0.75; then visiontool /
Ultralytics ratios of time, peak RSS and both mAPs (null where Ultralytics' is 0). Ultralytics
leaves its label caches (labels/*.cache) in the dataset folder. --out keeps the data, both run
folders and ultralytics.json, which --peer-json FILE reads back to skip a second Ultralytics run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as bl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's visiontool (the scanner and COCOeval)

SCENES = ROOT / "scripts" / "digit_scenes.py"
PEER_VENV = Path("/work/peer-venv")
INSTALL_HINT = (f"Ultralytics' `yolo` was not found: install it in a virtual environment of its own (it "
                f"pulls opencv-python, which would replace visiontool's opencv-python-headless): "
                f"`python -m venv {PEER_VENV} && {PEER_VENV}/bin/pip install ultralytics`, then pass "
                f"--yolo {PEER_VENV}/bin/yolo (or set VT_YOLO)")
OWN_MAP50, OWN_MAP = r"metrics/mAP50\(B\)|val_map50$", r"metrics/mAP50-95\(B\)|val_map$"


# ------------------------------------------------------------------------------------ data


def make_scenes(out: Path, train: int, val: int, size: int) -> Path:
    """The digit-scene dataset (YOLO layout), written once: an existing data.yaml is reused."""
    if (out / "data.yaml").exists():
        bl.log(f"reusing the scenes in {out}")
        return out
    cmd = [sys.executable, str(SCENES), str(out), "--train", str(train), "--val", str(val),
           "--heldout", "0", "--size", str(size), "--seed", "0", "--format", "yolo"]
    bl.log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return out


def scan(data: Path):
    from visiontool.train.detect_data import scan_detection

    ds = scan_detection(data)
    if ds.format != "yolo":
        sys.exit(f"{data}: a YOLO dataset (data.yaml) is needed, Ultralytics trains on that layout")
    bl.log(f"{data}: {len(ds.train)} train, {len(ds.val)} val images (val: {ds.val_source})")
    for note in ds.notes:
        bl.log(f"note: {note}")
    return ds


def peer_yaml(ds, folder: Path) -> Path:
    """Ultralytics' data.yaml: absolute lists of the images the scanner found, the same names."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, samples in (("train", ds.train), ("val", ds.val)):
        (folder / f"{split}.txt").write_text("".join(f"{s.path.resolve()}\n" for s in samples))
    names = "\n".join(f"  {cid}: {json.dumps(name)}" for cid, name in zip(ds.category_ids, ds.classes))
    here = folder.resolve()
    q = lambda path: json.dumps(str(path))  # noqa: E731 (a JSON string is a YAML string)
    text = f"path: {q(here)}\ntrain: {q(here / 'train.txt')}\nval: {q(here / 'val.txt')}\nnames:\n{names}\n"
    (folder / "data.yaml").write_text(text)
    return folder / "data.yaml"


def truth_of(ds) -> tuple[list, list]:
    return [(s.boxes, s.labels) for s in ds.val], [(s.crowd_boxes, s.crowd_labels) for s in ds.val]


def score(ds, preds: list) -> dict:
    from visiontool.train.coco_eval import evaluate

    truth, crowd = truth_of(ds)
    m = evaluate(truth, preds, ds.classes, crowd=crowd)
    finite = lambda v: round(0.0 if v != v else float(v), 4)  # noqa: E731 (nan: no ground truth)
    return {"map50": finite(m.map50), "map": finite(m.map), "map75": finite(m.map75),
            "images": len(preds), "detections": int(sum(len(p[1]) for p in preds))}


def own_metrics(csv_path: Path) -> dict:
    """A side's own per-epoch mAP (its results.csv): the last epoch and the best."""
    if not csv_path.exists():
        return {"error": f"no per-epoch log at {csv_path}"}
    rows = bl.read_csv_rows(csv_path)
    out: dict = {"epochs_logged": len(rows)}
    for key, pattern in (("map50", OWN_MAP50), ("map", OWN_MAP)):
        column = next((c for c in rows[0] if re.search(pattern, c)), None) if rows else None
        vals = [float(r[column]) for r in rows if column and r.get(column) not in (None, "")]
        if vals:
            out.update({f"{key}_final": round(vals[-1], 4), f"{key}_best": round(max(vals), 4)})
    return out


# ------------------------------------------------------------------------------ Ultralytics


def find_yolo(named: str | None) -> str | None:
    for candidate in (named, os.environ.get("VT_YOLO"), shutil.which("yolo"), str(PEER_VENV / "bin" / "yolo"),
                      bl.YOLO):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(Path(candidate).absolute())
    return None


def yolo_env(yolo: str, root: Path) -> dict:
    """Offline, with settings of its own (never the user's) and a font in them."""
    env = bl.offline_env()
    config = root / "yolo-settings"
    env.update(YOLO_CONFIG_DIR=str(config), YOLO_AUTOINSTALL="0", YOLO_VERBOSE="1")
    font = config / "Ultralytics" / "Arial.ttf"  # its settings live in YOLO_CONFIG_DIR/Ultralytics
    font.parent.mkdir(parents=True, exist_ok=True)
    if not font.exists():
        # check_det_dataset() calls check_font("Arial.ttf"), which asks the network unless the
        # font is in the settings folder; the glyphs only matter for plots, which are off.
        source = dejavu_sans(yolo)
        if source is not None:
            shutil.copyfile(source, font)
        else:
            bl.log("note: no font to give Ultralytics; its dataset check may try the network for Arial.ttf")
    subprocess.run([yolo, "settings", "sync=False"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return env


def dejavu_sans(yolo: str) -> Path | None:
    """matplotlib's DejaVuSans.ttf: from the matplotlib here, else from the one of yolo's Python
    (named by the executable's #! line)."""
    relative = ("fonts", "ttf", "DejaVuSans.ttf")
    try:
        import matplotlib

        return Path(matplotlib.get_data_path(), *relative)
    except ImportError:
        pass
    with open(yolo, "rb") as f:
        first = f.readline().decode(errors="replace")
    if first.startswith("#!") and "python" in first:
        code = f"import matplotlib, pathlib; print(pathlib.Path(matplotlib.get_data_path(), *{relative!r}))"
        found = subprocess.run([first[2:].split()[0], "-c", code], capture_output=True, text=True)
        if found.returncode == 0 and Path(found.stdout.strip()).is_file():
            return Path(found.stdout.strip())
    return None


def yolo_version(yolo: str, env: dict) -> str:
    res = subprocess.run([yolo, "version"], capture_output=True, text=True, env=env)
    lines = (res.stdout or res.stderr).strip().splitlines()
    return lines[-1].strip() if res.returncode == 0 and lines else "unknown"


def yolo_predictions(ds, labels_dir: Path) -> list:
    """`yolo val save_txt save_conf` files (class cx cy w h conf, normalized to the picture) as
    per-image pixel (xyxy, scores, labels). Ultralytics names each file by the image's path under
    the common folder of the val images, parts joined by '_'; no file: no detection."""
    import numpy as np

    index_of = ds.index_of
    common = os.path.commonpath([os.path.dirname(s.path.resolve()) for s in ds.val])
    preds, unknown = [], 0
    for s in ds.val:
        name = "_".join(s.path.resolve().relative_to(common).with_suffix("").parts)
        file = labels_dir / f"{name}.txt"
        rows = np.loadtxt(file, ndmin=2) if file.exists() and file.stat().st_size else np.zeros((0, 6))
        keep = np.array([int(c) in index_of for c in rows[:, 0]], dtype=bool)
        unknown += int((~keep).sum())
        rows = rows[keep]
        cx, cy, w, h = (rows[:, k] * (s.width if k % 2 else s.height) for k in (1, 2, 3, 4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).reshape(-1, 4)
        labels = np.array([index_of[int(c)] for c in rows[:, 0]], dtype=np.int64)
        preds.append((boxes, rows[:, 5], labels))
    if unknown:
        bl.log(f"note: {unknown} Ultralytics detections of class ids the data.yaml does not name, left out")
    return preds


def run_peer(ds, yolo: str, root: Path, a: argparse.Namespace) -> dict:
    env = yolo_env(yolo, root)
    data_yaml = peer_yaml(ds, root / "yolo-data")
    out = root / "yolo"
    common = [f"data={data_yaml}", f"imgsz={a.image_size}", f"batch={a.batch}", "plots=False",
              f"device={a.device}", f"project={out}", "exist_ok=True"]
    train = bl.run_timed([yolo, "detect", "train", "model=yolov8n.yaml", f"epochs={a.epochs}", "pretrained=False",
                          "seed=0", "name=train", *common], cwd=root, env=env)
    report: dict = {"tool": "ultralytics", "version": yolo_version(yolo, env), "model": "yolov8n (from scratch)",
                    "seconds": round(train.seconds, 3), "peak_rss_mb": round(train.peak_rss_mb, 1),
                    "train": train.as_dict()}
    best = out / "train" / "weights" / "best.pt"
    report["own"] = own_metrics(out / "train" / "results.csv")
    if train.returncode != 0 or not best.exists():
        report["error"] = f"training failed (exit {train.returncode}); no {best}"
        return report
    scoring = bl.run_timed([yolo, "detect", "val", f"model={best}", "conf=0.001", "save_txt=True",
                            "save_conf=True", "name=val", *common], cwd=root, env=env)
    report["eval"] = scoring.as_dict()
    if scoring.returncode != 0:
        report["error"] = f"yolo val failed (exit {scoring.returncode})"
        return report
    report.update(score(ds, yolo_predictions(ds, out / "val" / "labels")))
    return report


# ------------------------------------------------------------------------------- visiontool


def visiontool_out_option(exe: str) -> str:
    """The run-folder option of this visiontool's train: --output where it has one, else --out."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    help_text = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, env=env).stdout
    return "--output" if re.search(r"(?<![\w-])--output\b", help_text) else "--out"


def run_visiontool(ds, data: Path, root: Path, a: argparse.Namespace) -> dict:
    missing = bl.visiontool_has("train") or bl.visiontool_has("val")
    if missing:
        return {"skipped": missing}
    exe = bl.visiontool_exe()
    run_dir = root / "visiontool"
    train = bl.run_timed([exe, "train", "--task", "detect", str(data), "--epochs", str(a.epochs),
                          "--image-size", str(a.image_size), visiontool_out_option(exe), str(run_dir),
                          "--device", a.device, "--quiet"], env=bl.offline_env())
    report: dict = {"tool": "visiontool", "seconds": round(train.seconds, 3),
                    "peak_rss_mb": round(train.peak_rss_mb, 1), "train": train.as_dict(),
                    "own": own_metrics(run_dir / "results.csv")}
    config = run_dir / "config.json"
    if config.exists():
        report["model"] = json.loads(config.read_text()).get("model")
    best = run_dir / "best.safetensors"
    if train.returncode != 0 or not best.exists():
        report["error"] = f"training failed (exit {train.returncode}); no {best}"
        return report
    scores = root / "visiontool-val.json"
    with open(scores, "w") as f:  # the JSON on stdout, to a file; progress stays on stderr
        evaluation = bl.run_timed([exe, "val", str(best), str(data), "--json", "--device", a.device, "--quiet"],
                                  env=bl.offline_env(), stdout=f)
    report["eval"] = evaluation.as_dict()
    if evaluation.returncode != 0:
        report["error"] = f"visiontool val failed (exit {evaluation.returncode})"
        return report
    got = json.loads(scores.read_text())
    # `val` runs the same coco_eval.evaluate on the same scanned val split; its figures are used
    # as they are, with the image count checked so both sides are scored on the same pictures.
    report.update({"map50": round(got["map50"], 4), "map": round(got["map"], 4), "map75": round(got["map75"], 4),
                   "images": got["images"]})
    if got["images"] != len(ds.val):
        report["note"] = f"scored {got['images']} of {len(ds.val)} val images"
    return report


# ------------------------------------------------------------------------------------- main


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a YOLO dataset (default: digit scenes written under --out)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=256, help="training and scene size (default 256)")
    ap.add_argument("--batch", type=int, default=32, help="Ultralytics' batch (default 32)")
    ap.add_argument("--device", default="cpu", help="for both sides (default cpu)")
    ap.add_argument("--train-scenes", type=int, default=1000, help="scenes written when --data is not given")
    ap.add_argument("--val-scenes", type=int, default=200, help="scenes written when --data is not given")
    ap.add_argument("--yolo", help="Ultralytics' yolo executable (default: VT_YOLO, PATH, /work/peer-venv/bin)")
    ap.add_argument("--out", type=Path, help="keep the data, both runs and ultralytics.json here")
    ap.add_argument("--skip-peer", action="store_true", help="no Ultralytics run")
    ap.add_argument("--peer-json", type=Path, help="reuse the Ultralytics result of an earlier run (its "
                    "ultralytics.json, or the whole report)")
    ap.add_argument("--skip-visiontool", action="store_true")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = (a.out or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        data = a.data or make_scenes(root / "data", a.train_scenes, a.val_scenes, a.image_size)
        ds = scan(data)
        report: dict = {"benchmark": "yolo_detect_compare", "data": str(data), "classes": len(ds.classes),
                        "train_images": len(ds.train), "val_images": len(ds.val),
                        "val_boxes": int(sum(len(s.labels) for s in ds.val)), "epochs": a.epochs,
                        "image_size": a.image_size, "device": a.device, "cpus": os.cpu_count()}

        if a.peer_json:
            got = json.loads(a.peer_json.read_text())
            peer = got.get("ultralytics", got)
            peer["reused_from"] = str(a.peer_json)
            notes = []
            if peer.get("images") not in (None, len(ds.val)):
                notes.append(f"scored on {peer['images']} val images, this data has {len(ds.val)}")
            if f"epochs={a.epochs} " not in peer.get("train", {}).get("command", "") + " ":
                notes.append(f"not trained for --epochs {a.epochs}")
            if notes:
                peer["note"] = "; ".join(notes)
                bl.log(f"note: the reused Ultralytics result was {peer['note']}")
            report["ultralytics"] = peer
        elif not a.skip_peer:
            yolo = find_yolo(a.yolo)
            if yolo is None:
                bl.log(INSTALL_HINT)
                report["ultralytics"] = {"skipped": INSTALL_HINT}
            else:
                report["ultralytics"] = run_peer(ds, yolo, root, a)
                (root / "ultralytics.json").write_text(json.dumps(report["ultralytics"], indent=2) + "\n")
                if a.out:
                    bl.log(f"Ultralytics' result: {root / 'ultralytics.json'} (--peer-json reuses it)")
        if not a.skip_visiontool:
            report["visiontool"] = run_visiontool(ds, data, root, a)

    peer, vt = report.get("ultralytics", {}), report.get("visiontool", {})
    if "map" in peer and "map" in vt:
        report["ratios_visiontool_to_ultralytics"] = {
            "time": ratio(vt["seconds"], peer["seconds"]), "peak_rss": ratio(vt["peak_rss_mb"], peer["peak_rss_mb"]),
            "map50": ratio(vt["map50"], peer["map50"]), "map": ratio(vt["map"], peer["map"])}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
