"""A digit segmenter on digit scenes made another way: how much of its score is owed to the
particulars of scripts/digit_scenes.py.

    python benchmarks/segment_other_scenes.py [--model unet-digits] [--scenes 150] [--seed 123]

The scenes here follow the shipped model's description (MNIST digits on photos, each pixel
labelled with its digit where the digit's ink has alpha >= 0.5) but are drawn by this short,
separate maker: the held-out digits and held-out backgrounds of digit_scenes (so training never
saw either), the whole 28x28 MNIST frame resized with OpenCV's bilinear filter (ink 20-80 px
tall), no edge steepening, no rotation, stretching, noise or blur, near-black or near-white ink
against the mean of the patch under it, JPEG quality 90. Two ways to put a digit down:

  alpha  blended by its alpha: soft edges, as a plain resize of MNIST's strokes leaves them
  hard   its ink pixels painted over: aliased edges

Prints one JSON object: per way, mIoU, pixel accuracy and per-class IoU of the masks `visiontool
segment` writes (one pixel confusion matrix over all scenes, as `visiontool val` counts it), a
95% interval of the mIoU from 2,000 bootstrap resamples of the scenes: how far another set of
scenes of the same size might land, and `read_as_digit`: per band of the digits' ink alpha under
a pixel (0 far from any digit, 1 in a stroke's core; a pixel is a digit's from 0.5), the share
of the band's pixels marked as some digit. The two ways share their scenes and so their bands:
where they differ is what the edges cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from detect_folder import digit_scenes
from PIL import Image

WAYS = ("alpha", "hard")
ALPHA_BANDS = (0, 0.05, 0.3, 0.5, 0.7, 0.9, 1)  # edges of the ink-alpha bands of read_as_digit


def write_scenes(out: Path, way: str, count: int, seed: int) -> None:
    import cv2

    pools = digit_scenes().load_pools("heldout")
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    (out / "bands").mkdir()
    rng = np.random.default_rng(seed)
    for k in range(count):
        width, height = int(rng.integers(200, 641)), int(rng.integers(200, 481))
        source = pools.backgrounds[rng.integers(len(pools.backgrounds))]
        zoom = min(source.size[0] / width, source.size[1] / height, rng.uniform(0.6, 1.5))
        x0 = rng.uniform(0, max(source.size[0] - width * zoom, 0))
        y0 = rng.uniform(0, max(source.size[1] - height * zoom, 0))
        box = (x0, y0, x0 + width * zoom, y0 + height * zoom)
        image = np.asarray(source.resize((width, height), Image.Resampling.BILINEAR, box=box), np.float32).copy()
        mask = np.zeros((height, width), np.uint8)
        ink_alpha = np.zeros((height, width), np.float32)
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(2, 7))):
            i = rng.integers(len(pools.digits))
            side = int(rng.integers(20, 81) / 0.72)  # MNIST's ink fills about 72% of its frame's height
            if side >= min(width, height):
                continue
            for _try in range(20):
                x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                if all(x + side <= tx or tx + ts <= x or y + side <= ty or ty + ts <= y for tx, ty, ts, _ in taken):
                    break
            else:
                continue
            taken.append((x, y, side, side))
            alpha = cv2.resize(pools.digits[i].astype(np.float32) / 255, (side, side), interpolation=cv2.INTER_LINEAR)
            region = image[y : y + side, x : x + side]
            level = rng.uniform(0, 40) if region.mean() > 127 else rng.uniform(215, 255)
            colour = np.clip(level + rng.uniform(-30, 30, 3) * (rng.random() < 0.5), 0, 255)
            ink = alpha >= 0.5
            if way == "hard":
                region[ink] = colour
            else:
                region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
            mask[y : y + side, x : x + side][ink] = 1 + pools.labels[i]
            ink_alpha[y : y + side, x : x + side] = alpha
        rgb = np.clip(image, 0, 255).astype(np.uint8)
        cv2.imwrite(str(out / "images" / f"{k:04d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        Image.fromarray(mask).save(out / "masks" / f"{k:04d}.png")
        Image.fromarray(np.digitize(ink_alpha, ALPHA_BANDS[1:-1]).astype(np.uint8)).save(out / "bands" / f"{k:04d}.png")
    (out / "classes.txt").write_text("\n".join(["background", *map(str, range(10))]) + "\n")


def scene_confusions(model: str, folder: Path, work: Path) -> tuple[np.ndarray, dict]:
    """([scene][true][predicted] pixel counts of `visiontool segment`'s masks for the scenes in
    `folder`, {alpha band: share of its pixels the masks mark as a digit})."""
    rows = work / "rows.jsonl"
    subprocess.run([sys.executable, "-m", "visiontool", "segment", str(folder / "images"), "--model", model,
                    "--save-dir", str(work / "masks"), "--output", str(rows), "-q"], check=True)
    classes = len((folder / "classes.txt").read_text().split())
    confusions = []
    bands = len(ALPHA_BANDS) - 1
    marked, pixels = np.zeros(bands), np.zeros(bands)
    for row in map(json.loads, rows.read_text().splitlines()):
        stem = Path(row["path"]).stem
        truth = np.asarray(Image.open(folder / "masks" / f"{stem}.png"), np.int64)
        predicted = np.asarray(Image.open(row["mask"]), np.int64)
        counts = np.bincount((truth * classes + predicted).ravel(), minlength=classes * classes)
        confusions.append(counts.reshape(classes, classes))
        band = np.asarray(Image.open(folder / "bands" / f"{stem}.png"), np.int64).ravel()
        marked += np.bincount(band, weights=(predicted > 0).ravel(), minlength=bands)
        pixels += np.bincount(band, minlength=bands)
    read = {f"{lo:g}-{hi:g}": round(float(m / max(n, 1)), 4)
            for lo, hi, m, n in zip(ALPHA_BANDS, ALPHA_BANDS[1:], marked, pixels)}
    return np.stack(confusions), read


def scores(confusions: np.ndarray, labels: list[str], draws: int = 2000) -> dict:
    """The scores of all scenes together, and the 2.5th and 97.5th percentiles of the mIoU over
    `draws` resamples of the scenes with replacement (scenes, not pixels, are what was sampled)."""
    from visiontool.train.metrics import segmentation_scores

    total = segmentation_scores(confusions.sum(0))
    rng = np.random.default_rng(0)
    n = len(confusions)
    resampled = [segmentation_scores(confusions[rng.integers(0, n, n)].sum(0)).miou for _ in range(draws)]
    return {"miou": round(total.miou, 4), "miou_95": [round(float(v), 4) for v in np.percentile(resampled, (2.5, 97.5))],
            "pixel_accuracy": round(total.pixel_accuracy, 5),
            "iou": {label: round(v, 3) for label, v in zip(labels, total.iou) if v is not None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-digits")
    ap.add_argument("--scenes", type=int, default=150, help="scenes per way")
    ap.add_argument("--seed", type=int, default=123)
    a = ap.parse_args()
    report: dict = {"benchmark": "segment_other_scenes", "model": a.model, "scenes": a.scenes, "seed": a.seed}
    with tempfile.TemporaryDirectory() as tmp:
        for way in WAYS:
            folder = Path(tmp) / way
            write_scenes(folder, way, a.scenes, a.seed)
            labels = (folder / "classes.txt").read_text().split()
            confusions, read = scene_confusions(a.model, folder, Path(tmp) / f"{way}-out")
            report[way] = {**scores(confusions, labels), "read_as_digit": read}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
