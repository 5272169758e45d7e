"""The inference use case, without the CLI: sources + model + task -> rows.

    from visiontool.infer import Inference
    run = Inference(Classify(top_k=3), ["photos/"], model="resnet18", recursive=True)
    for row in run.rows():
        ...

`visiontool.classify(...)` and `visiontool.detect(...)` are the one-call forms. The CLI's
runner adds progress, writers, tables and exit codes around the same object.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterator, Sequence

from visiontool.tasks import Task


class Inference:
    """Expands the sources and opens the model when made; `rows()` runs the pipeline."""

    def __init__(self, task: Task, sources: Sequence[str], model: str, weights: str | None = None,
                 backend: str | None = None, device: str = "auto", offline: bool = False,
                 quiet: bool = True, batch_size: int = 32, workers: int | None = None,
                 exact_decode: bool = False, recursive: bool = False, stdin=None,
                 image_size: int | None = None) -> None:
        from visiontool.sources import expand

        self.task, self.batch_size, self.workers, self.exact_decode = task, batch_size, workers, exact_decode
        self.paths = expand(list(sources), recursive=recursive, stdin=stdin or sys.stdin)
        self.runner, self.info = task.open_model(model, weights, backend, device, offline, quiet,
                                                 images=len(self.paths), image_size=image_size)
        task.check_model(self.info, model)

    def rows(self, on_batch: Callable[[int], None] | None = None,
             paths: Sequence[str] | None = None) -> Iterator[dict]:
        """One row per path, in order: `paths` (default: all the sources' paths)."""
        from visiontool import pipeline

        task, info = self.task, self.info

        def postprocess(outputs, batch):
            rows = task.postprocess(outputs, batch, info)
            decoded = [p for p, e in zip(batch.paths, batch.errors) if e is None]
            for path, row, image in zip(decoded, rows, batch.originals):
                task.save(path, row, image)
            return rows

        empty = dict.fromkeys(task.fields)  # error rows carry the task's fields as null: one schema
        ok = False
        try:
            for row in pipeline.run(self.paths if paths is None else paths, info.preprocess, self.runner, postprocess,
                                    batch_size=self.batch_size, workers=self.workers,
                                    fast_decode=not self.exact_decode, on_batch=on_batch,
                                    keep_images=task.keep_images):
                yield {"path": row["path"], **empty, "error": row["error"]} if row["error"] else row
            ok = True
        finally:
            task.finish(ok)
