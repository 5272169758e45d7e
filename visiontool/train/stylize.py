"""Style training's part: a feed-forward style network (StyleNet) learns one style image's look
from a folder of content images with perceptual losses (Johnson et al. 2016).

Every step stylizes a batch of content squares; the loss network (visiontool/style_loss.py)
compares the outputs' features with the inputs' (content) and their Gram matrices with the style
image's (style), plus a total-variation term for smoothness. Validation stylizes the held-out
content images whole (shorter side --image-size), as `stylize` would, and scores them with the
same losses; the best epoch is the one with the lowest validation loss. After every epoch a
contact sheet shows the style image, the held-out images and what the network makes of them.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from visiontool.errors import DatasetError, UsageError
from visiontool.preprocess import Preprocess
from visiontool.train import data as folder_data
from visiontool.train import report
from visiontool.train.config import resolved_workers
from visiontool.train.job import TaskTraining

DEFAULT_MODEL = "stylenet"
MAX_VAL = 8  # held-out images validated and shown each epoch (the first, in name order)
SHEET_CELL = 160  # px per picture in the contact sheets
SHEET_FOLDER = "contact_sheets"


class StylizeTraining(TaskTraining):
    task = "stylize"
    columns = ("train_content", "train_style", "train_loss", "val_content", "val_style", "val_loss")
    best_metric = "val_loss"
    reads = frozenset({"style_image", "content_weight", "style_weight", "tv_weight", "loss_net", "width"})
    train_sums = 3  # content, style, weighted total (sums over images)
    default_model = DEFAULT_MODEL
    # Johnson et al. trained with batch 4 and Adam at 1e-3; the default AdamW rate scaled to
    # batch 4 is 1.25e-3. Weight decay would pull the painting towards grey: none.
    default_batch_size = 4
    option_defaults = {"content_weight": 1.0, "style_weight": 10.0, "tv_weight": 0.0, "loss_net": "auto",
                       "weight_decay": 0.0}
    use_as = "--style"

    def __init__(self, cfg, dist, device, say) -> None:
        from visiontool import style_loss
        from visiontool.models import registry

        self.cfg, self.device = cfg, device
        spec = registry.get_spec(cfg.model)
        if spec.task != self.task or spec.shipped_file is not None:
            raise UsageError(f"{cfg.model} is not a style network architecture; `train --task stylize` trains "
                             f"{DEFAULT_MODEL} (`visiontool models --task stylize`)")
        if not cfg.style_image:
            raise UsageError("train --task stylize needs --style-image IMAGE: the picture whose style it learns")
        self.size = cfg.image_size or spec.preprocess.crop
        self.style_path = Path(cfg.style_image)
        style = _load_style(self.style_path, self.size)

        # --- data: content squares for training, held-out images whole for validation
        train_files, val_files, self.val_source, unreadable = scan_content(cfg.data, cfg.val_fraction, cfg.seed)
        square = Preprocess(crop=self.size, resize=self.size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        workers = resolved_workers(cfg.workers, dist.local_world)
        with say.bar(f"decoding {len(train_files) + len(val_files)} images", len(train_files) + len(val_files)) as advance:
            cache = folder_data.decode_split(folder_data.Split(Path(cfg.data), train_files, [0] * len(train_files)),
                                             square, workers, advance)
            val = [_decode_whole(path, self.size) for path in val_files]
            advance(len(val_files))
        skipped = unreadable + cache.skipped + [(p, err) for p, (_, err) in zip(val_files, val) if err]
        if skipped:
            path, reason = skipped[0]
            say.warn(f"skipped {len(skipped)} unreadable image{'s' * (len(skipped) > 1)} (first: {path}: {reason})")
        self.images = cache.images
        self.val_names = [p.stem for p, (_, err) in zip(val_files, val) if not err]
        self.val_images = [image for image, err in val if not err]
        if not len(self.images):
            raise DatasetError(f"no readable training images in {cfg.data}")
        if not self.val_images:
            raise DatasetError(f"no readable held-out images in {cfg.data} ({self.val_source})")
        self.n_train = len(self.images)

        # --- model and losses
        self.arch = spec.arch
        self.arch_kwargs = {**spec.arch_kwargs, **({"width": cfg.width} if cfg.width else {})}
        torch.manual_seed(cfg.seed)
        self.module = registry.build(self.arch, 3, **self.arch_kwargs).to(device).to(memory_format=torch.channels_last)
        self.preprocess = replace(spec.preprocess, crop=self.size, resize=self.size)
        self.labels = []
        net = style_loss.loss_network(cfg.loss_net, quiet=cfg.quiet, log=say.line).to(device)
        self.loss_net = net.name
        self.perceptual = style_loss.Perceptual(net, _to_tensor(style, device), cfg.content_weight,
                                                cfg.style_weight, cfg.tv_weight)
        self.style_image = style
        self.style_sha256 = hashlib.sha256(self.style_path.read_bytes()).hexdigest()
        self.sheet_outputs: list[np.ndarray] = []

    @property
    def image_size(self) -> int:
        return self.size

    def describe(self) -> str:
        width = self.arch_kwargs.get("width", 32)
        return (f"{self.arch} (width {width}) learning the style of {self.style_path.name}: {self.n_train} content "
                f"images, {len(self.val_images)} held out ({self.val_source}), {self.size}px, loss network "
                f"{self.loss_net}")

    def epoch_params(self, n, generator):
        flip = self.cfg.flip
        return (torch.rand(n, 1, generator=generator) < 0.5) & flip

    def batch(self, idx, params, device):
        images = self.images[idx]
        images = torch.where(params[:, :1, None, None], images.flip(3), images)
        x = images.to(device, non_blocking=True).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        return x, x

    def forward(self, net, x, targets):
        # The loss network runs here, under the engine's mixed precision (Gram matrices are
        # float32 inside style_loss): on a GPU it is most of a step's compute.
        return self.perceptual(net(x), targets)

    def loss(self, outputs, targets):
        with torch.no_grad():
            sums = torch.stack([outputs.content.detach().sum(), outputs.style.detach().sum(),
                                outputs.total.detach().sum()]).double()
        return outputs.total.mean(), sums

    def train_row(self, sums, seen):
        return {"train_content": sums[0] / seen, "train_style": sums[1] / seen, "train_loss": sums[2] / seen}

    def evaluate(self, module, batch_size, amp_dtype):
        """The held-out images one at a time (their sizes differ), as `stylize` paints them."""
        was_training = module.training
        module.eval()
        totals = np.zeros(3)
        outputs = []
        with torch.inference_mode():
            for image in self.val_images:
                x = _to_tensor(image, self.device)
                with torch.autocast(self.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
                    y = module(x)
                    losses = self.perceptual(y, x)
                totals += [float(losses.content), float(losses.style), float(losses.total)]
                outputs.append((y.float()[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
        module.train(was_training)
        self.sheet_outputs = outputs
        content, style, total = (float(v) for v in totals / len(self.val_images))
        return {"val_content": content, "val_style": style, "val_loss": total}, None

    def score(self, row):
        return -row["val_loss"]

    def epoch_line(self, row):
        return (f"train content {row['train_content']:.4f} style {row['train_style']:.4f} loss {row['train_loss']:.4f}  "
                f"val content {row['val_content']:.4f} style {row['val_style']:.4f} loss {row['val_loss']:.4f}")

    def best_line(self, score):
        return f"best val loss {-score:.4f}"

    def epoch_pictures(self, run_dir, row):
        name = f"{SHEET_FOLDER}/epoch_{row['epoch']:03d}.png"
        (Path(run_dir) / SHEET_FOLDER).mkdir(exist_ok=True)
        contact_sheet(Path(run_dir) / name, self.style_image, self.val_images, self.sheet_outputs, self.val_names,
                      f"epoch {row['epoch']}: val content {row['val_content']:.3f}, style {row['val_style']:.3f}, "
                      f"loss {row['val_loss']:.3f}")
        return [name]

    def plots(self, run_dir, rows, best, best_epoch):
        report.plot_curves(run_dir / "curves.png", rows, loss=self.columns, score=())
        return ["curves.png", f"{SHEET_FOLDER}/"]

    def meta(self):
        return {**super().meta(), "num_classes": 3,  # output channels: what the registry builds it with
                "loss_network": self.loss_net,
                "style": {"image": self.style_path.name, "sha256": self.style_sha256,
                          "weights": {"content": self.cfg.content_weight, "style": self.cfg.style_weight,
                                      "tv": self.cfg.tv_weight}},
                "description": f"style network: the style of {self.style_path.name}"}


Training = StylizeTraining


def contact_sheet(path: Path, style: np.ndarray, inputs: list[np.ndarray], outputs: list[np.ndarray],
                  names: list[str], title: str) -> Path:
    """Style image and held-out inputs on the first row, the stylized inputs under them."""
    from visiontool import render

    grid = [[style, *inputs], [None, *outputs]]
    tags = [["style", *names], [None, *(["stylized"] * len(outputs))]]
    return render.contact_sheet(grid, path, tags=tags, title=title, cell=SHEET_CELL)


def scan_content(root, val_fraction: float, seed: int) -> tuple[list[Path], list[Path], str, list]:
    """(training images, held-out images, where the held-out ones come from, unreadable files).

    CONTENT_DIR/val/ (or valid/, validation/) holds the held-out images when it exists, and the
    training images are those of train/ (or everything else); without one, a seeded
    --val-fraction of the images, at most MAX_VAL, is held out."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"content folder not found: {root}")
    val_dir = next((root / n for n in folder_data.VAL_FOLDERS if (root / n).is_dir()), None)
    train_dir = root / "train" if (root / "train").is_dir() else root
    found, bad = folder_data.walk_images(train_dir)
    if val_dir is not None:
        val, val_bad = folder_data.walk_images(val_dir)
        bad += val_bad
        train = [p for p in found if val_dir not in p.parents]
        if not val:
            raise DatasetError(f"no images in {val_dir}")
        source = f"{val_dir.name}/"
    else:
        if len(found) < 2:
            raise DatasetError(f"{'no' if not found else 'only one'} image in {root}: style training needs "
                               f"content images, some of them held out (or a val/ folder)")
        order = np.random.default_rng(seed).permutation(len(found))
        n_val = min(MAX_VAL, max(1, round(len(found) * val_fraction)))
        held = set(order[:n_val].tolist())
        val = [p for i, p in enumerate(found) if i in held]
        train = [p for i, p in enumerate(found) if i not in held]
        source = f"{n_val} of {len(found)} images (seed {seed})"
    if not train:
        raise DatasetError(f"no training images in {train_dir}")
    return train, val[:MAX_VAL], source, bad


def _decode_whole(path: Path, side: int) -> tuple[np.ndarray | None, str | None]:
    """An image as HxWx3 uint8, its shorter side scaled to `side` (as `stylize --size` does)."""
    from PIL import Image

    from visiontool.imageio import DecodeError, decode

    try:
        img = decode(path, "RGB")
    except DecodeError as err:
        return None, str(err)
    w, h = img.size
    size = Preprocess(crop=side, resize=side).resized_size(w, h)
    if size != img.size:
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img), None


def _load_style(path: Path, side: int) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"--style-image {path}: no such file")
    image, error = _decode_whole(path, side)
    if image is None:
        raise UsageError(f"--style-image {path}: {error}")
    return image


def _to_tensor(image: np.ndarray, device) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float in [0, 1] on `device`."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(device).float().div_(255.0)
