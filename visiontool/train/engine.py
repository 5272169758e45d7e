"""The training engine: one loop for every task, read top to bottom in `_fit`.

    task  -> the task's training part (job.py: classify.py, detect.py) decodes its data
             once into memory and builds the model
    loop  -> per epoch: shuffled global batches, the task's batch (augmented) and loss,
             backward, optimizer step, per-iteration lr schedule; then the task's validation
    files -> results.csv, best/last checkpoints (best by the task's metric), state.pt (resume),
             the task's plots

Evaluation feeds the model exactly what inference feeds it (the checkpoint's Preprocess), so
the reported metric is what a user gets back from the best checkpoint.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from visiontool.errors import DatasetError, UsageError, VisiontoolError
from visiontool.interrupt import StopRequest
from visiontool.train import distributed, rundir
from visiontool.train.config import RESUME_OVERRIDES, TrainConfig, resolved_workers
from visiontool.train.job import training_for
from visiontool.train.optim import build_optimizer, build_scheduler
from visiontool.train.progress import Reporter
from visiontool.train.rundir import BEST_FILE, STATE_FILE



@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int  # epochs finished in total (including those before a resume)
    best_epoch: int  # 1-based epoch of best.safetensors
    best_score: float  # its value of the task's best metric (val top-1, mAP@0.5:0.95, ...)
    rows: list[dict] = field(default_factory=list)  # results.csv as dicts
    stopped_early: bool = False  # --patience ended the run


# ---------------------------------------------------------------------------------- entry points


def train(cfg: TrainConfig, on_epoch_end: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a model for `cfg.task` as `cfg` says; `on_epoch_end(row)` is called after each saved epoch."""
    return _run(cfg.resolve(), None, on_epoch_end)


def resume(
    run_dir: str | os.PathLike,
    overrides: dict | None = None,
    command: str = "",
    on_epoch_end: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Continue the run in `run_dir` from its last finished epoch; a larger `epochs` trains
    longer (the lr schedule is stretched to the new end).

    `overrides` are the options given again (TrainConfig names; "output" for the run folder):
    the original command line is accepted as it was. Those in RESUME_OVERRIDES may change;
    any other is refused only when its value differs from the run's."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():  # state.pt may be missing: killed before it was written
        raise UsageError(f"nothing to resume in {run_dir}: no config.json from `visiontool train`")
    recorded = TrainConfig.load(run_dir / "config.json")
    changes, refused = {}, []
    for key, value in (overrides or {}).items():
        if key in RESUME_OVERRIDES:
            changes[key] = value
        elif key in ("output", "out"):
            if not _same_path(value, run_dir):
                refused.append((OPTION_NAMES["out"], value, run_dir))
        elif not _same_value(value, getattr(recorded, key, None), key in PATH_FIELDS):
            refused.append((OPTION_NAMES.get(key, "--" + key.replace("_", "-")), value, getattr(recorded, key, None)))
    if refused:
        details = "; ".join(f"{name} {value} (the run has {was})" for name, value, was in refused)
        allowed = ", ".join("--" + k for k in RESUME_OVERRIDES)
        raise UsageError(f"cannot change when resuming: {details}; only {allowed} may change")
    cfg = replace(recorded, **changes, out=str(run_dir))
    return _run(cfg.resolve(), run_dir, on_epoch_end, resume_command=command)


# How TrainConfig fields are spelled on the command line, where not --field-name.
OPTION_NAMES = {"data": "DATA", "out": "--output"}
PATH_FIELDS = ("data", "style_image")  # compared as the files they name


def _same_path(a, b) -> bool:
    return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def _same_value(given, recorded, is_path: bool) -> bool:
    if is_path:
        return recorded is not None and _same_path(given, recorded)
    if isinstance(given, float) and isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return abs(given - recorded) <= 1e-9 * max(1.0, abs(recorded))
    if isinstance(given, str) and isinstance(recorded, str):
        return given.lower() == recorded.lower()
    return given == recorded


# ------------------------------------------------------------------------------------- the run


def _run(cfg: TrainConfig, resume_dir: Path | None, on_epoch_end, resume_command: str = "") -> TrainResult:
    dist = distributed.from_env()
    device = distributed.pick_device(cfg.device, dist)
    distributed.init(dist, device)
    previous = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        # Same seed, same numbers. The CPU kernels used here are deterministic already; on CUDA
        # ask cuDNN for its deterministic algorithms. (torch.use_deterministic_algorithms would
        # also do it, but it imports the whole compiler stack: seconds of start-up.)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        return _fit(cfg, dist, device, resume_dir, on_epoch_end, resume_command)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous
        distributed.shutdown(dist)


def _fit(cfg, dist, device, resume_dir, on_epoch_end, resume_command) -> TrainResult:
    say = Reporter(cfg.quiet, active=dist.is_main)
    job = training_for(cfg.task)(cfg, dist, device, say)  # data decoded, model built
    module = job.module

    # --- batches: --batch-size is global; each rank takes its slice of every global batch
    n_train = job.n_train
    batch = cfg.batch_size
    if batch % dist.world:
        raise UsageError(f"--batch-size {batch} is the global batch: it must divide evenly over {dist.world} processes")
    if batch > n_train:
        batch = n_train - n_train % dist.world
        if batch == 0:
            raise DatasetError(f"too few training images ({n_train}) for {dist.world} processes")
        say.line(f"batch size lowered to {batch}: the training split has {n_train} images")
    steps = n_train // batch  # the incomplete last batch is dropped (it differs each epoch)
    local_batch = batch // dist.world

    # --- optimizer, schedule, mixed precision
    _settle_batchnorm(module, steps)
    if dist.enabled and device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    optimizer = build_optimizer(module, cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.epochs * steps, round(cfg.warmup_epochs * steps), cfg.scheduler)
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")

    state = rundir.State()
    fresh = resume_dir is None or not (resume_dir / STATE_FILE).is_file()  # no state yet: from the start
    if not fresh:
        state = rundir.load_state(resume_dir / STATE_FILE, module, optimizer, scheduler, scaler)
        if state.epoch >= cfg.epochs:
            raise UsageError(
                f"{resume_dir} already trained {state.epoch} of {cfg.epochs} epochs: pass a larger --epochs to continue"
            )
    net = module
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    # config.json records what the run used, not "auto" and null
    cfg = replace(cfg, device=str(device), amp=use_amp, workers=resolved_workers(cfg.workers, dist.local_world),
                  image_size=job.image_size)
    run_dir = distributed.broadcast(dist, rundir.prepare_run_dir(cfg, resume_dir, resume_command) if dist.is_main else None)
    if fresh:
        if dist.is_main:  # from here on, a run killed at any moment leaves a folder --resume takes
            rundir.save_state(run_dir, module, optimizer, scheduler, scaler, state)
        say.line(f"{job.describe()}, batch {batch}{f' ({dist.world} processes)' if dist.enabled else ''}, {device}")
    elif state.epoch == 0:
        say.line(f"starting {run_dir} over: it was stopped before its first epoch ended")
    else:
        say.line(f"resuming {run_dir} after epoch {state.epoch}")

    run_meta = {"command": cfg.command, "options": cfg.to_dict(), "processes": dist.world}
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if use_amp else nullcontext

    # --- the loop
    stopped_early = False
    # One process: the first Ctrl-C ends the step in flight, then the run stops. Under torchrun
    # every rank must stop at the same step, so there Ctrl-C interrupts at once.
    stop_request = StopRequest() if not dist.enabled else nullcontext()
    try:
        with stop_request as stop:
            for epoch in range(state.epoch, cfg.epochs):
                started = time.perf_counter()
                # Every random draw of an epoch comes from (seed, epoch): order, crops, flips,
                # policies, dropout. A resumed run continues with the very numbers it would have had.
                gen = torch.Generator().manual_seed(_seed(cfg.seed, epoch))
                torch.manual_seed(_seed(cfg.seed, epoch, dist.rank + 1))
                order = torch.randperm(n_train, generator=gen)
                params = job.epoch_params(steps * batch, gen)

                net.train()
                sums = torch.zeros(job.train_sums, dtype=torch.float64, device=device)  # this rank's running sums
                first = 0
                if state.step:  # resumed inside this epoch: its first steps are done, dropout goes on
                    first = state.step
                    if dist.is_main:  # the sums are summed over ranks at the epoch's end: counted once
                        sums = state.sums.to(device)
                    _set_rng(state.rng, device)
                    state.step, state.sums, state.rng = 0, None, None
                with say.bar(f"epoch {epoch + 1}/{cfg.epochs}", steps, unit="batch") as advance:
                    advance(first)
                    for step in range(first, steps):
                        mine = slice(step * batch + dist.rank * local_batch, step * batch + (dist.rank + 1) * local_batch)
                        x, targets = job.batch(order[mine], params[mine], device)
                        with autocast():
                            outputs = job.forward(net, x, targets)
                        loss, step_sums = job.loss(outputs, targets)
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        if job.grad_clip is not None:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(module.parameters(), job.grad_clip)
                        scaler.step(optimizer)
                        scaler.update()
                        scheduler.step()
                        sums += step_sums
                        if step % 10 == 9 or step == steps - 1:  # .item() waits for the device: not every step
                            advance(1, info=f"loss {loss.item():.3f}")
                        else:
                            advance(1)
                        if stop is not None and stop.requested:  # Ctrl-C: keep this step, then stop
                            state.step, state.sums, state.rng = step + 1, sums.cpu(), _get_rng(device)
                            rundir.save_state(run_dir, module, optimizer, scheduler, scaler, state)
                            say.warn(f"interrupted in epoch {epoch + 1} after step {step + 1} of {steps}; "
                                     f"{STATE_FILE} holds the run up to there: continue with: "
                                     f"visiontool train --resume {run_dir}")
                            raise _Stopped
                distributed.all_reduce_(dist, sums)
                distributed.broadcast_buffers_(dist, module)
                metrics, best_part = job.evaluate(module, local_batch * 2, amp_dtype if use_amp else None)
                row = {"epoch": epoch + 1, **job.train_row(sums.tolist(), steps * batch), **metrics,
                       "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
                improved = job.score(row) > state.best_score
                if improved:
                    state.best_score, state.best_epoch, state.best = job.score(row), epoch + 1, best_part
                    state.since_best = 0
                else:
                    state.since_best += 1
                state.epoch = epoch + 1
                state.rows.append(row)
                if dist.is_main:
                    # job.meta() after evaluate: a task may record what this epoch measured
                    meta = {**job.meta(), "train": run_meta}
                    try:
                        rundir.save_epoch(run_dir, module, optimizer, scheduler, scaler, state, meta, row, improved,
                                          ("epoch", *job.columns, "lr", "seconds"))
                    except OSError as err:  # a full disk: every file is whole (atomic), state.pt one epoch behind
                        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                            raise
                        raise VisiontoolError(
                            f"cannot write {err.filename or run_dir}: {err.strerror}; {STATE_FILE} holds the run after "
                            f"epoch {epoch}: free space, then continue with: visiontool train --resume {run_dir}"
                        ) from None
                    job.epoch_pictures(run_dir, row)
                say.line(f"epoch {row['epoch']}/{cfg.epochs}  {job.epoch_line(row)}  lr {row['lr']:.2e}  "
                         f"{row['seconds']:.1f}s{'  *best' if improved else ''}")
                if on_epoch_end is not None:
                    on_epoch_end(row)
                if cfg.patience and state.since_best >= cfg.patience:
                    stopped_early = True
                    say.line(f"stopping early: no better {job.best_metric} for {cfg.patience} epochs")
                    break
    except (_Stopped, KeyboardInterrupt) as stop:
        if state.epoch and dist.is_main:  # the plots of the epochs that finished
            job.plots(run_dir, state.rows, state.best, state.best_epoch)
        if isinstance(stop, _Stopped):  # said where it stopped already
            raise KeyboardInterrupt from None
        # a second Ctrl-C, or any under torchrun: the epoch in flight is lost
        say.warn(f"interrupted in epoch {state.epoch + 1}; {STATE_FILE} holds the run after epoch {state.epoch}: "
                 f"continue with: visiontool train --resume {run_dir}")
        raise

    plots = job.plots(run_dir, state.rows, state.best, state.best_epoch) if dist.is_main else []
    say.line(
        f"{job.best_line(state.best_score)} at epoch {state.best_epoch}; "
        f"{run_dir}/{BEST_FILE} (use it as `visiontool {job.task} {job.use_as}`), results.csv, {', '.join(plots)}"
    )
    return TrainResult(run_dir, state.epoch, state.best_epoch, state.best_score, state.rows, stopped_early)


# --------------------------------------------------------------------------------------- helpers


class _Stopped(Exception):
    """The run stopped at a step boundary, its state saved."""


def _get_rng(device) -> list:
    """The global random state that dropout draws from (CPU, and the CUDA device when used)."""
    return [torch.get_rng_state()] + ([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])


def _set_rng(saved: list, device) -> None:
    torch.set_rng_state(saved[0])
    if device.type == "cuda" and len(saved) > 1:
        torch.cuda.set_rng_state(saved[1], device)


def _settle_batchnorm(module: nn.Module, steps_per_epoch: int) -> None:
    """Let batch-norm running statistics catch up within an epoch.

    Some architectures ship ImageNet-recipe momenta (MobileNetV3 0.01, MNASNet 0.0003) meant
    for hundreds of thousands of steps; after one epoch of a small dataset their running
    statistics would still be the initial 0/1 and every evaluation would be at chance. A floor
    of about two updates per epoch (at most PyTorch's default 0.1) fixes that and leaves the
    usual momenta of long runs alone. Training-time only: nothing in the weights changes.
    """
    floor = min(0.1, 2.0 / max(1, steps_per_epoch))
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None and m.momentum < floor:
            m.momentum = floor


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from small integers (seed, epoch, rank)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))
