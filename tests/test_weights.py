"""Weights resolution (local folders, download from a local HTTP server, offline) and safe loading."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import pickle
import shlex
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from visiontool import weights
from visiontool.errors import UsageError, WeightsError

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty user and torch caches; network allowed unless a test says otherwise."""
    user = tmp_path / "user-weights"
    torch_home = tmp_path / "torch-home"
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_DIR", str(user))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("VISIONTOOL_OFFLINE", raising=False)
    monkeypatch.delenv("VISIONTOOL_WEIGHTS_URL", raising=False)
    return {"user": user, "hub": torch_home / "hub" / "checkpoints"}


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A 127.0.0.1 HTTP server over a folder, used as the weights mirror."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_URL", base)
    yield root, base
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def forbid_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def tiny_weights_file(folder: Path) -> tuple[Path, dict]:
    """A real torch.save'd state_dict named the torchvision way: name-<sha256 prefix>.pth."""
    state = torch.nn.Linear(3, 2).state_dict()
    scratch = folder / "scratch.pth"
    torch.save(state, scratch)
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    named = folder / f"tiny-{digest[:8]}.pth"
    scratch.rename(named)
    return named, state


def test_download_lands_in_user_weights_dir_announced_and_hash_checked(dirs, server, monkeypatch, capfd):
    root, base = server
    served, state = tiny_weights_file(root)
    official = weights.OFFICIAL_BASE_URL + served.name
    monkeypatch.setattr(weights, "weights_url", lambda arch, name: official)

    path = weights.resolve("resnet18", "DEFAULT", offline=False, quiet=True)

    assert path == dirs["user"] / served.name
    assert path.read_bytes() == served.read_bytes()
    assert os.listdir(dirs["user"]) == [served.name]  # no temp file left behind
    out, err = capfd.readouterr()
    assert f"downloading {base}{served.name} -> {path}" in err  # announced even with quiet
    assert out == ""
    loaded = weights.load_state_dict(path)
    assert torch.equal(loaded["weight"], state["weight"])

    # Second time: found in the cache, no network.
    forbid_network(monkeypatch)
    assert weights.resolve("resnet18", "DEFAULT", offline=True, quiet=True) == path
    assert weights.is_present("resnet18", "DEFAULT")


def test_corrupted_download_is_rejected_and_nothing_is_left(dirs, server, capfd):
    root, _ = server
    # The real resnet18 file name, so the expected hash comes from torchvision's own URL.
    (root / "resnet18-f37072fd.pth").write_bytes(b"not the real weights" * 100)

    with pytest.raises(WeightsError) as info:
        weights.resolve("resnet18", "IMAGENET1K_V1", offline=False, quiet=False)

    message = str(info.value)
    actual = hashlib.sha256(b"not the real weights" * 100).hexdigest()
    assert "f37072fd" in message and actual in message and "\n" not in message
    assert not dirs["user"].exists() or os.listdir(dirs["user"]) == []
    assert "downloading" in capfd.readouterr().err


@pytest.mark.parametrize("how", ["argument", "env"])
def test_offline_and_missing_names_file_url_and_folder(dirs, monkeypatch, how):
    forbid_network(monkeypatch)
    if how == "env":
        monkeypatch.setenv("VISIONTOOL_OFFLINE", "yes")

    with pytest.raises(WeightsError) as info:
        weights.resolve("resnet18", "IMAGENET1K_V1", offline=how == "argument", quiet=True)

    message = str(info.value)
    assert "\n" not in message
    assert "resnet18-f37072fd.pth" in message
    assert RESNET18_URL in message
    assert message.endswith(f"put it in {dirs['user']}")  # where a download would have put it


def test_file_in_user_weights_dir_is_used_without_network(dirs, monkeypatch):
    forbid_network(monkeypatch)
    dirs["user"].mkdir(parents=True)
    placed = dirs["user"] / "resnet18-f37072fd.pth"
    placed.write_bytes(b"placed by the user")

    # DEFAULT of resnet18 is IMAGENET1K_V1: the same file.
    assert weights.resolve("resnet18", "DEFAULT", offline=False, quiet=True) == placed
    assert weights.find_local("resnet18-f37072fd.pth") == placed
    assert weights.is_present("resnet18", "IMAGENET1K_V1")
    assert not weights.is_present("resnet50", "DEFAULT")


def test_file_in_torch_cache_is_used_without_network(dirs, monkeypatch):
    forbid_network(monkeypatch)
    dirs["hub"].mkdir(parents=True)
    cached = dirs["hub"] / "resnet18-f37072fd.pth"
    cached.write_bytes(b"cached by torchvision")
    assert weights.resolve("resnet18", "IMAGENET1K_V1", offline=True, quiet=True) == cached


def test_unreachable_server_names_url_and_folder(dirs, monkeypatch):
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_URL", "http://127.0.0.1:9/")  # discard port: refused
    with pytest.raises(WeightsError) as info:
        weights.resolve("resnet18", "IMAGENET1K_V1", offline=False, quiet=True)
    message = str(info.value)
    assert "http://127.0.0.1:9/resnet18-f37072fd.pth" in message
    assert message.endswith(f"put it in {dirs['user']}")
    assert not dirs["user"].exists() or os.listdir(dirs["user"]) == []


def test_missing_on_server_is_a_weights_error(dirs, server):
    with pytest.raises(WeightsError, match="404"):
        weights.resolve("resnet18", "IMAGENET1K_V1", offline=False, quiet=True)


def test_unknown_weights_name_lists_known_ones():
    with pytest.raises(UsageError, match="IMAGENET1K_V2"):
        weights.weights_url("resnet50", "IMAGENET9K")
    with pytest.raises(UsageError, match="no_such_net"):
        weights.weights_url("no_such_net", "DEFAULT")
    assert weights.weights_url("resnet18", "default") == RESNET18_URL


def test_plain_state_dict_file_loads(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded = weights.load_state_dict(tmp_path / "model.pth")
    assert loaded.keys() == model.state_dict().keys()
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_wrapped_dataparallel_state_dict_is_unwrapped(tmp_path):
    state = torch.nn.Linear(4, 2).state_dict()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    loaded = weights.load_state_dict(tmp_path / "ckpt.pt")
    assert set(loaded) == {"weight", "bias"}
    assert torch.equal(loaded["bias"], state["bias"])


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file

    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(tensors, tmp_path / "w.safetensors")
    assert torch.equal(weights.load_state_dict(tmp_path / "w.safetensors")["w"], tensors["w"])


class RunsCode:
    """Unpickling this runs a shell command: what a malicious weights file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_crafted_pickle_is_refused_without_running(tmp_path, container):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    payload = {"weight": torch.zeros(2), "extra": RunsCode(marker)}
    if container == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))

    with pytest.raises(WeightsError, match="refused to unpickle"):
        weights.load_state_dict(evil)
    assert not marker.exists()

    # The payload is real: an unsafe load (in a throwaway process) does run it.
    unsafe = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", unsafe], capture_output=True, timeout=120)
    assert marker.exists()


def test_not_a_weights_file_is_one_line(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError) as info:
        weights.load_state_dict(junk)
    assert "\n" not in str(info.value) and "junk.pth" in str(info.value)
    with pytest.raises(WeightsError, match="not found"):
        weights.load_state_dict(tmp_path / "missing.pth")


def test_import_does_not_load_torch():
    code = "import sys, visiontool.weights; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_weights_pull_and_path_name_one_folder(dirs, server, monkeypatch):
    from typer.testing import CliRunner

    from visiontool.cli.app import app

    runner = CliRunner()
    root, _ = server
    served, _ = tiny_weights_file(root)
    monkeypatch.setattr(weights, "weights_url", lambda arch, name: weights.OFFICIAL_BASE_URL + served.name)

    # Absent: `path` says so without blaming the network, and names the folder `pull` fills.
    result = runner.invoke(app, ["weights", "path", "resnet18"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "network" not in message and "offline" not in message.lower()
    assert message == (f"error: {served.name} (resnet18 IMAGENET1K_V1) is not on disk: `visiontool weights pull "
                       f"resnet18.IMAGENET1K_V1` downloads it into {dirs['user']}, or download "
                       f"{server[1]}{served.name} and put it there")

    result = runner.invoke(app, ["weights", "pull", "resnet18", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{dirs['user'] / served.name}\n"
    forbid_network(monkeypatch)
    result = runner.invoke(app, ["weights", "path", "resnet18"])
    assert result.exit_code == 0 and result.stdout == f"{dirs['user'] / served.name}\n"


def _lenet_checkpoint(path, seed, labels=("a", "b", "c")):
    from visiontool import checkpoint
    from visiontool.models import registry

    torch.manual_seed(seed)
    module = registry.build("lenet5", len(labels))
    meta = {"arch": "lenet5", "task": "classify", "num_classes": len(labels), "labels": list(labels),
            "preprocess": {"crop": 32, "resize": 32, "mean": [0.5], "std": [0.5], "channels": 1},
            "arch_kwargs": {}, "train": {"command": f"visiontool train data --seed {seed}"}}
    return checkpoint.save(path, module.state_dict(), meta), module.state_dict()


def test_weights_average_writes_the_mean_of_one_models_checkpoints(tmp_path):
    from typer.testing import CliRunner

    from visiontool import checkpoint
    from visiontool.cli.app import app
    from visiontool.models.loader import load_model

    paths, states = zip(*(_lenet_checkpoint(tmp_path / f"run{k}.safetensors", k) for k in range(3)))
    out = tmp_path / "soup" / "mean.safetensors"
    result = CliRunner().invoke(app, ["weights", "average", *map(str, paths), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)  # the path alone on stdout, for scripts

    mean, meta = checkpoint.load(out)
    assert mean.keys() == states[0].keys()
    for name, tensor in mean.items():
        expected = sum(s[name].double() for s in states) / 3
        torch.testing.assert_close(tensor.double(), expected, rtol=0, atol=1e-6, msg=name)
        assert tensor.dtype == states[0][name].dtype
    assert meta["labels"] == ["a", "b", "c"] and meta["arch"] == "lenet5"
    assert [a["sha256"] for a in meta["train"]["averaged"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert meta["train"]["averaged"][1]["command"] == "visiontool train data --seed 1"
    assert load_model(str(out)).info.labels == ["a", "b", "c"]  # a checkpoint like any other


def test_weights_average_sets_how_a_segmentation_model_reads_an_image(tmp_path):
    """The shipped unet-digits is such a mean: its scales and guided filter are set here."""
    from typer.testing import CliRunner

    from visiontool import checkpoint
    from visiontool.cli.app import app
    from visiontool.models.loader import load_model

    out = tmp_path / "mean.safetensors"
    args = ["weights", "average", "unet-digits", "unet-digits", "-o", str(out), "-q"]
    result = CliRunner().invoke(app, [*args, "--scales", "1", "--guided-filter", "4"])
    assert result.exit_code == 0, result.output
    _, meta = checkpoint.load(out)
    assert "scales" not in meta and meta["guided_filter"] == 4  # scale 1 alone is recorded by its absence
    assert meta["train"]["command"].endswith("--scales 1 --guided-filter 4")
    module = load_model(str(out)).module
    assert (module.scales, module.guided_filter) == ((1.0,), 4)
    result = CliRunner().invoke(app, args[:-1] + ["--guided-filter", "0"])
    assert result.exit_code == 0, result.output
    shipped = load_model("unet-digits").module
    assert (load_model(str(out)).module.scales, load_model(str(out)).module.guided_filter) == (shipped.scales, 0)
    result = CliRunner().invoke(app, args + ["--guided-filter", "1"])
    assert result.exit_code == 2 and "error: --guided-filter: guided filter radius 1: give a whole number" in result.stderr
    first, _ = _lenet_checkpoint(tmp_path / "a.safetensors", 0)
    second, _ = _lenet_checkpoint(tmp_path / "b.safetensors", 1)
    result = CliRunner().invoke(app, ["weights", "average", str(first), str(second), "-o", str(tmp_path / "c.safetensors"),
                                      "--scales", "0.5,1"])
    assert result.exit_code == 2 and "set how a segmentation model reads an image" in result.stderr
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("second, message", [
    ("other-labels", "differ in labels"),
    ("unet-digits", "differ in arch"),
    ("resnet18", "resnet18 is an architecture, not a checkpoint"),
])
def test_weights_average_refuses_checkpoints_of_different_models(tmp_path, second, message):
    from typer.testing import CliRunner

    from visiontool.cli.app import app

    first, _ = _lenet_checkpoint(tmp_path / "a.safetensors", 0)
    if second == "other-labels":
        second = str(_lenet_checkpoint(tmp_path / "b.safetensors", 1, labels=("x", "y", "z"))[0])
    out = tmp_path / "mean.safetensors"
    result = CliRunner().invoke(app, ["weights", "average", str(first), second, "-o", str(out)])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p for p in ("a.safetensors", "b.safetensors") if (tmp_path / p).exists())
