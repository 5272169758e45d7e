"""Images that try to break the decoder: random and mutated files never crash or hang it (each
becomes an error row), a decode that hangs is given up after the time limit, decompression
bombs are refused from their header, and a symlink out of a scanned folder is read once."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tiny_onnx import write_tiny_onnx
from visiontool.cli.app import app
import visiontool.pipeline as pipeline
from visiontool.imageio import DecodeError, decode, decode_timeout, set_decode_timeout, set_max_pixels
from visiontool.models.registry import LENET5_PREPROCESS
from visiontool.pipeline import load_one
from visiontool.sources import expand

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF")
# Cases per run: a bounded number in CI; VISIONTOOL_FUZZ_CASES=20000 for a long session.
CASES = int(os.environ.get("VISIONTOOL_FUZZ_CASES", "250"))
SECONDS_PER_IMAGE = 5


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 50_000) -> bytes:
    """A 100-byte PNG that declares side x side gray pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def gif_bomb(side: int = 50_000) -> bytes:
    """A GIF whose screen and one frame declare side x side pixels."""
    screen = b"GIF89a" + struct.pack("<HHBBB", side, side, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


@pytest.mark.parametrize("make", [png_bomb, gif_bomb])
def test_decompression_bombs_are_refused_before_decoding_naming_the_limit_and_the_option(tmp_path, make):
    path = tmp_path / "bomb.img"
    path.write_bytes(make())
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert str(err.value) == ("image too large: 50000 x 50000 = 2,500,000,000 pixels, above the limit of 178,956,970 "
                              "that guards against decompression bombs (raise it with --max-pixels or "
                              "VISIONTOOL_MAX_PIXELS)")


def test_max_pixels_sets_the_limit(tmp_path):
    Image.new("L", (100, 60), 128).save(tmp_path / "a.png")
    model = write_tiny_onnx(tmp_path / "tiny.onnx")
    args = ["classify", str(tmp_path / "a.png"), "-m", str(model), "-q", "-o", str(tmp_path / "rows.jsonl")]
    try:
        result = CliRunner().invoke(app, [*args, "--max-pixels", "5999"])
        row = json.loads((tmp_path / "rows.jsonl").read_text())
        assert result.exit_code == 3 and row["error"].startswith("image too large: 100 x 60 = 6,000 pixels, above "
                                                                 "the limit of 5,999")
        assert CliRunner().invoke(app, [*args, "--max-pixels", "6000"]).exit_code == 0
    finally:
        set_max_pixels(None)


def test_the_environment_sets_the_limit_for_every_command(tmp_path, monkeypatch):
    Image.new("L", (100, 60), 128).save(tmp_path / "a.png")
    monkeypatch.setenv("VISIONTOOL_MAX_PIXELS", "5999")  # what train and val, without --max-pixels, read
    with pytest.raises(DecodeError, match="^image too large: 100 x 60 = 6,000 pixels, above the limit of 5,999 "):
        decode(tmp_path / "a.png")
    monkeypatch.setenv("VISIONTOOL_MAX_PIXELS", "6000")
    assert decode(tmp_path / "a.png").size == (100, 60)


@pytest.mark.parametrize("backend", ["onnx", "torch"])  # decoding threads; a decoding worker process
def test_an_image_whose_decoding_hangs_is_an_error_row_after_the_time_limit(tmp_path, monkeypatch, backend):
    for i in range(6):
        Image.new("L", (28, 28), 40 * i).save(tmp_path / f"{i}.png")
    real = pipeline.decode

    def hangs_on_3(path, *args, **kwargs):
        if str(path).endswith("3.png"):
            time.sleep(60)  # a decoder stuck in a file (uninterruptible in a thread)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "decode", hangs_on_3)
    model = str(write_tiny_onnx(tmp_path / "tiny.onnx")) if backend == "onnx" else "lenet5-mnist"
    out = tmp_path / "rows.jsonl"
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, ["classify", str(tmp_path), "-m", model, "--offline", "-q", "-o", str(out),
                                          "--workers", "1", "--batch-size", "2", "--decode-timeout", "0.5"])
    finally:
        set_decode_timeout(None)
    took = time.monotonic() - started
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.exit_code == 3, result.output
    assert [os.path.basename(r["path"]) for r in rows] == [f"{i}.png" for i in range(6)]
    assert [r["error"] for r in rows] == [None] * 3 + ["decoding took longer than 0.5 s (--decode-timeout raises "
                                                       "the limit)"] + [None] * 2
    assert took < 20  # not the 60 s the stuck decode would take


def test_the_decode_time_limit_defaults_to_60_s_and_the_environment_sets_it(monkeypatch):
    monkeypatch.delenv("VISIONTOOL_DECODE_TIMEOUT", raising=False)
    assert decode_timeout() == 60
    monkeypatch.setenv("VISIONTOOL_DECODE_TIMEOUT", "2.5")
    assert decode_timeout() == 2.5
    monkeypatch.setenv("VISIONTOOL_DECODE_TIMEOUT", "soon")  # not a number: the default
    assert decode_timeout() == 60


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    out = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


def _mutant(rng, seeds: dict[str, bytes]) -> bytes:
    data = bytearray(seeds[FORMATS[rng.integers(len(FORMATS))]])
    how = rng.integers(5)
    if how == 0:  # random bytes, sometimes behind a real signature
        junk = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        return (bytes(data[: rng.integers(0, 12)]) + junk) if rng.random() < 0.7 else junk
    if how == 1:  # bit flips
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(len(data)))
            data[i] ^= 1 << int(rng.integers(8))
        return bytes(data)
    if how == 2:  # truncated
        return bytes(data[: rng.integers(0, len(data))])
    if how == 3:  # spliced with another format's file
        other = seeds[FORMATS[rng.integers(len(FORMATS))]]
        cut = int(rng.integers(len(data)))
        return bytes(data[:cut]) + other[int(rng.integers(len(other))):]
    for _ in range(int(rng.integers(1, 6))):  # runs of bytes overwritten with extremes (sizes, lengths)
        i = int(rng.integers(len(data)))
        data[i : i + 4] = bytes([0xFF if rng.random() < 0.5 else 0x00] * 4)
    return bytes(data)


class _TooSlow(Exception):
    pass


def test_fuzzed_images_never_crash_or_hang_the_decoder(tmp_path):
    seeds = _seeds()
    rng = np.random.default_rng(int(os.environ.get("VISIONTOOL_FUZZ_SEED", "0")))

    def too_slow(signum, frame):
        raise _TooSlow

    before = signal.signal(signal.SIGALRM, too_slow)
    outcomes = {"decoded": 0, "error": 0}
    path = tmp_path / "case"
    try:
        for case in range(CASES):
            data = _mutant(rng, seeds)
            path.write_bytes(data)
            signal.alarm(SECONDS_PER_IMAGE)
            try:
                try:
                    decode(path)
                except DecodeError:
                    pass  # the one exception decode may raise: an error row
                array, _, _, error = load_one(str(path), LENET5_PREPROCESS)  # what the pipeline does
            except _TooSlow:
                pytest.fail(f"case {case} took over {SECONDS_PER_IMAGE} s: {data[:64]!r}")
            finally:
                signal.alarm(0)
            assert (array is None) == (error is not None), case
            assert error is None or (isinstance(error, str) and error and "\n" not in error), (case, error)
            outcomes["decoded" if error is None else "error"] += 1
    finally:
        signal.signal(signal.SIGALRM, before)
    assert outcomes["error"] > CASES // 4  # the mutations do break files


def test_a_symlink_out_of_the_folder_is_read_once(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("L", (8, 8)).save(outside / "far.png")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    Image.new("L", (8, 8)).save(folder / "near.png")
    os.symlink(outside / "far.png", folder / "far.png")
    os.symlink(outside, folder / "sub" / "elsewhere")  # a folder link out, reaching the same file again
    got = expand([str(folder)], recursive=True)
    assert [os.path.relpath(p, folder) for p in got] == ["far.png", "near.png"]  # far.png once, by its first path
