"""Every file in a scanned folder whose name or content says image gets a row; the others are
skipped silently. An image-named file that cannot be decoded is an error row, a warning and exit 3."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from visiontool.cli.app import app


def test_every_image_named_or_image_content_file_gets_a_row(tmp_path):
    d = tmp_path / "shots"
    (d / "sub").mkdir(parents=True)
    Image.new("L", (28, 28), 200).save(d / "a.png")
    Image.new("L", (28, 28), 30).save(d / "sub" / "b.jpg")
    Image.new("L", (28, 28), 90).save(d / "scan.dat", format="PNG")  # an image whose name says nothing
    (d / "empty.jpg").write_bytes(b"")
    (d / "text_named.jpg").write_text("this is not a picture\n")
    (d / "notes.txt").write_text("shot list\n")
    (d / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 40)
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["classify", str(d), "--recursive", "-m", "lenet5-mnist", "--offline",
                                      "--output", str(out)])
    assert result.exit_code == 3, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    names = [r["path"][len(str(d)) + 1:] for r in rows]
    assert names == ["a.png", "empty.jpg", "scan.dat", "sub/b.jpg", "text_named.jpg"]
    errors = {n: r["error"] for n, r in zip(names, rows)}
    assert errors == {"a.png": None, "empty.jpg": "empty file (0 bytes)", "scan.dat": None,
                      "text_named.jpg": "not an image (unrecognised content)", "sub/b.jpg": None}
    assert all(r["top"] is None for r in rows if r["error"])
    assert f"{d / 'empty.jpg'}: empty file (0 bytes)" in result.stderr
    assert f"{d / 'text_named.jpg'}: not an image" in result.stderr
    assert "notes.txt" not in result.stderr and "DS_Store" not in result.stderr
