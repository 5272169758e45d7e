"""Batch jobs that survive their end: rows stream to a partial file batch by batch, --resume
finishes it, and the result equals an uninterrupted run, after SIGKILL at random moments,
Ctrl-C, or a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tiny_onnx import write_tiny_onnx
from visiontool.cli.app import app
from visiontool.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny ONNX classifier and a folder of 300 small images, two of them broken."""
    root = tmp_path_factory.mktemp("resume")
    model = write_tiny_onnx(root / "tiny.onnx")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(300):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(images / f"im{i}.png")
    (images / "im7.png").write_bytes(b"")
    (images / "im150.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return model, images


def _args(job, output, *more):
    model, images = job
    return ["classify", str(images), "-m", str(model), "--top-k", "2", "--batch-size", "2", "--workers", "1",
            "-q", "--output", str(output), *more]


def _cli(args):
    # its own process group, as a command started from a terminal: Ctrl-C goes to the whole group
    return subprocess.Popen([sys.executable, "-m", "visiontool", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory):
    """The outputs of uninterrupted runs, one per format."""
    out = {}
    for fmt in ("jsonl", "csv", "json"):
        path = tmp_path_factory.mktemp("reference") / f"rows.{fmt}"
        result = CliRunner().invoke(app, _args(job, path))
        assert result.exit_code == 3, result.output  # the two broken images
        out[fmt] = path.read_bytes()
    assert len(out["jsonl"].splitlines()) == 300
    return out


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(job, reference, tmp_path):
    out = tmp_path / "rows.jsonl"
    partial = tmp_path / "rows.jsonl.partial"
    rng = np.random.default_rng(1)
    kills = 0
    while kills < 10:
        before = partial.stat().st_size if partial.exists() else 0
        proc = _cli(_args(job, out, "--resume"))
        # once this run has written rows, at a random moment: in a write, between two, in a batch
        while (partial.stat().st_size if partial.exists() else 0) == before and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        if proc.poll() is not None:  # a fast machine finished first: the result must be whole; again
            assert proc.returncode == 3 and out.read_bytes() == reference["jsonl"]
            out.unlink()
            continue
        proc.kill()
        kills += 1
        proc.wait()
        if out.exists():  # it ended between the check and the kill: whole, as any end
            assert out.read_bytes() == reference["jsonl"] and not partial.exists()
            out.unlink()
    proc = _cli(_args(job, out, "--resume"))
    assert proc.wait() == 3
    assert out.read_bytes() == reference["jsonl"]  # one row per input, none twice, none torn
    assert not partial.exists()


def test_ctrl_c_stops_after_the_batch_keeps_the_partial_and_says_how_to_resume(job, reference, tmp_path):
    out = tmp_path / "rows.csv"
    partial = tmp_path / "rows.csv.partial"
    proc = _cli(_args(job, out))
    deadline = time.monotonic() + 20
    while not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and f"kept in {partial}; run the same command with --resume" in last
    kept = partial.read_bytes().splitlines()
    assert 0 < len(kept) < 300 and len(kept) % 2 == 0  # whole batches of two
    assert not out.exists()
    again = CliRunner().invoke(app, _args(job, out))  # without --resume: told, nothing lost
    assert again.exit_code == 2 and "add --resume to finish it" in again.stderr
    assert CliRunner().invoke(app, _args(job, out, "--resume")).exit_code == 3
    assert out.read_bytes() == reference["csv"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_resume_from_a_finished_output_keeps_its_rows_and_adds_the_new_inputs(job, reference, tmp_path, fmt):
    out = tmp_path / f"rows.{fmt}"
    out.write_bytes(reference[fmt])
    if fmt == "csv":  # the row of im3 removed, as if im3 were a new image
        text = b"".join(line for line in reference[fmt].splitlines(keepends=True) if b"/im3.png," not in line)
    else:
        rows = json.loads(reference["json"])
        shown = [r for r in rows if not r["path"].endswith("/im3.png")]
        for r in shown:
            r["top"] = r["top"] and [{**t, "label": "kept"} for t in r["top"]]  # marks the kept rows
        if fmt == "jsonl":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shown).encode()
        else:
            text = ("[\n  " + ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in shown) + "\n]\n").encode()
    out.write_bytes(text)
    result = CliRunner().invoke(app, _args(job, out, "--resume"))
    assert result.exit_code == 3, result.output  # the kept error rows still count
    if fmt == "csv":
        assert out.read_bytes() == reference["csv"]
        return
    rows = [json.loads(line) for line in out.read_text().splitlines()] if fmt == "jsonl" else json.loads(out.read_text())
    want = json.loads(reference["json"])
    assert [r["path"] for r in rows] == [r["path"] for r in want]
    redone = [r for r in rows if r["top"] and r["top"][0]["label"] != "kept"]
    assert [r["path"][-8:] for r in redone] == ["/im3.png"] and redone[0] == want[3]


def test_a_torn_last_line_is_dropped_and_redone(job, reference, tmp_path):
    out = tmp_path / "rows.jsonl"
    lines = reference["jsonl"].splitlines(keepends=True)
    (tmp_path / "rows.jsonl.partial").write_bytes(b"".join(lines[:40]) + lines[40][:25])
    assert CliRunner().invoke(app, _args(job, out, "--resume")).exit_code == 3
    assert out.read_bytes() == reference["jsonl"]


def test_a_full_disk_while_writing_rows_is_one_error_and_the_partial_stays_resumable(job, reference, tmp_path,
                                                                                     monkeypatch):
    import visiontool.writers as writers

    real_write, calls = os.write, []

    def full_disk(fd, data):
        calls.append(fd)
        if len(calls) == 4:  # half of the fourth batch reaches the disk, then it is full
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writers.os, "write", full_disk)
    out = tmp_path / "rows.json"
    result = CliRunner().invoke(app, _args(job, out))
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write rows to {out}.partial: No space left on device; the rows written before are "
        f"kept: run the same command with --resume")
    assert len((tmp_path / "rows.json.partial").read_bytes().splitlines()) == 6  # three whole batches
    assert CliRunner().invoke(app, _args(job, out, "--resume")).exit_code == 3
    assert out.read_bytes() == reference["json"]


@pytest.mark.parametrize("args, message", [
    (["--resume"], "--resume needs --output FILE"),
    (["--shard", "3/2"], "--shard 3/2: use K/N with 1 <= K <= N"),
    (["--shard", "0/2"], "--shard 0/2: use K/N"),
    (["--shard", "x"], "--shard x: use K/N"),
])
def test_resume_and_shard_usage_errors(job, args, message):
    model, images = job
    result = CliRunner().invoke(app, ["classify", str(images), "-m", str(model), "-q", *args])
    assert result.exit_code == 2 and message in result.stderr


def test_shards_merge_into_the_output_of_one_run(job, reference, tmp_path):
    out = tmp_path / "rows.csv"
    first = CliRunner().invoke(app, _args(job, out, "--shard", "1/2"))
    assert first.exit_code == 3 and not out.exists()
    assert (tmp_path / "rows.part-1-of-2.csv").exists()
    second = CliRunner().invoke(app, _args(job, out, "--shard", "2/2"))
    assert second.exit_code == 3  # each share reports its own broken image
    assert out.read_bytes() == reference["csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_torchrun_with_two_processes_equals_one_process(job, reference, tmp_path):
    out = tmp_path / "rows.jsonl"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "visiontool", *_args(job, out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.exists(), done.stderr[-2000:]
    # rank 0 merged and answers for all: exit 3 for the two broken images, whichever share had
    # them (torchrun itself exits 1 and names the rank that did not exit 0)
    assert done.returncode == 1 and "(exitcode: 3) local_rank: 0 " in done.stderr
    assert "local_rank: 1 " not in done.stderr
    assert out.read_bytes() == reference["jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_a_full_disk_while_writing_pictures_is_one_error_and_nothing_is_half_written(tmp_path, monkeypatch,
                                                                                     one_thread):
    import contextlib
    import shutil

    import visiontool.render as render

    scenes = tmp_path / "scenes"
    for folder, name in zip("abc", sorted(os.listdir(ROOT / "samples" / "scenes"))):
        (scenes / folder).mkdir(parents=True)
        shutil.copy(ROOT / "samples" / "scenes" / name, scenes / folder / "x.jpg")  # three inputs, one stem
    args = ["detect", str(scenes), "-r", "-m", "griddet-digits", "--offline", "--batch-size", "1", "--workers", "0", "-q",
            "--image-size", "64"]  # small: the test is about files, not boxes
    want = tmp_path / "want.jsonl"
    assert CliRunner().invoke(app, [*args, "-o", str(want), "--save-dir", str(tmp_path / "want")]).exit_code == 0
    real, calls = render.atomic_write, []

    @contextlib.contextmanager
    def full_disk(path):
        with real(path) as tmp:
            calls.append(path)
            if len(calls) == 2:
                tmp.write_bytes(b"half a picture")
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            yield tmp

    monkeypatch.setattr(render, "atomic_write", full_disk)
    out, pictures = tmp_path / "rows.jsonl", tmp_path / "pictures"
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--save-dir", str(pictures)])
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {calls[1]}: No space left on device; rows done so far are in {out}.partial: "
        f"run the same command with --resume")
    assert len(calls) == 2 and [p.name for p in pictures.iterdir()] == ["x.jpg"]  # the first picture, whole; no temp file
    assert CliRunner().invoke(app, [*args, "-o", str(out), "--save-dir", str(pictures), "--resume"]).exit_code == 0
    assert out.read_text() == want.read_text().replace(str(tmp_path / "want"), str(pictures))
    # the resumed run does not give the first picture's name to the second input: each keeps its own
    assert sorted(p.name for p in pictures.iterdir()) == ["x.jpg", "x_2.jpg", "x_3.jpg"]
    for name in ("x.jpg", "x_2.jpg", "x_3.jpg"):
        assert (pictures / name).read_bytes() == (tmp_path / "want" / name).read_bytes()


def test_coco_json_refuses_resume(tmp_path):
    result = CliRunner().invoke(app, ["detect", str(ROOT / "samples" / "scenes"), "-m", "griddet-digits", "--offline",
                                      "-o", str(tmp_path / "r.jsonl"), "--coco-json", str(tmp_path / "c.json"),
                                      "--resume"])
    assert result.exit_code == 2 and "--resume: --coco-json numbers the images of one whole run" in result.stderr


def test_a_full_disk_while_writing_the_final_file_keeps_every_row_for_resume(job, reference, tmp_path, monkeypatch):
    import visiontool.writers as writers

    def full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers._Out, "end", full_disk)
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(app, _args(job, out))
    monkeypatch.undo()
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {out}: No space left on device; every row is kept in {out}.partial: free space and "
        f"run the same command with --resume")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv.partial"]  # no temp file, no half output
    assert len((tmp_path / "rows.csv.partial").read_bytes().splitlines()) == 300
    assert CliRunner().invoke(app, _args(job, out, "--resume")).exit_code == 3
    assert out.read_bytes() == reference["csv"]


def test_merging_parts_restores_input_order_and_refuses_parts_that_do_not_fit(reference, tmp_path):
    from visiontool.tasks.classify import Classify
    from visiontool.writers import PartMissing, merge_parts, part_path

    task, out = Classify(2), tmp_path / "rows.jsonl"
    lines = reference["jsonl"].splitlines(keepends=True)

    def parts(*shares):
        for k, share in enumerate(shares, 1):
            part_path(out, k, len(shares)).write_bytes(b"".join(share))

    parts(lines[0::3], lines[1::3], lines[2::3])
    merged = merge_parts(out, 3, task.csv_rows, task.csv_columns())
    assert (merged.rows, merged.errors) == (300, 2)  # the two broken images
    assert out.read_bytes() == reference["jsonl"] and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
    parts(lines[0::2], lines[1::2])
    part_path(out, 2, 2).unlink()
    with pytest.raises(PartMissing, match=r"rows.part-2-of-2.jsonl is missing \(run that shard"):
        merge_parts(out, 2)
    parts(lines[0:10], lines[10:30])  # the second share longer than the first: not shares of one list
    with pytest.raises(UsageError, match="its parts hold shares of different inputs"):
        merge_parts(out, 2)


def test_the_merge_command_joins_parts_made_in_different_folders(job, reference, tmp_path):
    import shutil

    for k in (1, 2):  # two machines that share no folder
        machine = tmp_path / f"machine{k}"
        assert CliRunner().invoke(app, _args(job, machine / "rows.json", "--shard", f"{k}/2")).exit_code == 3
    out = tmp_path / "rows.json"
    shutil.copy(tmp_path / "machine1" / "rows.part-1-of-2.json", tmp_path)
    result = CliRunner().invoke(app, ["merge", str(out)])
    assert result.exit_code == 2 and "rows.part-2-of-2.json is missing" in result.stderr
    shutil.copy(tmp_path / "machine2" / "rows.part-2-of-2.json", tmp_path)
    result = CliRunner().invoke(app, ["merge", str(out)])
    # exit 3, as the run's: two rows are the broken images
    assert result.exit_code == 3 and result.stderr.strip() == f"merged 2 parts into {out}: 300 rows, 2 of them errors"
    assert out.read_bytes() == reference["json"]
    assert not list(tmp_path.glob("rows.part-*"))
    assert "no parts of" in CliRunner().invoke(app, ["merge", str(tmp_path / "other.csv")]).stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_a_file_name_that_is_not_utf8_gets_its_row_and_resumes(job, tmp_path, fmt):
    folder = tmp_path / "old_disk"
    folder.mkdir()
    try:
        Image.new("L", (8, 8)).save(os.path.join(os.fsencode(folder), b"caf\xe9.png"))  # a Latin-1 name
    except OSError:
        pytest.skip("this filesystem only takes UTF-8 names")
    Image.new("L", (8, 8), 255).save(folder / "b.png")
    out = tmp_path / f"rows.{fmt}"
    args = ["classify", str(folder), "-m", str(job[0]), "-q", "-o", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    whole = out.read_bytes()
    assert b"caf\xe9.png" in whole  # the name's own bytes, as the filesystem holds them
    rows = tmp_path / "rows_as_lines.jsonl"
    assert CliRunner().invoke(app, [*args[:-1], str(rows)]).exit_code == 0
    latin = next(line for line in rows.read_bytes().splitlines(keepends=True) if b"caf\xe9.png" in line)
    (tmp_path / f"rows.{fmt}.partial").write_bytes(latin)  # its row done, b.png's not
    out.unlink()
    assert CliRunner().invoke(app, [*args, "--resume"]).exit_code == 0
    assert out.read_bytes() == whole
    assert CliRunner().invoke(app, [*args, "--resume"]).exit_code == 0  # from the finished file: nothing redone
    assert out.read_bytes() == whole
