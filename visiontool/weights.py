"""Find, fetch and load model weights.

Official torchvision weights are looked up, in order, in the project's shipped weights folder,
the user weights folder ($VISIONTOOL_WEIGHTS_DIR, default ~/.cache/visiontool/weights) and
torchvision's own cache (torch.hub.get_dir()/checkpoints). Only when all miss, and the network
is allowed, is the official file downloaded into the user weights folder: announced,
sha256-checked against the hash prefix in its file name, written to a temp file and renamed.
Every message about a missing file names that same folder, so a file fetched by hand goes
where a download would have put it.

Loading a file never unpickles arbitrary objects: safetensors, or torch.load(weights_only=True).

torch, torchvision and rich are imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from visiontool.errors import UsageError, WeightsError, one_line
from visiontool.fsutil import atomic_write

if TYPE_CHECKING:
    import torch

OFFICIAL_BASE_URL = "https://download.pytorch.org/models/"
ENV_OFFLINE = "VISIONTOOL_OFFLINE"
ENV_WEIGHTS_DIR = "VISIONTOOL_WEIGHTS_DIR"
ENV_BASE_URL = "VISIONTOOL_WEIGHTS_URL"
_TRUTHY = {"1", "true", "yes", "on"}
# torchvision names its files "<name>-<first hex digits of the sha256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_CHUNK = 1 << 20


def is_offline(offline: bool = False) -> bool:
    """True when the caller or $VISIONTOOL_OFFLINE (1/true/yes) forbids the network."""
    return offline or os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUTHY


def shipped_dir() -> Path | None:
    """The folder of models the project ships (package visiontool.shipped = repo's weights/)."""
    # A source checkout uses its own weights/, even where another checkout is installed in editable
    # mode (its import hook would otherwise hand over that checkout's visiontool.shipped).
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights" / "__init__.py").is_file():
        return checkout / "weights"
    try:
        import visiontool.shipped as shipped

        for entry in shipped.__path__:
            if Path(entry).is_dir():
                return Path(entry)
    except ImportError:
        pass
    # A source checkout whose weights/ folder is not importable as a package.
    candidate = Path(__file__).resolve().parent.parent / "weights"
    return candidate if candidate.is_dir() else None


def user_weights_dir() -> Path:
    """$VISIONTOOL_WEIGHTS_DIR, or ~/.cache/visiontool/weights."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "visiontool" / "weights"


def hub_checkpoints_dir() -> Path:
    """torchvision's download cache: torch.hub.get_dir()/checkpoints (honours $TORCH_HOME)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[Path]:
    """Folders searched for a weights file, in order."""
    dirs = [d for d in (shipped_dir(),) if d is not None]
    return dirs + [user_weights_dir(), hub_checkpoints_dir()]


def find_local(file_name: str) -> Path | None:
    """The first existing `file_name` in the search folders, or None."""
    for folder in search_dirs():
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return None


def weights_url(arch: str, name: str) -> str:
    """The official URL of torchvision weights `name` ("DEFAULT", "IMAGENET1K_V1", ...) of `arch`."""
    import torchvision.models

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise UsageError(f"unknown torchvision architecture {arch!r}") from None
    key = name.strip().upper()
    if key == "DEFAULT":
        return enum.DEFAULT.url
    try:
        return enum[key].url
    except KeyError:
        known = ", ".join(["DEFAULT", *(w.name for w in enum)])
        raise UsageError(f"unknown weights {name!r} for {arch}; known: {known}") from None


def file_name_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def download_url(url: str) -> str:
    """`url` with the official base replaced by the mirror in $VISIONTOOL_WEIGHTS_URL, if set."""
    mirror = os.environ.get(ENV_BASE_URL)
    if mirror and url.startswith(OFFICIAL_BASE_URL):
        return mirror.rstrip("/") + "/" + url[len(OFFICIAL_BASE_URL) :]
    return url


def expected_hash_prefix(file_name: str) -> str | None:
    match = _HASH_IN_NAME.search(file_name)
    return match.group(1) if match else None


def is_present(arch: str, name: str) -> bool:
    """Whether torchvision weights `name` of `arch` are on disk already (no network)."""
    return find_local(file_name_of(weights_url(arch, name))) is not None


def resolve(arch: str, weights_name: str, offline: bool = False, quiet: bool = False, fetch: bool = True) -> Path:
    """A local file holding torchvision weights `weights_name` of `arch`, downloading if allowed;
    `fetch=False` only looks (and the error says how to get the file)."""
    url = weights_url(arch, weights_name)
    file_name = file_name_of(url)
    found = find_local(file_name)
    if found is not None:
        return found
    fetch_url = download_url(url)
    folder = user_weights_dir()
    missing = f"{file_name} ({arch} {weights_name}) is not on disk"
    if not fetch:
        raise WeightsError(f"{missing}: `visiontool weights pull {arch}.{weights_name}` downloads it into "
                           f"{folder}, or download {fetch_url} and put it there")
    if is_offline(offline):
        raise WeightsError(f"{missing} and the network is off (--offline / {ENV_OFFLINE}): "
                           f"download {fetch_url} and put it in {folder}")
    return download(fetch_url, folder / file_name, quiet=quiet)


def download(url: str, dest: Path, quiet: bool = False) -> Path:
    """Fetch `url` to `dest`, checking the sha256 prefix embedded in `dest`'s name."""
    expected = expected_hash_prefix(dest.name)
    if expected is None:
        raise WeightsError(f"cannot verify {dest.name}: its name carries no sha256 prefix")
    # Never silent, even with --quiet: the user must know the network was used and where to.
    print(f"downloading {url} -> {dest}", file=sys.stderr, flush=True)
    try:
        with atomic_write(dest) as tmp:
            actual = _fetch(url, tmp, quiet)
            if not actual.startswith(expected):
                raise WeightsError(
                    f"{url} is corrupt: sha256 {actual} does not start with the expected {expected}; "
                    "the file was discarded"
                )
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        is_http = isinstance(err, urllib.error.HTTPError)
        reason = err if is_http else getattr(err, "reason", None) or err
        raise WeightsError(
            f"could not download {url} ({one_line(reason)}); fetch it yourself and put it in {dest.parent}"
        ) from None
    except OSError as err:  # the destination folder, not the network
        raise WeightsError(f"cannot write {dest}: {err.strerror or err}") from None
    return dest


def _fetch(url: str, tmp: Path, quiet: bool) -> str:
    """Stream `url` into `tmp` with a progress bar on stderr; return the sha256 hex digest."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "visiontool"})
    with urllib.request.urlopen(request, timeout=60) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        received = 0
        with Progress(*columns, console=Console(stderr=True), disable=quiet, transient=True) as bar, open(
            tmp, "wb"
        ) as out:
            task = bar.add_task(file_name_of(url), total=total)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(task, advance=len(chunk))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


def load_state_dict(path: str | os.PathLike) -> dict[str, "torch.Tensor"]:
    """Tensors of a .safetensors file or a torch.save'd state_dict, on the CPU.

    Pickled files load with weights_only=True: anything but tensors and plain containers is
    refused. A {"state_dict": ...} or {"model": ...} wrapper and a DataParallel "module." prefix
    are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"cannot read {path} as safetensors: {one_line(err)}") from None

    wrong = wrong_file_message(path, "--weights")
    if wrong is not None:
        raise UsageError(wrong)

    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing;
            warnings.simplefilter("ignore")  # the refusal below is the message that matters
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise WeightsError(
                f"refused to unpickle {path}: it holds objects other than tensors, which could run "
                "code; save a plain state_dict (torch.save(model.state_dict(), ...)) or safetensors"
            ) from None
        raise WeightsError(f"cannot read {path}: {one_line(err)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"cannot read {path} as a PyTorch state_dict: {one_line(err)}") from None
    return _as_state_dict(loaded, path)


def _as_state_dict(loaded: object, path: Path) -> dict:
    import torch

    if isinstance(loaded, dict) and {"model", "optimizer", "epoch"} <= set(loaded):
        raise UsageError(
            f"{path} is the training state that `train --resume` reads, not weights with class names: "
            f"pass the run's checkpoint instead, --model {path.parent / 'best.safetensors'}"
        )
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state_dict")
    tensors = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors: not a state_dict")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    elif len(tensors) == len(loaded):
        return loaded  # keep torch's _metadata (layer versions) when nothing changed
    return tensors


# Leading bytes of files people hand over by mistake, and what they are.
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
)
_ADVICE = {
    "--weights": "pass a torch.save(model.state_dict()) or .safetensors file as --weights, or a "
                 "checkpoint written by `train` as --model",
    "--model": "pass a registry name (see `visiontool models`), a checkpoint written by `train` or "
               "an .onnx file as --model",
}


def wrong_file_message(path: Path, option: str = "--weights") -> str | None:
    """One line saying what `path` is and what to pass instead, when its content shows it is
    not a model or weights file (an image, a metrics table, text); None when it may be one.
    `option` is where it was given: --weights or --model."""
    with open(path, "rb") as f:
        head = f.read(4096)
    what = "weights" if option == "--weights" else "a model"
    if path.suffix.lower() == ".onnx":
        return None if option == "--model" else f"{path} is an ONNX model, not weights: pass it as --model"
    kind = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "a WebP image"
    if kind is not None and kind.endswith("image"):
        return (f"{path} is {kind}, not {what}: images are the inputs, as in "
                f"`visiontool classify {path} --model MODEL`; {_ADVICE[option]}")
    if kind is not None:
        return f"{path} is {kind}, not {what}: {_ADVICE[option]}"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or b"\x00" in head:
        return None  # torch.save's zip, a pickle, or other binary: the loaders say what they make of it
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if path.name == "results.csv" or text.startswith("epoch,"):
        return (f"{path} is a training run's table of metrics, not {what}: pass the run's checkpoint, "
                f"--model {path.parent / 'best.safetensors'}")
    kind = {".csv": "a CSV table", ".json": "a JSON file"}.get(path.suffix.lower(), "a text file")
    return f"{path} is {kind}, not {what}: {_ADVICE[option]}"


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors starts with a little-endian u64 header length and a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and header_len <= path.stat().st_size - 8
