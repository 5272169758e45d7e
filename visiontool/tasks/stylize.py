"""Neural style transfer: every image painted in a style, written as a picture.

Row (README, "Output schema"): {"path", "output", "width", "height", "error"}; `output` is the
painted picture's path (in --save-dir, the input's stem; JPEG for JPEG inputs, else PNG) and
width x height its size: the content image's own, or with --size the shorter side at N.

Two methods, told apart by what --style names:
- fast: a style network (stylenet, Johnson et al. 2016) paints each batch in one pass: a
  shipped style's name, a checkpoint of `train --task stylize`, or its .onnx export (which runs
  without torch);
- optimize: a style image; each picture is optimised from the content image towards the style
  image's Gram matrices under a loss network (Gatys et al. 2016; style_optimize.py).
Then --preserve-color keeps the input's colours (only the painted luminance is kept) and
--strength blends the painting with the input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from visiontool.errors import UsageError
from visiontool.tasks import Task

METHODS = ("fast", "optimize")
CSV_COLUMNS = ["path", "output", "width", "height", "error"]
PIXEL_TOLERANCE = 1 / 255  # export verification: a pixel agrees when within one 8-bit level ...
MIN_PIXEL_SHARE = 0.99  # ... and this share of each image's pixels must agree
MAX_STYLE_SIDE = 512  # a larger style image is shrunk to this shorter side (optimize)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as in YCbCr
_MODEL_SUFFIXES = {".onnx", ".safetensors", ".pth", ".pt", ".bin", ".ckpt"}


class Stylize(Task):
    name = "stylize"
    fields = ("output", "width", "height")

    def __init__(self, method: str | None = None, size: int | None = None, strength: float = 1.0,
                 preserve_color: bool = False, steps: int = 100, content_weight: float = 1.0,
                 style_weight: float = 100.0, tv_weight: float = 0.0, optimizer: str = "lbfgs",
                 loss_net: str = "auto", save_dir: str | Path = "stylized") -> None:
        if method is not None and method not in METHODS:
            raise UsageError(f"--method {method}: unknown (use {' or '.join(METHODS)})")
        if not 0.0 <= strength <= 1.0:
            raise UsageError(f"--strength {strength}: must lie in [0, 1]")
        if size is not None and size < 8:
            raise UsageError(f"--size {size}: too small (8 or more)")
        if steps < 1 or min(content_weight, style_weight, tv_weight) < 0:
            raise UsageError("--steps must be at least 1 and the loss weights at least 0")
        self.method, self.size, self.strength, self.preserve_color = method, size, strength, preserve_color
        self.steps, self.optimizer, self.loss_net = steps, optimizer, loss_net
        self.weights = (content_weight, style_weight, tv_weight)
        self.save_dir = Path(save_dir)
        self._names = None

    def open_model(self, model, weights, backend, device, offline, quiet, images=None, image_size=None):
        """`model` is --style: a style network (fast) or a style image (optimize)."""
        is_image = _is_style_image(model)
        method = self.method or ("optimize" if is_image else "fast")
        if method == "fast" and is_image:
            raise UsageError(f"--style {model} is an image: --method fast needs a style network (a shipped "
                             f"style, a checkpoint of `train --task stylize` or its .onnx); to optimise "
                             f"towards the image, use --method optimize")
        if method == "optimize" and not is_image:
            raise UsageError(f"--method optimize needs a style image as --style, not {model}")
        if method == "fast":
            _check_registry_task(model, self.name)
            runner, info = super().open_model(model, weights, backend, device, offline, quiet, images=images)
        else:
            runner, info = self._optimizer(model, weights, backend, device, offline, quiet)
        if self.size is not None:
            info = replace(info, preprocess=replace(info.preprocess, fit="shorter", resize=self.size, crop=self.size))
        return runner, info

    def _optimizer(self, style: str, weights, backend, device, offline, quiet):
        from visiontool.imageio import DecodeError, decode
        from visiontool.modelinfo import ModelInfo
        from visiontool.models.registry import STYLENET_PREPROCESS
        from visiontool.style_loss import loss_network
        from visiontool.style_optimize import OptimizeRunner

        if weights is not None or backend == "onnx":
            raise UsageError("--method optimize runs in PyTorch on a loss network: drop --weights and --backend onnx")
        try:
            image = decode(style, "RGB")
        except DecodeError as err:
            raise UsageError(f"--style {style}: {err}") from None
        prep = replace(STYLENET_PREPROCESS, fit="shorter", resize=MAX_STYLE_SIDE, crop=MAX_STYLE_SIDE)
        array = prep(image) if min(image.size) > MAX_STYLE_SIDE else replace(prep, fit="none")(image)
        net = loss_network(self.loss_net, offline=offline, quiet=quiet)
        runner = OptimizeRunner(net, array, self.steps, *self.weights, self.optimizer, device, quiet)
        info = ModelInfo(arch=f"optimize ({net.name})", task=self.name, labels=[], preprocess=STYLENET_PREPROCESS,
                         weights_source=f"style image {style}", extra={"name": Path(style).stem})
        return runner, info

    def check_model(self, info, model: str) -> None:
        from visiontool.render import NameKeeper

        super().check_model(info, model)
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"--save-dir {self.save_dir}: cannot create it ({err.strerror or err})") from None
        self._names = NameKeeper(self.save_dir)

    def postprocess(self, outputs, batch, info) -> list[dict]:
        from visiontool import render

        painted, inputs = outputs[0], batch.images
        decoded = [p for p, e in zip(batch.paths, batch.errors) if e is None]
        rows = []
        for i, path in enumerate(decoded):
            image = self.adjust(np.asarray(painted[i], dtype=np.float32), np.asarray(inputs[i], dtype=np.float32))
            out = render.save_image(self._names.name(path), to_uint8(image))
            rows.append({"output": str(out), "width": int(image.shape[2]), "height": int(image.shape[1])})
        return rows

    def adjust(self, painted: np.ndarray, content: np.ndarray) -> np.ndarray:
        """--preserve-color, then --strength: CHW in [0, 1] -> CHW in [0, 1]."""
        if self.preserve_color:
            painted = preserve_color(painted, content)
        if self.strength < 1.0:
            painted = self.strength * painted + (1.0 - self.strength) * content
        return painted

    def export_outputs(self, info) -> dict[str, str]:
        return {"image": "(N, 3, H, W) RGB in [0, 1], the input's size"}

    def compare(self, pairs, info, precision: str, min_agreement: float | None) -> dict:
        """Every image: at least MIN_PIXEL_SHARE of its pixel values within PIXEL_TOLERANCE."""
        worst, shares = 0.0, []
        for want, got, counted in pairs:
            for a, b in zip(want[0], got[0]):
                diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
                worst = max(worst, float(diff.max()))
                if counted:
                    shares.append(float((diff <= PIXEL_TOLERANCE + 1e-7).mean()))
        agree = float(np.mean([s >= MIN_PIXEL_SHARE for s in shares])) if shares else 0.0
        return {"max_abs_diff": worst, "top1_agreement": agree, "passed": agree == 1.0,
                "criterion": f"{precision}: on every image, at least {MIN_PIXEL_SHARE:.0%} of the pixel "
                             f"values within 1/255 of PyTorch's"}

    def csv_columns(self) -> list[str]:
        return CSV_COLUMNS

    def csv_rows(self, row: dict) -> list[dict]:
        return [{c: "" if row.get(c) is None else row[c] for c in CSV_COLUMNS}]

    def table(self, rows, info):
        from rich.table import Table

        from visiontool.sources import short_path

        table = Table("file", "size", "painted", title=f"{info.extra.get('name') or info.arch} ({info.weights_source})")
        for r in rows:
            if r["error"]:
                table.add_row(short_path(r["path"]), "", f"[red]error[/] {r['error']}")
            else:
                table.add_row(short_path(r["path"]), f"{r['width']}x{r['height']}", r["output"])
        return table


def preserve_color(painted: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance transfer (Gatys et al., "Preserving Color in Neural Artistic Style Transfer",
    2016): the painting's luminance with the content's chroma. In YCbCr, keeping Cb and Cr and
    taking Y from the painting adds the same luminance difference to R, G and B."""
    delta = np.tensordot(_LUMA, painted - content, axes=1)
    return np.clip(content + delta[None], 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """CHW float in [0, 1] -> HWC uint8."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def _is_style_image(style: str) -> bool:
    """Whether --style names an image (optimize) rather than a style network (fast)."""
    from visiontool.imageio import looks_like_image
    from visiontool.sources import _IMAGE_SUFFIXES

    path = Path(style)
    if path.suffix.lower() in _MODEL_SUFFIXES:
        return False
    if path.is_file():
        return looks_like_image(path)
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        raise UsageError(f"--style {style}: no such file")
    return False


def _check_registry_task(model: str, task: str) -> None:
    """A registry name of another task fails here, before its weights are looked for."""
    from visiontool.models import loader, registry

    if loader._looks_like_path(model) or Path(model).is_file():
        return
    spec = registry.get_spec(model)
    if spec.task != task:
        raise UsageError(f"--style {model} is a {spec.task} model; stylize needs a style network "
                         f"(`visiontool models --task stylize` lists them) or a style image")
