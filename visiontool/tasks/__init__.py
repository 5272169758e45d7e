"""Tasks: what differs between classify, detect, segment and stylize, in one object each.

A task turns a model's outputs into rows and shows them; the shared parts (sources, pipeline,
backends, runner, writers) call these methods and never ask which task they serve:

    fields                      the row's own fields (error rows carry them as null)
    postprocess(outputs, batch, info) -> one dict of those fields per decoded image
    csv_columns(), csv_rows(row)      the CSV form: a fixed header, one or more lines per row
    headline(row)               a one-word summary for the end-of-run counts (or None)
    table(rows, info)           the terminal table for a handful of images
    keep_images / save(path, row, image)  pictures of a decoded image (annotated images)
    finish(ok)                  close what the task writes besides rows (kept only when ok)
    cannot_resume()             why --resume/--shard cannot work with its options (or None)
    skip(path)                  an input done by an earlier run (--resume): reserve its names
    export_outputs(info), export_batch(info, batch), compare(pairs, info, precision, min_agreement)
                                the ONNX graph's outputs and the rule that verifies them
    open_model(...), check_model(info, model)   what runs the images, and whether it suits the task

Importing this package imports no torch; task modules import theirs when a model runs.
"""

from __future__ import annotations

from visiontool.errors import UsageError

# name -> "module:Class" of its task object
TASKS = {"classify": "visiontool.tasks.classify:Classify", "detect": "visiontool.tasks.detect:Detect",
         "segment": "visiontool.tasks.segment:Segment",
         "stylize": "visiontool.tasks.stylize:Stylize"}


def create(name: str, **options) -> "Task":
    """The task object for a model's task (export and val make them with default options)."""
    import importlib

    if name not in TASKS:
        raise UsageError(f"task {name!r}: unknown (known: {', '.join(TASKS)})")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


class Task:
    """Defaults shared by every task."""

    name = ""
    fields: tuple[str, ...] = ()
    keep_images = False  # True: batches carry the decoded images for save()
    export_precisions = ("fp32",)  # what `export` may write (fp16, int8-dynamic, int8-static)

    def postprocess(self, outputs: list, batch, info) -> list[dict]:
        raise NotImplementedError

    def csv_columns(self) -> list[str]:
        raise NotImplementedError

    def csv_rows(self, row: dict) -> list[dict]:
        raise NotImplementedError

    def headline(self, row: dict) -> str | None:
        return None

    def table(self, rows: list[dict], info):
        raise NotImplementedError

    def save(self, path: str, row: dict, image) -> None:
        """Write the pictures of one decoded image (keep_images tasks only)."""

    def finish(self, ok: bool) -> None:
        """The run ended (ok: every row was produced); side files are completed or dropped."""

    def skip(self, path: str) -> None:
        """`path` already has its row from an earlier run (--resume): it is not processed again,
        but what the task hands out per input in input order (picture names) is reserved for it."""

    def cannot_resume(self) -> str | None:
        """Why this task's side outputs cannot be built over several runs or shares (an option
        to leave out), or None: --resume and --shard then refuse to start."""
        return None

    def export_outputs(self, info) -> dict[str, str]:
        """The exported graph's outputs: name -> how to read it (stored in the metadata)."""
        raise NotImplementedError

    def export_batch(self, info, batch: int | None) -> int | None:
        """The batch size the graph can have (None: dynamic), given the one asked for."""
        return batch

    def compare(self, pairs: list, info, precision: str, min_agreement: float | None) -> dict:
        """Export verification: [(PyTorch outputs, onnxruntime outputs, counted)] per run ->
        {"max_abs_diff", "top1_agreement", "passed", "criterion"}."""
        raise NotImplementedError

    def open_model(self, model: str, weights: str | None, backend: str | None, device: str, offline: bool,
                   quiet: bool, images: int | None = None, image_size: int | None = None):
        """(runner, ModelInfo) for a run: the network `model` names, on its backend. A task whose
        runs need more than a network file (stylize: a style image to optimise towards, a scale)
        opens its own."""
        from visiontool.backends import open_model

        return open_model(model, weights, backend, device, offline, quiet, images=images, image_size=image_size)

    def check_model(self, info, model: str) -> None:
        if info.task != self.name:
            raise UsageError(f"--model {model} is a {info.task} model; `{self.name}` needs a {self.name} model")
