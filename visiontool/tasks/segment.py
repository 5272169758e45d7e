"""Semantic segmentation: a class for every pixel, as a mask file and per-class shares.

Row (README, "Output schema"):
    {"path", "width", "height", "mask": <path of the mask PNG>,
     "classes": [{"label", "index", "fraction"}], "error"}

`classes` lists the classes present, largest first; `fraction` is the share of the image's
pixels. The mask is a palette PNG at the image's own size (after EXIF orientation) whose pixel
values are the class indices (render.save_mask). Class 0 is the background: overlays leave it
uncoloured and `--classes` turns the classes left out into it.

Models answer with logits (N, C, H, W) at input resolution (models/segmentation.py); images of
different sizes in one batch are padded bottom and right. The logits are mapped back through
the preprocessing geometry here, with numpy and OpenCV only, so the ONNX path needs no torch.
Masks are written as each batch comes, never held: memory stays flat on a long folder.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np

from visiontool.errors import UsageError
from visiontool.tasks import Task
from visiontool.tasks.detect import label_of, wanted_classes

MIN_PIXEL_AGREEMENT = 0.995  # export verification: share of pixels whose class equals PyTorch's
DEFAULT_MASK_DIR = "segment-out"
CSV_COLUMNS = ["path", "width", "height", "mask", "classes", "error"]
MAX_CLASSES = 255  # mask values are bytes, and 255 marks ignored pixels
MAX_SCALES = 8  # scales a model may be run at (each costs a pass; models/segmentation.py)
SCALE_RANGE = (0.25, 4.0)
MAX_GUIDED_RADIUS = 32  # pixels (models/guided_filter.py)


def checked_scales(values) -> tuple[float, ...]:
    """The scales a segmentation model runs at, as floats (1 to MAX_SCALES of them, each in
    SCALE_RANGE, none twice); ValueError saying what is wrong. `values`: a list of numbers or
    text such as "0.75,1,1.25"."""
    if isinstance(values, str):
        try:
            values = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"scales {values!r} are not numbers: give them as 0.75,1,1.25") from None
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"scales {values!r} are not a list of numbers")
    scales = tuple(float(v) for v in values)
    lo, hi = SCALE_RANGE
    if not 1 <= len(scales) <= MAX_SCALES or len(set(scales)) != len(scales):
        raise ValueError(f"scales {','.join(f'{v:g}' for v in scales)}: give 1 to {MAX_SCALES} different ones")
    if not all(lo <= v <= hi for v in scales):
        raise ValueError(f"scales {','.join(f'{v:g}' for v in scales)}: each must lie in [{lo:g}, {hi:g}]")
    return scales


def checked_guided_radius(value) -> int:
    """The radius in pixels of the guided filter a segmentation model's class probabilities pass
    (0: none); ValueError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 1 or not 0 <= value <= MAX_GUIDED_RADIUS:
        raise ValueError(f"guided filter radius {value!r}: give a whole number of pixels from 2 to "
                         f"{MAX_GUIDED_RADIUS}, or 0 for none")
    return value


def mask_dir(save_dir: str | Path | None, output: str | Path | None) -> Path:
    """Where the masks go: --save-dir; else a folder next to --output named after it
    (rows.jsonl -> rows-masks/); else ./segment-out."""
    if save_dir is not None:
        return Path(save_dir)
    if output is not None:
        output = Path(output)
        return output.with_name(f"{output.stem}-masks")
    return Path(DEFAULT_MASK_DIR)


def class_map(channels) -> np.ndarray:
    """The argmax over classes of per-class score maps (an iterable of HxW float32 arrays, e.g.
    the C of a CHW array), as uint8; ties go to the lower class, as numpy's argmax. A running
    maximum in OpenCV: about 3x faster than `np.argmax(axis=0)`, which strides across planes."""
    import cv2

    channels = iter(channels)
    best = np.array(next(channels), dtype=np.float32)
    found = np.zeros(best.shape, np.uint8)
    value = np.empty_like(found)
    for c, scores in enumerate(channels, start=1):
        higher = cv2.compare(scores, best, cv2.CMP_GT)
        value.fill(c)
        cv2.copyTo(value, higher, found)
        cv2.max(best, scores, dst=best)
    return found


def to_original(logits: np.ndarray, geometry) -> np.ndarray:
    """(C, H, W) logits in input pixels -> (height, width) uint8 class mask in original pixels.

    Each original pixel centre is mapped into the input (input = original * scale + offset, the
    same rule that maps boxes); pixels the input does not cover (a center crop) take the
    nearest covered one. Where the input is smaller than the original the logits are
    interpolated before the argmax, for smooth edges; otherwise the class map is sampled.
    """
    import cv2

    g = geometry
    if logits.strides[-1] != logits.itemsize:  # channels-last memory: one copy, not one per plane
        logits = np.ascontiguousarray(logits)
    _, h_in, w_in = logits.shape
    # The part of the (possibly padded) input that holds the image, so no padding is sampled.
    x0 = min(max(math.floor(g.left), 0), w_in - 1)
    y0 = min(max(math.floor(g.top), 0), h_in - 1)
    x1 = max(min(math.ceil(g.left + g.width * g.scale_x), w_in), x0 + 1)
    y1 = max(min(math.ceil(g.top + g.height * g.scale_y), h_in), y0 + 1)
    region = logits[:, y0:y1, x0:x1]
    m = np.array([[g.scale_x, 0.0, g.left - x0 + 0.5 * g.scale_x - 0.5],
                  [0.0, g.scale_y, g.top - y0 + 0.5 * g.scale_y - 0.5]])
    size = (g.width, g.height)
    if g.scale_x < 1 or g.scale_y < 1:
        flags = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
        return class_map(cv2.warpAffine(np.ascontiguousarray(c, dtype=np.float32), m, size, flags=flags,
                                        borderMode=cv2.BORDER_REPLICATE) for c in region)
    return cv2.warpAffine(class_map(region), m, size, flags=cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)


def class_shares(mask: np.ndarray, labels: list[str]) -> list[dict]:
    """[{"label", "index", "fraction"}] of the classes present, largest first."""
    from visiontool.render import classes_by_area

    total = mask.size
    return [{"label": label_of(labels, i), "index": i, "fraction": round(n / total, 6)}
            for i, n in classes_by_area(mask)]


class Segment(Task):
    name = "segment"
    fields = ("width", "height", "mask", "classes")

    def __init__(self, save_dir: str | Path | None = None, alpha: float = 0.5, classes=None,
                 output: str | Path | None = None) -> None:
        """`save_dir`: masks and overlays go there; without it, masks only, to
        `mask_dir(None, output)`."""
        if not 0.0 <= alpha <= 1.0:
            raise UsageError(f"--alpha {alpha}: must lie in [0, 1]")
        self.alpha, self.classes = alpha, classes
        self.mask_dir = mask_dir(save_dir, output)
        self.keep_images = save_dir is not None  # overlays need the decoded images
        self._names = None
        self._keep: np.ndarray | None = None  # class lookup table for --classes
        self._pending: deque = deque()  # (mask, stem) of the batch whose overlays are next

    def check_model(self, info, model: str) -> None:
        super().check_model(info, model)
        if len(info.labels) > MAX_CLASSES:
            raise UsageError(f"--model {model} has {len(info.labels)} classes; masks hold at most {MAX_CLASSES}")
        wanted = wanted_classes(self.classes, info.labels)
        if wanted is not None:
            self._keep = np.zeros(256, np.uint8)  # classes left out become the background, 0
            for i in wanted:
                self._keep[i] = i
        from visiontool.render import NameKeeper

        self._names = NameKeeper(self.mask_dir)
        self._labels = info.labels

    def skip(self, path: str) -> None:
        if self._names is not None:  # its mask and overlay keep their names; later inputs do not take them
            self._names.stem(path)

    def postprocess(self, outputs, batch, info) -> list[dict]:
        from visiontool.render import save_mask

        logits = outputs[0]
        rows = []
        decoded = [p for p, e in zip(batch.paths, batch.errors) if e is None]
        for path, x, geometry in zip(decoded, logits, batch.geometries):
            mask = to_original(x, geometry)
            if self._keep is not None:
                mask = self._keep[mask]
            stem = self._names.stem(path)
            out = save_mask(self.mask_dir / f"{stem}_mask.png", mask)
            if self.keep_images:
                self._pending.append((mask, stem))
            rows.append({"width": geometry.width, "height": geometry.height, "mask": str(out),
                         "classes": class_shares(mask, info.labels)})
        return rows

    def save(self, path: str, row: dict, image) -> None:
        from visiontool import render

        mask, stem = self._pending.popleft()
        out = render.output_name(path, self.mask_dir).with_stem(f"{stem}_overlay")
        present = [c["index"] for c in row["classes"]]
        render.save_image(out, render.overlay_mask(image, mask, self._labels, self.alpha, present=present))
        row["overlay"] = str(out)

    def export_outputs(self, info) -> dict[str, str]:
        return {"logits": "(N, classes, H, W) at input resolution; the mask is the argmax over classes"}

    def compare(self, pairs, info, precision: str, min_agreement: float | None) -> dict:
        """The same class on at least MIN_PIXEL_AGREEMENT of the pixels. Images of different
        sizes come as lists of per-image logits (backends.stack_outputs), the same size as a batch."""
        worst, same, total = 0.0, 0, 0
        for want, got, counted in pairs:
            for w, g in zip(want[0], got[0]):  # (C, H, W) each
                if w.shape != g.shape:
                    raise UsageError(f"onnxruntime answered {g.shape} where PyTorch answered {w.shape}")
                worst = max(worst, float(np.abs(g.astype(np.float64) - w).max()))
                if counted:
                    same += int((w.argmax(0) == g.argmax(0)).sum())
                    total += w[0].size
        agree = same / max(total, 1)
        return {"max_abs_diff": worst, "top1_agreement": agree, "passed": agree >= MIN_PIXEL_AGREEMENT,
                "criterion": f"{precision}: the same class on >= {MIN_PIXEL_AGREEMENT:.1%} of the pixels"}

    def csv_columns(self) -> list[str]:
        return CSV_COLUMNS

    def csv_rows(self, row: dict) -> list[dict]:
        shares = ";".join(f"{c['label']}:{c['fraction']}" for c in row.get("classes") or [])
        line = {"path": row["path"], "width": row.get("width"), "height": row.get("height"),
                "mask": row.get("mask"), "classes": shares, "error": row.get("error")}
        return [{c: "" if line[c] is None else line[c] for c in CSV_COLUMNS}]

    def headline(self, row: dict) -> str | None:
        """The largest class besides the background (the background when alone)."""
        found = row["classes"]
        return next((c["label"] for c in found if c["index"] != 0), found[0]["label"] if found else None)

    def table(self, rows, info):
        from rich.table import Table

        from visiontool.sources import short_path

        table = Table("file", "size", "classes", "mask",
                      title=f"{info.extra.get('name') or info.arch} ({info.weights_source})")
        for r in rows:
            name = short_path(r["path"])
            if r["error"]:
                table.add_row(name, "", "[red]error[/]", r["error"])
                continue
            shown = ", ".join(f"{c['label']} {c['fraction']:.1%}" for c in r["classes"][:5])
            more = len(r["classes"]) - 5
            table.add_row(name, f"{r['width']}x{r['height']}", shown + (f" (+{more})" if more > 0 else ""),
                          short_path(r["mask"]))
        return table
