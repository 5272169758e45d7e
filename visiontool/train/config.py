"""The resolved options of one training run, as a typed dataclass.

The CLI maps its options onto `TrainConfig`; library code only ever sees this object.
`config.json` in the run folder is `asdict(config)` after `resolve()` has filled in defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from visiontool.errors import UsageError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("cosine", "step", "none")
AUGMENTS = ("none", "light", "randaugment", "trivialaugment")

# Learning rate and weight decay when not given, per optimizer, for a global batch of 64 and
# training from scratch. SGD's rate scales linearly with the batch (Goyal et al., 2017), the
# adaptive optimizers' with its square root; fine-tuning pretrained weights uses a fifth.
DEFAULT_LR = {"sgd": 0.05, "adam": 5e-3, "adamw": 5e-3, "rmsprop": 1e-3}
DEFAULT_WD = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.05, "rmsprop": 1e-5}
REFERENCE_BATCH = 64
PRETRAINED_LR_SHARE = 0.2

# Options that may be changed when a run is resumed; the rest define the run.
RESUME_OVERRIDES = ("epochs", "patience", "device", "workers", "quiet")


@dataclass
class TrainConfig:
    task: str = "classify"  # classify | detect | segment | stylize: what the model learns, and the dataset's layout
    data: str = ""  # dataset root: DATA/train/<class>/... or DATA/<class>/... (classify), a YOLO or COCO
    # dataset (detect), DATA/train/images and masks (segment), a folder of content images (stylize)
    model: str = ""  # registry architecture name (see `visiontool models`)
    pretrained: bool = False  # start from the architecture's ImageNet weights, new head
    epochs: int = 10  # passes over the training split
    batch_size: int | None = None  # GLOBAL batch, split evenly over the processes of a torchrun job;
    # None: the task's default (64 for classify, 16 for detect)
    image_size: int | None = None  # side of the square the model sees; None: the model's own
    optimizer: str = "adamw"  # sgd | adam | adamw | rmsprop
    lr: float | None = None  # peak learning rate; None: per-optimizer default scaled by batch
    momentum: float = 0.9  # sgd and rmsprop momentum
    nesterov: bool = False  # Nesterov momentum for sgd
    weight_decay: float | None = None  # None: per-optimizer default; never on norms and biases
    scheduler: str = "cosine"  # cosine | step (x0.1 at 50% and 75%) | none, per iteration
    warmup_epochs: float = 1.0  # linear warm-up from 10% of the peak lr, in epochs
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    augment: str = "light"  # none | light (random resized crop + flip) | randaugment | trivialaugment
    crop_scale: float = 0.25  # smallest share of the image a random crop keeps (light and policies)
    flip: bool = True  # random horizontal flips; turn off for digits, text, anything with a handedness
    amp: bool | None = None  # mixed precision; None: on for CUDA (fp16), off on CPU (bf16 if True)
    patience: int = 0  # stop after this many epochs without a better best-epoch score (TaskTraining.best_metric); 0: never
    seed: int = 0  # seeds weights init, split, sampling and augmentation
    val_fraction: float = 0.2  # share of each class held out when DATA has no val/ folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int | None = None  # image decoding threads; None: one per core
    out: str | None = None  # run folder; None: runs/train/<model>-N
    # stylize only (None: the task's default, TaskTraining.option_defaults)
    style_image: str | None = None  # the picture whose style the network learns
    content_weight: float | None = None  # weight of the content loss
    style_weight: float | None = None  # weight of the style (Gram) loss
    tv_weight: float | None = None  # weight of the total-variation loss (smoothness of the output)
    loss_net: str | None = None  # auto | vgg16 | vgg19 | random: the network the losses are measured with
    width: int | None = None  # channels of the first layer (stylize: 32, Johnson et al.'s; segment's UNet: 16)
    # segment only
    scales: str | None = None  # "0.75,1,1.25": the scales the checkpoint segments at; None: 1 (or the start's)
    guided_filter: int | None = None  # its guided filter's radius, px; 0: none; None: none (or the start's)
    quiet: bool = False  # no progress bars or per-epoch lines
    command: str = ""  # the command line that started the run, for command.txt and checkpoints

    def resolve(self) -> "TrainConfig":
        """Check values and fill in defaults that depend on other options."""
        if not self.data:
            raise UsageError("missing DATA: the dataset folder (DATA/<class>/<image> or DATA/train/<class>/<image> "
                             "for classify, a YOLO or COCO dataset for detect, DATA/train/images and masks for "
                             "segment, a folder of content images for stylize)")
        from visiontool.train.job import training_for

        job = training_for(self.task)
        # the task's own defaults for options left unset (a style network: no weight decay, ...)
        self = replace(self, **{k: v for k, v in job.option_defaults.items() if getattr(self, k) is None})
        model = self.model or job.default_model
        batch_size = self.batch_size or job.default_batch_size
        if not model:
            raise UsageError("missing --model: an architecture name, e.g. resnet18 (see `visiontool models`)")
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--scheduler", self.scheduler, SCHEDULERS)
        _choice("--augment", self.augment, AUGMENTS)
        if self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.image_size is not None and self.image_size < 8:
            raise UsageError("--image-size must be at least 8")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError("--val-fraction must be between 0 and 1 (exclusive)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError("--label-smoothing must be in [0, 1)")
        if not 0.0 < self.crop_scale <= 1.0:
            raise UsageError("--crop-scale must be in (0, 1]")
        if self.warmup_epochs < 0 or self.patience < 0:
            raise UsageError("--warmup-epochs and --patience cannot be negative")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if (getattr(self, name) or 0.0) < 0:
                raise UsageError(f"--{name.replace('_', '-')} cannot be negative")
        if self.width is not None and self.width < 1:
            raise UsageError("--width must be at least 1")
        if self.scales is not None:
            from visiontool.tasks.segment import checked_scales

            try:
                checked_scales(self.scales)
            except ValueError as err:
                raise UsageError(f"--scales: {err}") from None
        if self.guided_filter is not None:
            from visiontool.tasks.segment import checked_guided_radius

            try:
                checked_guided_radius(self.guided_filter)
            except ValueError as err:
                raise UsageError(f"--guided-filter: {err}") from None
        lr = self.lr if self.lr is not None else default_lr(self.optimizer, batch_size, self.pretrained)
        if lr <= 0:
            raise UsageError("--lr must be positive")
        wd = DEFAULT_WD[self.optimizer] if self.weight_decay is None else self.weight_decay
        if wd < 0:
            raise UsageError("--weight-decay cannot be negative")
        return replace(self, model=model, batch_size=batch_size, lr=lr, weight_decay=wd)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: Path) -> None:
        from visiontool.fsutil import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def resolved_workers(workers: int | None, processes_per_machine: int = 1) -> int:
    """Decoding threads: as given, else one per core shared by the processes of a machine."""
    import os

    return workers or max(1, (os.cpu_count() or 1) // processes_per_machine)


def default_lr(optimizer: str, batch_size: int, pretrained: bool) -> float:
    ratio = batch_size / REFERENCE_BATCH
    lr = DEFAULT_LR[optimizer] * (ratio if optimizer == "sgd" else ratio**0.5)
    return lr * (PRETRAINED_LR_SHARE if pretrained else 1.0)


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{option} must be one of {', '.join(allowed)} (got {value!r})")
