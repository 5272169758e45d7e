"""What a task brings to the training engine: its data, model, batches, loss and metrics.

The engine (engine.py) owns everything the tasks share: processes, seeds, the optimizer and
schedule, mixed precision, the loop, resume, early stopping, the run folder and checkpoints.
A task's training module subclasses `TaskTraining`; the task object names it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from visiontool.errors import UsageError
from visiontool.preprocess import Preprocess


# Each task's training module, which defines `Training` (a TaskTraining).
MODULES = {"classify": "visiontool.train.classify", "detect": "visiontool.train.detect",
           "segment": "visiontool.train.segment",
           "stylize": "visiontool.train.stylize"}


def training_for(task: str) -> type["TaskTraining"]:
    if task not in MODULES:
        raise UsageError(f"--task {task}: unknown (known: {', '.join(MODULES)})")
    return importlib.import_module(MODULES[task]).Training


# TrainConfig fields that only some tasks read; each TaskTraining names those it does in `reads`
TASK_OPTIONS = ("pretrained", "augment", "crop_scale", "label_smoothing", "style_image", "content_weight", "style_weight",
                "tv_weight", "loss_net", "width", "scales", "guided_filter")


def refuse_unread_options(task: str, given: list[str]) -> None:
    """An option typed for a task that never reads it is an error, not a silent no-op."""
    for name in TASK_OPTIONS:
        if name in given and name not in training_for(task).reads:
            readers = [t for t in MODULES if name in training_for(t).reads]
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} does not apply to --task {task} (it is for --task {', '.join(readers)})")


class TaskTraining:
    task = ""  # the checkpoint's task
    columns: tuple[str, ...] = ()  # results.csv columns between epoch and lr
    best_metric = ""  # the row key that picks best.safetensors (see `score`)
    train_sums = 1  # how many running sums `loss` returns (the first is the loss sum)
    default_model = ""  # --model when none is given ("": it must be given)
    grad_clip: float | None = None  # clip the gradient norm to this (None: no clipping)
    default_batch_size = 64  # --batch-size when none is given
    option_defaults: dict = {}  # TrainConfig fields left None -> this task's value for them
    reads: frozenset[str] = frozenset({"pretrained"})  # the TASK_OPTIONS this task reads
    use_as = "--model"  # how the task's command takes a checkpoint (for the run's last line)

    # Filled in by __init__(cfg, dist, device, say): data decoded, model built.
    module: nn.Module
    arch: str
    arch_kwargs: dict
    labels: list[str]
    preprocess: Preprocess  # how the checkpoint sees images (what inference will feed it)
    n_train: int  # training samples; an epoch is n_train // batch global batches

    @property
    def image_size(self) -> int:
        """The side the model trains at (config.json records it)."""
        return self.preprocess.crop

    def describe(self) -> str:
        """The run's first line: model, data, sizes."""
        raise NotImplementedError

    def epoch_params(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, k) random numbers for the n samples of an epoch's global batches, drawn from the
        epoch's generator, so a torchrun job augments each sample as one process would."""
        raise NotImplementedError

    def batch(self, idx: torch.Tensor, params: torch.Tensor, device) -> tuple[torch.Tensor, object]:
        """This rank's slice of a global batch: (model input on `device`, targets)."""
        raise NotImplementedError

    def forward(self, net: nn.Module, x, targets):
        """The training forward pass (a model that computes its losses inside takes the targets)."""
        return net(x)

    def loss(self, outputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, (train_sums,) float64 running sums for the epoch row)."""
        raise NotImplementedError

    def train_row(self, sums: list[float], seen: int) -> dict:
        return {"train_loss": sums[0] / seen}

    def evaluate(self, module: nn.Module, batch_size: int, amp_dtype) -> tuple[dict, object]:
        """(row values of the validation split, what the final plots need of this epoch)."""
        raise NotImplementedError

    def score(self, row: dict) -> float:
        """The value best.safetensors is picked by, higher is better (a loss returns its negative)."""
        return row[self.best_metric]

    def epoch_line(self, row: dict) -> str:
        raise NotImplementedError

    def epoch_pictures(self, run_dir: Path, row: dict) -> list[str]:
        """Pictures written after every epoch (main process only); returns their file names."""
        return []

    def best_line(self, score: float) -> str:
        return f"best {self.best_metric} {score:.4g}"

    def plots(self, run_dir: Path, rows: list[dict], best: object, best_epoch: int) -> list[str]:
        """Write the run's pictures; returns their file names."""
        return []

    def meta(self) -> dict:
        """Checkpoint metadata besides the training command and options."""
        return {"arch": self.arch, "task": self.task, "num_classes": len(self.labels), "labels": list(self.labels),
                "preprocess": self.preprocess.to_dict(), "arch_kwargs": self.arch_kwargs}


def weights_to_start_from(model: str):
    """(`model`'s registry spec, None for a file; whether training starts from the weights
    `model` carries). A checkpoint file or a shipped model is fine-tuned; an architecture
    starts new (or from its published weights with --pretrained)."""
    from visiontool import checkpoint, weights
    from visiontool.errors import UsageError
    from visiontool.models import registry

    path = Path(model)
    if path.suffix.lower() in (".safetensors", ".pth", ".pt") or path.is_file():
        # A file that is not what it seems (an image, a table) is named by the loader; a plain
        # state_dict is named here, since train has no --weights to give it with.
        if path.is_file() and weights.wrong_file_message(path, "--model") is None and checkpoint.read_meta(path) is None:
            raise UsageError(f"{path} records no architecture (not a checkpoint written by `train`): train "
                             "starts from such a checkpoint, a shipped model, or an architecture name "
                             "(with --pretrained for its published weights)")
        return None, True
    spec = registry.get_spec(model)
    return spec, spec.shipped_file is not None


def require_task(name: str, its_task: str, task: str, example: str = "") -> None:
    """Refuse a model of another task than the one `train --task` trains, naming both ways out."""
    if its_task != task:
        e_g = f"e.g. {example}; " if example else ""
        raise UsageError(f"{name} is a {its_task} model: train it with --task {its_task}, or give `train --task "
                         f"{task}` a {task} model ({e_g}`visiontool models --task {task}`)")


def spec_and_start(model: str, task: str, example: str = ""):
    """(the registry spec of `model`'s architecture, what training starts from: `model` for a
    checkpoint file or a shipped model, fine-tuned; None for an architecture, which starts new).
    A model of another task than `task` is refused."""
    from visiontool import checkpoint
    from visiontool.models import registry
    from visiontool.models.loader import load_model

    spec, fine_tune = weights_to_start_from(model)
    if spec is None:  # a checkpoint: its architecture
        meta = checkpoint.read_meta(model) if Path(model).is_file() else None
        if meta is None:
            load_model(model)  # not a checkpoint: this raises what the file is and what to pass instead
        spec = registry.get_spec(meta["arch"])
    require_task(spec.name, spec.task, task, example)
    return spec, model if fine_tune else None


def fine_tune_line(model: str, outputs: int) -> str:
    """The line that opens a run fine-tuning `model` (a checkpoint or a shipped model, both
    checkpoint files) into a network with `outputs` classes."""
    from visiontool import checkpoint

    spec, _ = weights_to_start_from(model)
    before = int((checkpoint.read_meta(spec.shipped_file if spec is not None else model) or {})["num_classes"])
    head = f"head included ({outputs} classes)" if before == outputs else f"with a new head for {outputs} classes"
    return f"fine-tuning from {model}, {head}"


def check_input_size(module: nn.Module, arch: str, size: int, channels: int, device) -> None:
    """One dry forward pass, so an input size the architecture cannot take is a clear usage
    error now rather than a shape error in the middle of the first epoch."""
    from visiontool.errors import UsageError, one_line

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, size, size, device=device))
    except RuntimeError as err:
        raise UsageError(f"{arch} cannot take {size}x{size} inputs ({one_line(err)}): choose another --image-size") from None
    finally:
        module.train(was_training)


class Normalize:
    """uint8-range float images -> the model's normalized input, channels_last."""

    def __init__(self, pp: Preprocess, device):
        std = torch.tensor(pp.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(pp.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.scale - self.shift).contiguous(memory_format=torch.channels_last)
