"""Every option of every command, given a value it cannot take, is refused in one line with exit
2. Generated from the Typer app itself, so options added later are covered too."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from visiontool.cli.app import app

ROOT = typer.main.get_command(app)


def _commands(cmd, path=()):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


def _nonsense(param) -> list[str]:
    """Values the option's own type refuses: a wrong type, and one step outside its range."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return []
    if desc.is_choice:
        return ["nonsense"]
    kind = getattr(desc.annotation, "__name__", "")
    values = []
    if kind in ("int", "float"):
        values.append("many")
        step = 1 if kind == "int" else 0.5
        if getattr(param, "min", None) is not None:
            values.append(str(param.min - step))
        if getattr(param, "max", None) is not None:
            values.append(str(param.max + step))
    return values


CASES = [(path, _longest, value)
         for path, cmd in _commands(ROOT)
         for param in cmd.params if param.param_type_name == "option" and not getattr(param, "is_flag", False)
         for _longest in [max((o for o in param.opts if o.startswith("--")), key=len)]
         for value in _nonsense(param)]


def test_the_options_with_typed_values_are_found():
    names = {name for _, name, _ in CASES}
    assert {"--batch-size", "--top-k", "--epochs", "--conf", "--backend", "--max-pixels", "--workers"} <= names


@pytest.mark.parametrize("path, option, value", CASES, ids=[f"{' '.join(p)} {o} {v}" for p, o, v in CASES])
def test_a_value_an_option_cannot_take_is_one_line_and_exit_2(path, option, value):
    command = dict(_commands(ROOT))[path]
    # a placeholder for each argument, so that the option, not a missing argument, is what fails
    arguments = ["x" for p in command.params if p.param_type_name == "argument" and p.required]
    result = CliRunner().invoke(app, [*path, *arguments, option, value])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], lines


def test_unknown_options_and_commands_are_one_line_and_exit_2():
    for args, said in ((["classify", "x", "--nope"], "No such option: --nope"), (["nope"], "No such command 'nope'"),
                       (["classify"], "Missing argument 'SOURCES'"), (["weights", "list", "--bad"], "--bad")):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and said in result.stderr


def test_a_folder_where_a_file_is_expected_and_the_reverse_is_one_line_and_exit_2(tmp_path):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("L", (8, 8)).save(image)
    (tmp_path / "rows.json").mkdir()
    (tmp_path / "note.txt").write_text("a file")
    cases = [
        (["classify", str(image), "-o", str(tmp_path / "rows.json")], "--output"),
        (["classify", str(image), "-o", str(tmp_path / "note.txt" / "rows.jsonl")], "--output"),
        (["detect", str(image), "--save-dir", str(tmp_path / "note.txt")], "--save-dir"),
        (["detect", str(image), "--coco-json", str(tmp_path / "rows.json")], "--coco-json"),
        (["classify", str(image), "-m", str(tmp_path / "missing.onnx")], "missing.onnx"),
        (["classify", str(tmp_path / "nowhere")], "source not found"),
        (["export", "lenet5-mnist", "--int8", "--calibration", str(tmp_path / "nowhere")], "--calibration"),
        (["train", str(tmp_path / "note.txt"), "--model", "lenet5"], "note.txt"),
    ]
    for args, said in cases:
        result = CliRunner().invoke(app, [*args, "--offline", "-q"] if args[0] != "train" else args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and said in lines[0], (args, result.output)
