"""Object detection: boxes in the original image's pixels, best score first.

Row (README, "Output schema"):
    {"path", "width", "height",
     "detections": [{"box": [x1, y1, x2, y2], "label", "index", "score"}], "error"}

Models answer in one of two forms, told apart by their outputs:
- boxes, scores, labels (B, M, ...), padded with label -1: torchvision's detectors through
  their adapter (models/detection.py), and their ONNX exports;
- one raw head tensor that the architecture's torch-free decoder turns into boxes (the
  project's own detectors; decoders.py holds them, so the ONNX path needs no torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visiontool.errors import UsageError
from visiontool.tasks import Task

MASK_THRESHOLD = 0.5  # Mask R-CNN: a pixel belongs to the object when its probability is at least this
MAX_BOX_DIFF = 1.0  # export verification: pixels
MAX_SCORE_DIFF = 1e-3
DEFAULT_CONF = 0.25  # --conf for a model whose training recorded no threshold of its own
VERIFY_CONF = 0.05  # detections compared in export verification: those a user could ask for
CSV_COLUMNS = ["path", "width", "height", "det", "x1", "y1", "x2", "y2", "label", "index", "score", "error"]


class Detect(Task):
    name = "detect"
    fields = ("width", "height", "detections")

    def __init__(self, conf: float | None = None, iou: float = 0.5, classes=None, max_det: int = 100,
                 save_dir: str | Path | None = None, save_crops: bool = False,
                 coco_json: str | Path | None = None) -> None:
        if not 0.0 <= (DEFAULT_CONF if conf is None else conf) <= 1.0 or not 0.0 < iou <= 1.0:
            raise UsageError(f"--conf {conf} and --iou {iou} must lie in [0, 1] and (0, 1]")
        if max_det < 1:
            raise UsageError(f"--max-det {max_det}: must be at least 1")
        if save_crops and save_dir is None:
            raise UsageError("--save-crops writes into --save-dir: give --save-dir DIR")
        self.conf, self.iou, self.max_det, self.classes = conf, iou, max_det, classes
        self.save_dir, self.save_crops = (Path(save_dir) if save_dir else None), save_crops
        self.keep_images = save_dir is not None
        self._wanted: set[int] | None = None
        self._names = None
        if coco_json is not None and Path(coco_json).suffix.lower() != ".json":
            raise UsageError(f"--coco-json {coco_json}: the file name must end in .json")
        if coco_json is not None:
            from visiontool.writers import format_for

            format_for(Path(coco_json), "--coco-json")  # a folder of that name: said now, not after the run
        if save_dir is not None and any(p.exists() and not p.is_dir() for p in (Path(save_dir), *Path(save_dir).parents)):
            raise UsageError(f"--save-dir {save_dir}: is a file (or under one); name a folder")
        self.coco = CocoResults(Path(coco_json)) if coco_json else None

    def check_model(self, info, model: str) -> None:
        super().check_model(info, model)
        if self.conf is None:
            # A detector trained by `train` records the threshold with the best F1 on its
            # validation set: its scores are its own scale (at 0.25 griddet-digits found 2.4
            # boxes per digit on held-out scenes, at its 0.61: precision 0.90, recall 0.82).
            self.conf = float(info.extra.get("conf", DEFAULT_CONF))
        self._wanted = wanted_classes(self.classes, info.labels)
        if self.save_dir is not None:
            from visiontool.render import NameKeeper

            self._names = NameKeeper(self.save_dir)

    def postprocess(self, outputs, batch, info) -> list[dict]:
        per_image = found_boxes(outputs, info.arch, self.conf, self.iou, self.max_det)
        masks = outputs[3] if len(outputs) > 3 else None  # Mask R-CNN, in the order of its boxes
        rows = []
        for n, ((boxes, scores, labels, order), geometry) in enumerate(zip(per_image, batch.geometries)):
            keep = [i for i in range(len(scores)) if scores[i] >= self.conf
                    and (self._wanted is None or int(labels[i]) in self._wanted)][: self.max_det]
            boxes = geometry.to_original(boxes[keep])
            found = [{"box": [round(float(v), 2) for v in box], "label": label_of(info.labels, int(labels[i])),
                      "index": int(labels[i]), "score": round(float(scores[i]), 5)} for box, i in zip(boxes, keep)]
            if masks is not None:
                for d, i in zip(found, keep):
                    d["mask"] = mask_rle(masks[n, order[i], : geometry.height, : geometry.width] >= MASK_THRESHOLD)
            rows.append({"width": geometry.width, "height": geometry.height, "detections": found})
        if self.coco is not None:
            decoded = [p for p, e in zip(batch.paths, batch.errors) if e is None]
            for path, row in zip(decoded, rows):
                self.coco.add(path, row["detections"])
        return rows

    def skip(self, path: str) -> None:
        if self._names is not None:  # its picture keeps its name; later inputs do not take it
            self._names.name(path)

    def cannot_resume(self) -> str | None:
        return "--coco-json numbers the images of one whole run" if self.coco is not None else None

    def finish(self, ok: bool) -> None:
        if self.coco is not None:
            self.coco.close(ok)

    def export_outputs(self, info) -> dict[str, str]:
        if info.preprocess.fit == "none":  # torchvision's detectors, through their adapter
            return {"boxes": "(1, k, 4) x1 y1 x2 y2 in input pixels, best score first",
                    "scores": "(1, k) detection scores", "labels": "(1, k) indices into labels"}
        return {"raw": f"(N, 4 + classes, H/8, W/8) {info.arch} head output; boxes come from "
                       f"visiontool.models.decoders (torch-free), then NMS"}

    def export_batch(self, info, batch: int | None) -> int | None:
        # torchvision's detectors take a list of images of any size: the graph takes one.
        return 1 if info.preprocess.fit == "none" else batch

    def compare(self, pairs, info, precision: str, min_agreement: float | None) -> dict:
        """The same detections on every image: each one PyTorch scores at VERIFY_CONF or more
        has an onnxruntime one of the same label with box corners within MAX_BOX_DIFF pixels
        and a score within MAX_SCORE_DIFF, and the other way round (fp32 only)."""
        worst = 0.0
        same = total = 0
        for want, got, counted in pairs:
            for a, b in zip(found_boxes(want, info.arch, VERIFY_CONF / 2, self.iou, self.max_det),
                            found_boxes(got, info.arch, VERIFY_CONF / 2, self.iou, self.max_det)):
                (ok_ab, diff_ab), (ok_ba, diff_ba) = _matched(a, b), _matched(b, a)
                ok, diff = ok_ab and ok_ba, max(diff_ab, diff_ba)
                worst = max(worst, diff)
                same += ok * counted
                total += counted
        agree = same / max(total, 1)
        return {"max_abs_diff": worst, "top1_agreement": agree, "passed": agree == 1.0,
                "criterion": f"{precision}: the same labels, boxes within {MAX_BOX_DIFF:g} px and "
                             f"scores within {MAX_SCORE_DIFF:g} on every image"}

    def csv_columns(self) -> list[str]:
        return CSV_COLUMNS

    def csv_rows(self, row: dict) -> list[dict]:
        base = {"path": row["path"], "width": row.get("width", ""), "height": row.get("height", ""),
                "error": row.get("error") or ""}
        found = row.get("detections") or []
        lines = [{**base, "det": n, **dict(zip(("x1", "y1", "x2", "y2"), d["box"])), "label": d["label"],
                  "index": d["index"], "score": d["score"]} for n, d in enumerate(found)] or [base]
        return [{c: line.get(c, "") for c in CSV_COLUMNS} for line in lines]

    def headline(self, row: dict) -> str | None:
        found = row["detections"]
        return found[0]["label"] if found else "nothing found"

    def table(self, rows, info):
        from rich.table import Table

        from visiontool.sources import short_path

        table = Table("file", "size", "objects", "found", title=f"{info.extra.get('name') or info.arch} ({info.weights_source})")
        for r in rows:
            name = short_path(r["path"])
            if r["error"]:
                table.add_row(name, "", "[red]error[/]", r["error"])
                continue
            found = ", ".join(f"{d['label']} {d['score']:.2f}" for d in r["detections"][:8])
            more = len(r["detections"]) - 8
            table.add_row(name, f"{r['width']}x{r['height']}", str(len(r["detections"])),
                          found + (f" (+{more})" if more > 0 else ""))
        return table

    def save(self, path: str, row: dict, image) -> None:
        from visiontool import render

        out = self._names.name(path)
        render.save_image(out, render.draw_detections(image, row["detections"]))
        row["annotated"] = str(out)
        if self.save_crops:
            stem = out.stem
            for n, (label, _, crop) in enumerate(render.crop_detections(image, row["detections"])):
                render.save_image(self.save_dir / "crops" / safe_folder(label) / f"{stem}_{n}.jpg", crop)


def found_boxes(outputs, arch: str, conf: float, iou: float, max_det: int):
    """Per image (boxes (k, 4) in input pixels, scores (k,), labels (k,), positions (k,) in the
    model's own order), best score first."""
    if len(outputs) >= 3:  # boxes, scores, labels (and masks)
        boxes, scores, labels = outputs[:3]
        per_image = []
        for b, s, lab in zip(boxes, scores, labels):
            real = np.flatnonzero(lab >= 0)
            order = real[np.argsort(-s[real], kind="stable")]
            per_image.append((b[order], s[order], lab[order], order))
        return per_image
    from visiontool.models import decoders

    return [(*found, np.arange(len(found[1]))) for found in decoders.decode_raw(arch, outputs[0], conf, iou, max_det)]


def mask_rle(mask: np.ndarray) -> dict:
    """A boolean mask as COCO run-length encoding ({"size": [h, w], "counts": str}), the form
    pycocotools and COCO results files read."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def wanted_classes(classes, labels: list[str]) -> set[int] | None:
    """--classes as names or indices (comma-separated or repeated) -> label indices."""
    if not classes:
        return None
    items = [c.strip() for item in ([classes] if isinstance(classes, str) else classes) for c in str(item).split(",")]
    wanted = set()
    for item in filter(None, items):
        if item in labels:
            wanted.add(labels.index(item))
        elif item.isdigit() and int(item) < len(labels):
            wanted.add(int(item))
        else:
            shown = ", ".join(l for l in labels if l not in ("__background__", "N/A"))[:300]
            raise UsageError(f"--classes {item}: not a class of this model (its classes: {shown})")
    return wanted


def label_of(labels: list[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)


def safe_folder(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in label).strip() or "unnamed"


class CocoResults:
    """--coco-json: detections as COCO results, streamed into the file as they come.

    Images from a COCO dataset (an instances_*.json beside them, or in an annotations/ folder
    up to two levels above, that lists the file) get the dataset's image ids, and labels its
    category ids by name; otherwise images are numbered from 1 in input order and the
    category id is the model's label index (for torchvision's COCO weights, that is COCO's id).
    """

    def __init__(self, path: Path) -> None:
        self.path, self.writer, self.count = path, None, 0
        self._datasets: dict[Path, tuple[dict, dict] | None] = {}

    def _open(self):
        # Opened with the first image, so a run that fails before it leaves no temporary file.
        from visiontool.writers import RowWriter

        if self.writer is None:
            self.writer = RowWriter(self.path, lambda r: r)
        return self.writer

    def add(self, path: str, detections: list[dict]) -> None:
        self._open()
        self.count += 1
        image_id, categories = self._ids(Path(path))
        for d in detections:
            x1, y1, x2, y2 = d["box"]
            result = {"image_id": image_id if image_id is not None else self.count,
                      "category_id": categories.get(d["label"], d["index"]),
                      "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                      "score": round(d["score"], 5)}
            if "mask" in d:
                result["segmentation"] = d["mask"]
            self.writer.write(result)

    def close(self, ok: bool) -> None:
        if ok or self.writer is not None:
            self._open().close(ok)

    def _ids(self, path: Path) -> tuple[int | None, dict]:
        for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
            found = self._dataset(folder)
            if found is not None:
                images, categories = found
                image_id = images.get(path.name) or images.get(str(path.relative_to(folder)) if path.is_relative_to(folder) else "")
                if image_id is not None:
                    return image_id, categories
        return None, {}

    def _dataset(self, folder: Path):
        if folder not in self._datasets:
            import json

            self._datasets[folder] = None
            for ann in sorted([*folder.glob("instances_*.json"), *folder.glob("annotations/instances_*.json")]):
                try:
                    data = json.loads(ann.read_text())
                    images = {img["file_name"]: img["id"] for img in data["images"]}
                    images.update({Path(k).name: v for k, v in list(images.items())})
                    categories = {c["name"]: c["id"] for c in data["categories"]}
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # not a COCO annotation file after all
                known = self._datasets[folder]
                self._datasets[folder] = (images, categories) if known is None else ({**known[0], **images}, {**known[1], **categories})
        return self._datasets[folder]


def _matched(a, b) -> tuple[bool, float]:
    """Whether every detection of `a` scoring VERIFY_CONF or more has a twin in `b` (same label,
    corners within MAX_BOX_DIFF, score within MAX_SCORE_DIFF); and the largest corner difference."""
    (ab, ascore, alab, _), (bb, bscore, blab, _) = a, b
    worst = 0.0
    for box, score, label in zip(ab, ascore, alab):
        if score < VERIFY_CONF:
            continue
        mates = (blab == label) & (np.abs(bscore - score) <= MAX_SCORE_DIFF)
        if not mates.any():
            return False, worst
        diff = float(np.abs(bb[mates] - box).max(axis=1).min())
        worst = max(worst, diff)
        if diff > MAX_BOX_DIFF:
            return False, worst
    return True, worst
