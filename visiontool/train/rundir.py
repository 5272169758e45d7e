"""The files of a training run: the folder, config and command, checkpoints each epoch
(best and last, atomically), and state.pt for --resume (read back with weights_only=True)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from visiontool.errors import UsageError
from visiontool.fsutil import atomic_write
from visiontool.train import report
from visiontool.train.config import TrainConfig

STATE_FILE = "state.pt"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"


@dataclass
class State:
    """What state.pt carries besides model/optimizer/scheduler tensors."""

    epoch: int = 0  # epochs finished
    best_score: float = -math.inf  # the task's score (TaskTraining.score) at best_epoch
    best_epoch: int = 0
    since_best: int = 0  # epochs since best_score improved (for --patience)
    best: object = None  # what the task's plots need of the best epoch (e.g. a confusion matrix)
    rows: list = field(default_factory=list)
    # Stopped inside epoch `epoch` + 1 (Ctrl-C): the steps done, their running sums, and the
    # random state dropout goes on from. 0 / None at an epoch's end.
    step: int = 0
    sums: object = None
    rng: object = None


def prepare_run_dir(cfg: TrainConfig, resume_dir: Path | None, resume_command: str) -> Path:
    if resume_dir is not None:
        with open(resume_dir / "command.txt", "a") as f:
            f.write((resume_command or f"visiontool train --resume {resume_dir}") + "\n")
        cfg.save(resume_dir / "config.json")
        return resume_dir
    if cfg.out:
        run_dir = Path(cfg.out)
        if run_dir.exists() and not finished_no_epoch(run_dir):  # such a run is started over in place
            if (run_dir / STATE_FILE).is_file():
                raise UsageError(f"run folder {run_dir} holds a run: continue it with --resume {run_dir}, "
                                 "or pick another --output")
            raise UsageError(f"run folder {run_dir} is not empty and holds no run to resume: pick another --output")
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        name = Path(cfg.model).stem if Path(cfg.model).suffix else cfg.model
        base = Path("runs") / "train"
        base.mkdir(parents=True, exist_ok=True)
        n = 1
        while True:
            run_dir = base / f"{name}-{n}"
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                n += 1
    cfg = replace(cfg, out=str(run_dir))
    # config.json first: a run killed at any moment leaves an empty folder or one --resume takes
    cfg.save(run_dir / "config.json")
    with atomic_write(run_dir / "command.txt") as tmp:
        tmp.write_text((cfg.command or "visiontool train") + "\n")
    return run_dir


def finished_no_epoch(run_dir: Path) -> bool:
    """Whether `run_dir` is empty or holds only what a run writes before its first epoch ends
    (interrupted then): a rerun with the same --output and --resume both start it over."""
    return {p.name for p in run_dir.iterdir()} <= {"command.txt", "config.json", STATE_FILE}


def save_epoch(run_dir, module, optimizer, scheduler, scaler, state, meta, row, improved, columns) -> None:
    from visiontool import checkpoint

    weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    meta = {**meta, "train": {**meta["train"], "metrics": {k: row[k] for k in row if k != "seconds"}}}
    checkpoint.save(run_dir / LAST_FILE, weights, meta)
    if improved:  # the same bytes: a second name for last's file (it is replaced, not rewritten)
        _link_or_copy(run_dir / LAST_FILE, run_dir / BEST_FILE)
    save_state(run_dir, module, optimizer, scheduler, scaler, state)
    report.write_results(run_dir / "results.csv", state.rows, columns)


def save_state(run_dir, module, optimizer, scheduler, scaler, state) -> None:
    """state.pt: what --resume continues from (written at the start of a run, then each epoch)."""
    payload = {
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        **state.__dict__,
    }
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)  # checksumming 3x the model per epoch costs seconds
    try:
        with atomic_write(run_dir / STATE_FILE) as tmp:
            torch.save(payload, tmp)
    finally:
        torch.serialization.set_crc32_options(crc)


def _link_or_copy(src: Path, dst: Path) -> None:
    import shutil

    with atomic_write(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(src, tmp)


def load_state(path: Path, module, optimizer, scheduler, scaler) -> State:
    # weights_only: resume state is tensors and plain containers; nothing is unpickled.
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: one line, no traceback
        raise UsageError(f"cannot resume from {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    module.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    scheduler.load_state_dict(payload.pop("scheduler"))
    scaler_state = payload.pop("scaler")
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    # Runs from before tasks kept the classification names.
    renamed = {"best_top1": "best_score", "best_confusion": "best"}
    payload = {renamed.get(k, k): v for k, v in payload.items()}
    return State(**{k: v for k, v in payload.items() if k in State.__dataclass_fields__})
