"""The CLI's surface, checked generically over the Typer app, so that a new command is covered
without a new test: shared options agree everywhere, every --help teaches with examples and
reads whole at 80 columns, and README's command reference matches the app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from visiontool.cli.app import app

runner = CliRunner()
README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_TYPE_METAVAR = re.compile(r"<(?:bool|str|int|float|path|list\[[^>]*\]|\w+ range)>")


def _walk(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, (*path, name))


ROOT = typer.main.get_command(app)
ALL = list(_walk(ROOT))
COMMANDS = [(path, cmd) for path, cmd in ALL if path and not hasattr(cmd, "commands")]


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option" and not p.hidden and p.name != "help"]


def _longest(param) -> str:
    return max((o for o in param.opts if o.startswith("--")), key=len)


def _identity(param) -> dict:
    desc = getattr(param, "type_descriptor", None)
    return {
        "names": sorted(param.opts),
        "negative names": sorted(param.secondary_opts),
        "type": repr(getattr(desc, "annotation", None)),
        "choices": tuple(desc.choices or ()) if desc is not None and desc.is_choice else None,
        "case-insensitive choices": None if desc is None or not desc.is_choice else not desc.case_sensitive,
        "range": (getattr(param, "min", None), getattr(param, "max", None)),
        "multiple": param.multiple,
        "default": param.default,
        "help": param.help,
        "metavar": param.metavar,
        "env var": param.envvar,
    }


def test_there_are_commands_to_check():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"classify", "detect", "train", "val", "export", "benchmark", "models", "weights list"} <= names


# One name with its own value where the thing resumed differs: train continues a run folder
# (--resume RUN_DIR); the inference commands finish their --output file (a flag).
OWN_VALUE = {("--resume", "train")}


def test_an_option_shared_by_several_commands_is_the_same_everywhere():
    # Shared by its long name (--output), or by what it sets (output): a command that spelled
    # an option differently (--out, --dev) would show up here as a difference in names.
    by_name: dict[str, list] = {}
    for path, cmd in COMMANDS:
        for param in _options(cmd):
            if (_longest(param), " ".join(path)) in OWN_VALUE:
                continue
            by_name.setdefault(_longest(param), []).append((" ".join(path), param))
            by_name.setdefault(f"the option setting {param.name!r}", []).append((" ".join(path), param))
    shared = {name: uses for name, uses in by_name.items() if len(uses) > 1}
    assert {"--output", "--device", "--workers", "--offline", "--batch-size", "--quiet"} <= set(shared)
    for name, uses in shared.items():
        first_command, first = uses[0]
        for command, param in uses[1:]:
            a, b = _identity(first), _identity(param)
            differ = [key for key in a if a[key] != b[key]]
            assert not differ, f"{name}: {first_command} and {command} differ in {differ}"


def test_a_short_or_long_name_means_one_option():
    meaning: dict[str, set] = {}
    for _, cmd in COMMANDS:
        for param in _options(cmd):
            for opt in (*param.opts, *param.secondary_opts):
                meaning.setdefault(opt, set()).add(_longest(param))
    assert {opt: names for opt, names in meaning.items() if len(names) > 1} == {}


def test_device_defaults_to_auto_and_choices_ignore_case_everywhere():
    for path, cmd in COMMANDS:
        for param in _options(cmd):
            if param.name == "device":
                assert param.default == "auto", path
            desc = getattr(param, "type_descriptor", None)
            if desc is not None and desc.is_choice:
                assert not desc.case_sensitive, (path, param.name)


def test_every_command_that_can_load_weights_has_offline():
    loaders = [path for path, cmd in COMMANDS if {p.name for p in cmd.params} & {"model", "weights", "pretrained"}]
    assert {("classify",), ("detect",), ("train",), ("val",), ("export",), ("benchmark",)} <= set(loaders)
    for path in loaders:
        cmd = dict(COMMANDS)[path]
        assert "offline" in {p.name for p in cmd.params}, path


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda p: " ".join(p) or "visiontool")
def test_help_at_80_columns_is_whole_and_ends_with_examples(path):
    cmd = dict(ALL)[path]
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, prog_name="visiontool")
    assert result.exit_code == 0, result.output
    text = result.stdout
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert "…" not in text

    # Examples end the help: two to four real command lines of this very command.
    tail = text[text.index("Examples:"):].splitlines()[1:]
    commands = [line.strip() for line in tail if line.strip()]
    assert 2 <= len(commands) <= 4, tail
    assert all("visiontool" in line for line in commands), commands
    if path:
        assert any(f"visiontool {' '.join(path)} " in line for line in commands), commands

    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        for name in (*param.opts, *param.secondary_opts) if param.param_type_name == "option" else ():
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} is cut off or missing"
        if getattr(param, "envvar", None):
            assert re.search(rf"\b{param.envvar}\b", text), f"{param.envvar} is cut off or missing"
    assert not PYTHON_TYPE_METAVAR.search(text), PYTHON_TYPE_METAVAR.search(text).group(0)

    # Required arguments look required in the usage line; optional ones look optional, or the
    # usage line says what they are the alternative to (train: DATA | --resume RUN_DIR).
    usage = lines[0]
    for param in cmd.params:
        if param.param_type_name != "argument" or param.hidden:
            continue
        assert param.metavar in usage
        if param.required:
            assert f"[{param.metavar}" not in usage, usage
        else:
            assert f"[{param.metavar}" in usage or "|" in usage, usage


def test_train_shows_data_as_required_unless_resuming():
    usage = runner.invoke(app, ["train", "--help"], prog_name="visiontool").stdout.splitlines()[0]
    assert usage == "Usage: visiontool train [OPTIONS] (DATA | --resume RUN_DIR)"
    result = runner.invoke(app, ["train", "--model", "lenet5"])
    assert result.exit_code == 2 and "missing DATA" in result.stderr


def test_shell_completion_is_on():
    text = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in text and "--show-completion" in text


def test_choice_values_ignore_case():
    result = runner.invoke(app, ["train", "--optimizer", "Adam", "--scheduler", "STEP", "--augment", "None",
                                 "--task", "Classify", "--model", "lenet5"])
    assert result.exit_code == 2 and "missing DATA" in result.stderr  # parsed; stopped for want of data
    result = runner.invoke(app, ["train", "--optimizer", "Adamax"])
    assert result.exit_code == 2 and "'Adamax' is not one of" in result.stderr


def _readme_usage_blocks() -> dict[str, set[str]]:
    """command -> the options README's usage block of that command names."""
    blocks: dict[str, set[str]] = {}
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        current = None
        for line in block.splitlines():
            m = re.match(r"visiontool ((?:weights )?[a-z]+)\b", line)
            if m and "|" not in line.split("[")[0]:
                current = m.group(1)
                blocks.setdefault(current, set())
            elif not line.startswith(" "):
                current = None
            if current is not None:
                blocks[current] |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line))
    return blocks


def test_readme_usage_lists_exactly_each_commands_options():
    blocks = _readme_usage_blocks()
    names = [" ".join(path) for path, _ in COMMANDS]
    assert [name for name in names if name not in blocks] == [], "commands without a usage line in README"
    assert sorted(set(blocks) - set(names)) == [], "README usage lines of commands the app lacks"
    checked = 0
    for path, cmd in COMMANDS:
        name = " ".join(path)
        app_options = {_longest(p) for p in _options(cmd)} | {
            o for p in _options(cmd) for o in p.secondary_opts if o.startswith("--")}
        assert blocks[name] == app_options, (name, "README only:", blocks[name] - app_options,
                                             "app only:", app_options - blocks[name])
        checked += 1
    assert checked >= 10


def test_every_inference_command_can_resume_shard_and_limit_pixels():
    # An inference command: it takes SOURCES and writes rows to --output; the shared runner gives
    # each the same long-run options (README, "Long runs").
    inference = [(path, cmd) for path, cmd in COMMANDS
                 if any(p.name == "sources" for p in cmd.params) and any("--output" in p.opts for p in _options(cmd))]
    assert {" ".join(path) for path, _ in inference} >= {"classify", "detect"}
    for path, cmd in inference:
        names = {_longest(p) for p in _options(cmd)}
        assert {"--resume", "--shard", "--max-pixels"} <= names, (path, names)
