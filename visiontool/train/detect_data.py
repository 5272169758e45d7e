"""Detection datasets in the two formats people have: YOLO and COCO.

YOLO: a data.yaml (or the folder's only *.yaml) with `names` and the `train`/`val` images
(a folder, a .txt list of image paths, or a list of those); each image's boxes are in a .txt
file found by replacing the last `images` folder of its path by `labels`, one
`class cx cy w h` line per object, normalized to the upright picture.
COCO: annotations/instances_train*.json and instances_val*.json (or Roboflow's
<split>/_annotations.coco.json), the images in a folder next to them.

Everything is checked while scanning: each usual mistake is one DatasetError line naming the
file (and the line of a label file). Image sizes come from file headers; pixels are decoded
later, by training. Boxes are float32 xyxy in pixels of the picture as users see it, after
EXIF orientation, because that is the picture `decode` gives the model.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from visiontool.errors import DatasetError, one_line
from visiontool.train.data import VAL_FOLDERS, walk_images

# A box may overshoot the image border by this share of the side (or 1 pixel, whichever is
# larger) and is then clipped: labelling tools and rounding produce such overshoots all the
# time, while anything bigger means the labels belong to another image or another size.
_EDGE_TOLERANCE = 0.01
_FIRST_FEW = 3  # paths named in a note before "..."
_YOLO_FORMAT = "'class cx cy w h' (class id, then box center and size normalized to 0-1)"
_YAML_SUFFIXES = (".yaml", ".yml")
_COCO_JSON_GLOB = "instances_*.json"
_ROBOFLOW_COCO_JSON = "_annotations.coco.json"


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def _empty_labels() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class Sample:
    """One image and its objects."""

    path: Path
    width: int  # upright (after EXIF orientation), like the boxes
    height: int
    boxes: np.ndarray  # float32 (n, 4) x1 y1 x2 y2 in pixels
    labels: np.ndarray  # int64 (n,) class index (position in DetectionDataset.classes)
    image_id: int  # the COCO image id for COCO data, else a running index
    category_ids: np.ndarray | None = None  # int64 (n,) COCO category id of each box; None for YOLO
    # COCO crowd regions (iscrowd 1): one box around many objects, which no detector should be
    # trained to output; they are kept apart so evaluation can ignore detections inside them,
    # as COCOeval does.
    crowd_boxes: np.ndarray = field(default_factory=_empty_boxes)
    crowd_labels: np.ndarray = field(default_factory=_empty_labels)


@dataclass
class DetectionDataset:
    classes: list[str]  # index = label
    train: list[Sample]
    val: list[Sample]
    format: str  # "yolo" or "coco"
    val_source: str  # where the val split came from (for messages)
    notes: list[str]  # one line each: things the user may want to know, none fatal
    # The dataset's own id of each class index: COCO category ids, or the ids of the YOLO
    # names. Results written for COCO tools must use these, not the indices.
    category_ids: list[int] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # images skipped (path, reason)

    @property
    def index_of(self) -> dict[int, int]:
        """Category id -> class index."""
        return {cid: i for i, cid in enumerate(self.category_ids)}


def scan_detection(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DetectionDataset:
    """Recognise the format of a detection dataset by what the folder holds, read and check it.

    `root` is the dataset folder (or a YOLO .yaml file). Without a val split, a seeded
    `val_fraction` of the train images is held out.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() in _YAML_SUFFIXES:
        return _scan_yolo(root, val_fraction, seed)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    yaml_file = _find_yaml(root)
    if yaml_file is not None:
        return _scan_yolo(yaml_file, val_fraction, seed)
    jsons = _find_coco_jsons(root)
    if jsons:
        return _scan_coco(root, jsons, val_fraction, seed)
    yamls = sorted(p.name for p in root.iterdir() if p.suffix.lower() in _YAML_SUFFIXES)
    if yamls:
        raise DatasetError(f"several .yaml files in {root} ({', '.join(yamls)}): name one, or call it data.yaml")
    if any((root / split / "labels").is_dir() for split in ("train", *VAL_FOLDERS)) or (root / "labels").is_dir():
        raise DatasetError(f"YOLO label folders in {root} but no data.yaml with the class names (names: [...])")
    raise DatasetError(
        f"no detection dataset in {root}: expected a YOLO data.yaml (names, train, val) "
        f"or COCO annotations/{_COCO_JSON_GLOB}"
    )


# ---------------------------------------------------------------------------- shared parts


def _read_headers(paths: Sequence[Path], work: Callable[[Path, tuple[int, int, int]], object]) -> list:
    """Read each image's header in threads (file opens and small reads wait on the disk, not the
    CPU) and hand (path, (width, height, orientation)) to `work`; an unreadable image gives its
    DecodeError instead. DatasetErrors from `work` propagate in input order, so the first bad
    file is the one named."""
    from visiontool.imageio import DecodeError, upright_size

    def one(path: Path):
        try:
            size = upright_size(path)
        except DecodeError as err:
            return err
        return work(path, size)

    workers = min(16, 4 * (os.cpu_count() or 1), max(1, len(paths)))
    if workers == 1:
        return [one(p) for p in paths]
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        return list(pool.map(one, paths))
    finally:
        # After a DatasetError the reads still queued are dropped, not waited for.
        pool.shutdown(wait=True, cancel_futures=True)


def _check_box(
    x1: float, y1: float, x2: float, y2: float, width: int, height: int, where: str, hint: str = ""
) -> tuple[float, float, float, float] | None:
    """Clip a box that overshoots the border a little; None when nothing is left of it.
    DatasetError when it reaches clearly outside the image."""
    tol_x = max(1.0, _EDGE_TOLERANCE * width)
    tol_y = max(1.0, _EDGE_TOLERANCE * height)
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        raise DatasetError(
            f"{where}: box x {x1:.1f}..{x2:.1f}, y {y1:.1f}..{y2:.1f} reaches outside the "
            f"{width}x{height} image{hint}"
        )
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 <= 0.0 or y2 - y1 <= 0.0:
        return None
    return x1, y1, x2, y2


def _moved(box, raw) -> bool:
    """Clipped by more than rounding (normalized coordinates written with 6 decimals overshoot
    the border by a hair all the time; that is not worth a note)."""
    return max(abs(a - b) for a, b in zip(box, raw)) > 0.5


def _hold_out(samples: list[Sample], fraction: float, seed: int, source: str) -> tuple[list[Sample], list[Sample]]:
    """A seeded random share of the images as val (at least one, never all)."""
    if len(samples) < 2:
        raise DatasetError(f"too few images in {source} to hold out a validation split (add a val split)")
    n_val = min(len(samples) - 1, max(1, round(len(samples) * fraction)))
    order = np.random.default_rng(seed).permutation(len(samples))
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def _first_few(paths: Sequence[object]) -> str:
    shown = ", ".join(str(p) for p in paths[:_FIRST_FEW])
    return shown + (", ..." if len(paths) > _FIRST_FEW else "")


def _unreadable_note(unreadable: list[tuple[Path, str]]) -> list[str]:
    if not unreadable:
        return []
    n = len(unreadable)
    first = "; ".join(f"{p}: {reason}" for p, reason in unreadable[:_FIRST_FEW])
    more = "; ..." if n > _FIRST_FEW else ""
    return [f"skipped {n} unreadable image{'s' * (n > 1)} ({first}{more})"]


def _count_note(what: str, items: list) -> list[str]:
    """'<what>: N (first: a, b, c, ...)' when there are any."""
    if not items:
        return []
    return [f"{what}: {len(items)} (first: {_first_few(items)})"]


def _box_notes(dropped: list[str], clipped: int) -> list[str]:
    notes = _count_note("boxes of zero size, left out", dropped)
    if clipped:
        notes.append(f"boxes slightly over the image border, clipped: {clipped}")
    return notes


# ---------------------------------------------------------------------------- YOLO


def _find_yaml(root: Path) -> Path | None:
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    yamls = [p for p in sorted(root.iterdir()) if p.suffix.lower() in _YAML_SUFFIXES and p.is_file()]
    return yamls[0] if len(yamls) == 1 else None


def label_path(image: Path) -> Path:
    """The YOLO label file of an image: the last `images` folder of its path becomes `labels`
    and the suffix `.txt` (Ultralytics' rule); without an `images` folder, next to the image."""
    parts = image.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
    return image.with_suffix(".txt")


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or one_line(err)
        raise DatasetError(f"{path}{where}: not valid YAML ({problem})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with names, train and val")
    return data


def _yolo_names(data: dict, yaml_file: Path) -> tuple[list[str], list[int]]:
    """Class names and their ids, from `names: [a, b]` or `names: {0: a, 1: b}`."""
    raw = data.get("names")
    example = "(the class names, e.g. names: [cat, dog] or names: {0: cat, 1: dog})"
    if raw is None:
        raise DatasetError(f"{yaml_file}: no 'names' {example}")
    if isinstance(raw, list):
        names, ids = [str(n) for n in raw], list(range(len(raw)))
    elif isinstance(raw, dict):
        try:
            pairs = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_file}: 'names' keys must be class ids (whole numbers) {example}") from None
        ids, names = [k for k, _ in pairs], [v for _, v in pairs]
    else:
        raise DatasetError(f"{yaml_file}: 'names' must be a list or an id: name mapping {example}")
    if not names:
        raise DatasetError(f"{yaml_file}: 'names' is empty {example}")
    return names, ids


def _yolo_bases(data: dict, yaml_file: Path) -> list[Path]:
    """Folders the split entries may be relative to, most specific first: `path` as written
    (relative to the yaml), `path` relative to the working directory (how Ultralytics reads
    it), then the yaml's own folder (the dataset was moved, `path` is stale)."""
    here = yaml_file.parent
    bases = []
    if data.get("path"):
        given = Path(str(data["path"])).expanduser()
        bases += [given] if given.is_absolute() else [here / given, Path.cwd() / given]
    bases.append(here)
    return list(dict.fromkeys(bases))


def _resolve_entry(entry: str, bases: list[Path]) -> Path | None:
    for base in bases:
        for candidate in (entry, entry[3:] if entry.startswith("../") else None):
            # Roboflow writes `train: ../train/images` next to a data.yaml inside the dataset.
            if candidate is None:
                continue
            path = Path(candidate).expanduser()
            path = path if path.is_absolute() else base / path
            if path.exists():
                return path
    return None


def _split_sources(data: dict, keys: tuple[str, ...], defaults: list[str], bases: list[Path], yaml_file: Path):
    """(paths of the split's folders/lists, description) or None when the yaml names none and
    no default folder exists. DatasetError when a named one is missing."""
    for key in keys:
        if data.get(key):
            entries = data[key] if isinstance(data[key], list) else [data[key]]
            paths = []
            for entry in entries:
                path = _resolve_entry(str(entry), bases)
                if path is None:
                    raise DatasetError(
                        f"{yaml_file}: {key} folder not found: {bases[0] / str(entry)} ({key}: {entry})"
                    )
                paths.append(path)
            return paths, ", ".join(str(e) for e in entries)
    for default in defaults:
        for base in bases:
            if (base / default).is_dir():
                return [base / default], f"{default}/"
    return None


def _list_images(source: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Images of one split entry: a folder, a .txt list (one path a line, relative to the list's
    folder), or a single image."""
    if source.is_dir():
        return walk_images(source)
    if source.suffix.lower() == ".txt":
        images = []
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"{source}: cannot read ({one_line(err)})") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line).expanduser()
            path = path if path.is_absolute() else source.parent / path
            if not path.is_file():
                raise DatasetError(f"{source} line {number}: image not found: {path}")
            images.append(path)
        return images, []
    return [source], []


def _parse_yolo_line(text: str, where: str, index_of: dict[int, int], names_hint: str):
    """(class index, cx, cy, w, h normalized) of one label line. Polygon lines (class x1 y1 x2
    y2 ...: YOLO segmentation labels) give the box around the polygon."""
    tokens = text.split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        values = None
    polygon = values is not None and len(values) >= 7 and len(values) % 2 == 1
    if values is None or not (len(values) == 5 or polygon) or not all(np.isfinite(values)):
        raise DatasetError(f"{where}: expected {_YOLO_FORMAT}, got {text.strip()!r}")
    if values[0] != int(values[0]):
        raise DatasetError(f"{where}: class id must be a whole number, got {tokens[0]!r} (format {_YOLO_FORMAT})")
    class_id = int(values[0])
    if class_id not in index_of:
        raise DatasetError(f"{where}: class id {class_id} {names_hint}")
    if polygon:
        xs, ys = np.asarray(values[1::2]), np.asarray(values[2::2])
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        w, h = xs.max() - xs.min(), ys.max() - ys.min()
    else:
        cx, cy, w, h = values[1:]
        if w < 0 or h < 0:
            raise DatasetError(f"{where}: negative box size (w {w:g}, h {h:g}); expected {_YOLO_FORMAT}")
    return index_of[class_id], cx, cy, w, h


@dataclass
class _YoloRead:
    """What reading one image's header and label file gave."""

    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    has_labels: bool
    dropped: list[str]  # "file line n" of boxes with nothing left after clipping
    clipped: int


def _read_yolo_labels(path: Path, size: tuple[int, int, int], index_of: dict[int, int], names_hint: str) -> _YoloRead:
    width, height, _ = size
    label_file = label_path(path)
    try:
        text = label_file.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return _YoloRead(width, height, _empty_boxes(), _empty_labels(), False, [], 0)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{label_file}: cannot read ({one_line(err)})") from None
    boxes, labels, dropped, clipped = [], [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{label_file} line {number}"
        label, cx, cy, w, h = _parse_yolo_line(line, where, index_of, names_hint)
        raw = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        # Pixel coordinates written where normalized ones belong are the commonest cause.
        largest = max(cx, cy, w, h)
        hint = f"; YOLO coordinates are normalized to 0-1, this line has {largest:g}" if largest > 2 else ""
        box = _check_box(*raw, width, height, where, hint)
        if box is None:
            dropped.append(where)
            continue
        clipped += _moved(box, raw)
        boxes.append(box)
        labels.append(label)
    if not boxes:
        return _YoloRead(width, height, _empty_boxes(), _empty_labels(), True, dropped, clipped)
    return _YoloRead(
        width, height, np.asarray(boxes, dtype=np.float32), np.asarray(labels, dtype=np.int64), True, dropped, clipped
    )


def _scan_yolo(yaml_file: Path, val_fraction: float, seed: int) -> DetectionDataset:
    data = _load_yaml(yaml_file)
    classes, ids = _yolo_names(data, yaml_file)
    index_of = {cid: i for i, cid in enumerate(ids)}
    if ids == list(range(len(ids))):
        names_hint = f"out of range 0-{len(ids) - 1} ({len(ids)} names in {yaml_file})"
    else:
        names_hint = f"is not one of the ids of the names in {yaml_file} ({_first_few(ids)})"
    bases = _yolo_bases(data, yaml_file)

    train_sources = _split_sources(data, ("train",), ["images/train", "train/images", "train"], bases, yaml_file)
    if train_sources is None:
        raise DatasetError(f"{yaml_file}: no 'train' entry, and no images/train or train/images folder in {bases[-1]}")
    val_defaults = [layout.format(v) for v in VAL_FOLDERS for layout in ("images/{}", "{}/images", "{}")]
    val_sources = _split_sources(data, ("val", "valid", "validation"), val_defaults, bases, yaml_file)

    unreadable: list[tuple[Path, str]] = []

    def images_of(sources: list[Path]) -> list[Path]:
        images = []
        for source in sources:
            found, bad = _list_images(source)
            images += found
            unreadable.extend(bad)
        if not images:
            raise DatasetError(f"no images found in {', '.join(str(s) for s in sources)}")
        return images

    train_images = images_of(train_sources[0])
    val_images = images_of(val_sources[0]) if val_sources is not None else []
    everything = train_images + val_images

    def work(path: Path, size: tuple[int, int, int]) -> _YoloRead:
        return _read_yolo_labels(path, size, index_of, names_hint)

    reads = _read_headers(everything, work)
    samples: list[Sample | None] = []
    without_labels: list[Path] = []
    dropped: list[str] = []
    clipped = 0
    any_label_file = False
    for image_id, (path, read) in enumerate(zip(everything, reads)):
        if isinstance(read, Exception):
            unreadable.append((path, str(read)))
            samples.append(None)
            continue
        any_label_file |= read.has_labels
        if not read.has_labels:
            without_labels.append(path)
        dropped += read.dropped
        clipped += read.clipped
        samples.append(Sample(path, read.width, read.height, read.boxes, read.labels, image_id))
    train_where = ", ".join(str(p) for p in train_sources[0])
    if not any_label_file:
        looked = label_path(train_images[0]).parent
        raise DatasetError(
            f"no label files found for the images in {train_where}: looked in {looked} "
            f"(each image's .txt, the last images/ folder of its path replaced by labels/)"
        )
    train = [s for s in samples[: len(train_images)] if s is not None]
    val = [s for s in samples[len(train_images) :] if s is not None]
    if not train:
        raise DatasetError(f"no readable images in {train_where}")
    if not any(len(s.labels) for s in train):
        raise DatasetError(f"no objects in the label files of the images in {train_where} (nothing to train on)")
    if val_sources is None:
        train, val = _hold_out(train, val_fraction, seed, train_where)
        val_source = f"{val_fraction:.0%} of {train_sources[1]} (seed {seed})"
    else:
        val_source = val_sources[1]
        if not val:
            raise DatasetError(f"no readable images in {', '.join(str(p) for p in val_sources[0])}")

    notes = _count_note("images without a label file (no objects)", without_labels)
    notes += _box_notes(dropped, clipped) + _unreadable_note(unreadable)
    return DetectionDataset(classes, train, val, "yolo", val_source, notes, ids, unreadable)


# ---------------------------------------------------------------------------- COCO


def _coco_split(json_file: Path) -> str | None:
    """'train' or 'val' from an annotation file's name, None for other splits (test, ...)."""
    if json_file.name == _ROBOFLOW_COCO_JSON:
        name = json_file.parent.name.lower()
    else:
        name = json_file.stem.lower().removeprefix("instances_")
    if name.startswith("train"):
        return "train"
    if name.startswith("val"):  # val, val2017, valid, validation
        return "val"
    return None


def _find_coco_jsons(root: Path) -> dict[str, Path]:
    """{'train': json, 'val': json} found in annotations/, the root, or Roboflow's split folders."""
    found: dict[str, list[Path]] = {}
    candidates = sorted((root / "annotations").glob(_COCO_JSON_GLOB)) + sorted(root.glob(_COCO_JSON_GLOB))
    candidates += [root / s / _ROBOFLOW_COCO_JSON for s in ("train", *VAL_FOLDERS)]
    for path in candidates:
        if path.is_file():
            split = _coco_split(path)
            if split is not None:
                found.setdefault(split, []).append(path)
    for split, paths in found.items():
        if len(paths) > 1:
            raise DatasetError(f"several {split} annotation files in {root}: {', '.join(str(p) for p in paths)}")
    if found and "train" not in found:
        raise DatasetError(f"no train annotations in {root} (expected annotations/instances_train*.json)")
    return {split: paths[0] for split, paths in found.items()}


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: no '{key}' list (not COCO instances annotations)")
    return data


def _coco_categories(data: dict, json_file: Path) -> dict[int, str]:
    """Category id -> name, ascending ids."""
    categories = {}
    for number, cat in enumerate(data["categories"]):
        try:
            categories[int(cat["id"])] = str(cat["name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{json_file}: category {number} needs an integer 'id' and a 'name'") from None
    if not categories:
        raise DatasetError(f"{json_file}: 'categories' is empty")
    return dict(sorted(categories.items()))


def _coco_image_folder(json_file: Path, root: Path, first_file: str) -> Path:
    """Where a COCO json's images are: images/<split>/, <split>/, images/, or the json's folder
    (the first one holding the first listed image)."""
    roboflow = json_file.name == _ROBOFLOW_COCO_JSON
    split = json_file.parent.name if roboflow else json_file.stem.removeprefix("instances_")
    candidates = list(dict.fromkeys([root / "images" / split, root / split, root / "images", json_file.parent]))
    for folder in candidates:
        if (folder / first_file).is_file():
            return folder
    raise DatasetError(
        f"{json_file}: images not found: looked for {first_file} in {', '.join(str(c) for c in candidates)}"
    )


# Where a stored-frame point (x, y) of a w x h image lands in the upright picture, for the EXIF
# orientations that swap width and height (the transposes imageio applies).
_UPRIGHT_POINT = {
    5: lambda x, y, w, h: (y, x),  # transpose
    6: lambda x, y, w, h: (h - y, x),  # rotated 90 degrees clockwise to show upright
    7: lambda x, y, w, h: (h - y, w - x),  # transverse
    8: lambda x, y, w, h: (y, w - x),  # rotated 90 degrees counter-clockwise
}


def _to_upright(box: tuple[float, float, float, float], orientation: int, stored_w: int, stored_h: int):
    x1, y1, x2, y2 = box
    turn = _UPRIGHT_POINT[orientation]
    (ax, ay), (bx, by) = turn(x1, y1, stored_w, stored_h), turn(x2, y2, stored_w, stored_h)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


@dataclass
class _CocoSplit:
    samples: list[Sample]
    unreadable: list[tuple[Path, str]]
    without_objects: list[Path]
    crowd: int
    dropped: list[str]
    clipped: int


def _read_coco_split(json_file: Path, data: dict, root: Path, index_of: dict[int, int]) -> _CocoSplit:
    if not data["images"]:
        raise DatasetError(f"{json_file}: 'images' is empty")
    images: dict[int, dict] = {}
    for number, image in enumerate(data["images"]):
        try:
            images[int(image["id"])] = image
            str(image["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{json_file}: image {number} needs an integer 'id' and a 'file_name'") from None
    folder = _coco_image_folder(json_file, root, str(data["images"][0]["file_name"]))
    ids = list(images)
    paths = [folder / str(images[i]["file_name"]) for i in ids]

    sizes = dict(zip(ids, _read_headers(paths, lambda path, size: size)))
    for image_id in ids:
        if getattr(sizes[image_id], "reason", None) == "file not found":
            raise DatasetError(f"{json_file}: image {image_id} ({images[image_id]['file_name']}) not found in {folder}")
    unreadable = [(p, str(sizes[i])) for i, p in zip(ids, paths) if isinstance(sizes[i], Exception)]

    # Which frame each image's annotations are in. Annotation tools show pictures upright, so
    # boxes are normally in the upright frame; a json whose width/height are the stored sides
    # of a sideways-stored photo was drawn on the stored pixels, and its boxes are turned.
    turned: dict[int, tuple[int, int, int]] = {}
    for image_id, path in zip(ids, paths):
        size = sizes[image_id]
        if isinstance(size, Exception):
            continue
        width, height, orientation = size
        jw, jh = images[image_id].get("width"), images[image_id].get("height")
        if jw is None or jh is None or (jw, jh) == (width, height):
            continue
        if orientation in _UPRIGHT_POINT and (jw, jh) == (height, width):
            turned[image_id] = (orientation, height, width)
            continue
        raise DatasetError(
            f"{json_file}: image {image_id} ({images[image_id]['file_name']}) is {width}x{height}, "
            f"the annotations say {jw}x{jh}"
        )

    boxes: dict[int, list] = {i: [] for i in ids}
    crowd_boxes: dict[int, list] = {i: [] for i in ids}
    dropped, clipped, crowd = [], 0, 0
    known = f"ids {_first_few(list(index_of))}"
    for number, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id", number) if isinstance(ann, dict) else number
        where = f"{json_file}: annotation {ann_id}"
        if not isinstance(ann, dict):
            raise DatasetError(f"{where}: expected an object with image_id, category_id and bbox")
        image_id = ann.get("image_id")
        if image_id not in images:
            raise DatasetError(f"{where}: image_id {image_id} is not in the file's images")
        category = ann.get("category_id")
        if category not in index_of:
            raise DatasetError(f"{where}: category_id {category} is not one of the categories ({known})")
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in bbox)
        ):
            raise DatasetError(f"{where}: expected 'bbox': [x, y, width, height] in pixels, got {bbox!r}")
        size = sizes[image_id]
        if isinstance(size, Exception):
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise DatasetError(f"{where}: negative bbox size {bbox!r} (expected [x, y, width, height])")
        raw = (x, y, x + w, y + h)
        width, height, _ = size
        if image_id in turned:
            orientation, stored_w, stored_h = turned[image_id]
            raw = _to_upright(raw, orientation, stored_w, stored_h)
        where = f"{where} (image {images[image_id]['file_name']})"
        box = _check_box(*raw, width, height, where)
        if box is None:
            dropped.append(f"{json_file.name} annotation {ann_id}")
            continue
        if ann.get("iscrowd", 0):
            crowd += 1
            crowd_boxes[image_id].append((box, category))
            continue
        clipped += _moved(box, raw)
        boxes[image_id].append((box, category))

    samples, without_objects = [], []
    for image_id, path in zip(ids, paths):
        size = sizes[image_id]
        if isinstance(size, Exception):
            continue
        width, height, _ = size
        objects, crowds = boxes[image_id], crowd_boxes[image_id]
        if not objects:
            without_objects.append(path)
        categories = np.asarray([c for _, c in objects], dtype=np.int64)
        sample = Sample(
            path, width, height,
            np.asarray([b for b, _ in objects], dtype=np.float32).reshape(-1, 4),
            np.asarray([index_of[c] for c in categories.tolist()], dtype=np.int64),
            image_id, categories,
            np.asarray([b for b, _ in crowds], dtype=np.float32).reshape(-1, 4),
            np.asarray([index_of[c] for _, c in crowds], dtype=np.int64),
        )
        samples.append(sample)
    return _CocoSplit(samples, unreadable, without_objects, crowd, dropped, clipped)


def _scan_coco(root: Path, jsons: dict[str, Path], val_fraction: float, seed: int) -> DetectionDataset:
    train_json = jsons["train"]
    train_data = _load_json(train_json)
    categories = _coco_categories(train_data, train_json)
    index_of = {cid: i for i, cid in enumerate(categories)}
    splits = {"train": _read_coco_split(train_json, train_data, root, index_of)}
    if "val" in jsons:
        val_json = jsons["val"]
        val_data = _load_json(val_json)
        if _coco_categories(val_data, val_json) != categories:
            raise DatasetError(f"{val_json}: categories differ from those of {train_json} (ids and names must match)")
        splits["val"] = _read_coco_split(val_json, val_data, root, index_of)
    if not any(len(s.labels) for s in splits["train"].samples):
        raise DatasetError(f"{train_json}: no annotations (no boxes to train on)")
    train = splits["train"].samples
    if not train:
        raise DatasetError(f"no readable images listed in {train_json}")
    if "val" in splits:
        val, val_source = splits["val"].samples, jsons["val"].name
        if not val:
            raise DatasetError(f"no readable images listed in {jsons['val']}")
    else:
        train, val = _hold_out(train, val_fraction, seed, str(train_json))
        val_source = f"{val_fraction:.0%} of {train_json.name} (seed {seed})"

    parts = list(splits.values())
    without = sum((s.without_objects for s in parts), [])
    dropped = sum((s.dropped for s in parts), [])
    crowd = sum(s.crowd for s in parts)
    clipped = sum(s.clipped for s in parts)
    unreadable = sum((s.unreadable for s in parts), [])
    notes = _count_note("images without annotations (no objects)", without)
    if crowd:
        notes.append(f"crowd regions (iscrowd 1), not training targets; evaluation ignores detections in them: {crowd}")
    notes += _box_notes(dropped, clipped) + _unreadable_note(unreadable)
    return DetectionDataset(
        list(categories.values()), train, val, "coco", val_source, notes, list(categories), unreadable
    )
