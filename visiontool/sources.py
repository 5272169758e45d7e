"""Turn what a user typed (files, folders, globs, @list.txt, '-') into one ordered list of paths.

Rules, in the order a source is tried:
- `-`: paths on stdin, one a line.
- `@FILE`: paths in FILE, one a line; relative paths are relative to FILE's folder; blank
  lines and lines starting with '#' are ignored.
- an existing folder: every file in it whose name says image (.jpg, .png, ...) or whose
  content says image (a PNG named .dat); one that then cannot be decoded gets an error row, so
  no image-named file vanishes from the output. Other files (notes.txt) and hidden files and
  folders (.DS_Store) are skipped; subfolders only with `recursive`; symlinked folders are
  followed once, so a link loop ends instead of hanging.
- an existing file: kept even if it is not an image (it gets its own error row later).
- otherwise a glob pattern (`**` spans any depth of folders, as in shells): the files it
  matches that a folder would keep.
Paths listed in a list file or on stdin count as named: files are kept, folders expanded.
Within a folder the order is natural (img2 before img10) and stable; duplicates (the same
file by another spelling or through a symlink) are dropped, keeping the first. A source that names nothing raises UsageError naming it.
No torch here.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from typing import Iterable, Sequence, TextIO, TypeVar

from visiontool.errors import UsageError
from visiontool.imageio import sniff

T = TypeVar("T")

_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")
# Kept when a folder holds them whatever they hold: an empty or broken file named like an image
# gets an error row that tells the user, rather than no row at all.
_IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .gif .bmp .tif .tiff .webp .ppm .pgm .pbm .pnm .ico .jp2 .qoi".split()
)


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value ("img2" < "img10"), ties broken by the raw name."""
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def expand(sources: Sequence[str], recursive: bool = False, stdin: TextIO | None = None) -> list[str]:
    """Expand `sources` into image paths (see the module docstring for the rules)."""
    if not sources:
        raise UsageError("no sources given: name image files, folders, globs, @list.txt or '-'")
    out: list[str] = []
    for source in sources:
        if source == "-":
            named = _read_paths(stdin if stdin is not None else sys.stdin, base="")
            if not named:
                raise UsageError("no paths on stdin ('-')")
            out += _expand_named(named, recursive)
        elif source.startswith("@") and len(source) > 1:
            out += _expand_named(_read_list_file(source[1:]), recursive)
        elif os.path.isdir(source):
            found = _scan_folder(source, recursive, top_level=True)
            if not found:
                hint = "" if recursive else " (its subfolders are searched only with --recursive)"
                raise UsageError(f"no images found in folder {source}{hint}")
            out += found
        elif os.path.lexists(source):
            out.append(source)
        elif _GLOB_CHARS.search(source):
            found = _expand_glob(source, recursive)
            if not found:
                raise UsageError(f"no images match {source}")
            out += found
        else:
            raise UsageError(f"source not found: {source}")
    return _unique(out)


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """The share of `items` that process `rank` of `world` handles: every world-th item."""
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"invalid shard: rank {rank} of world size {world}")
    return list(items[rank::world])


def _read_list_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            named = _read_paths(f, base=os.path.dirname(path))
    except FileNotFoundError:
        raise UsageError(f"list file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"list file is a folder: {path}") from None
    except OSError as e:
        raise UsageError(f"cannot read list file {path}: {e.strerror or e}") from None
    if not named:
        raise UsageError(f"list file {path} names no paths")
    return named


def _read_paths(lines: Iterable[str], base: str) -> list[str]:
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            paths.append(line if os.path.isabs(line) else os.path.join(base, line))
    return paths


def _expand_named(paths: list[str], recursive: bool) -> list[str]:
    # A listed path that is missing stays in: one stale line must not abort a long run, and
    # its row will say "file not found".
    out: list[str] = []
    for p in paths:
        out += _scan_folder(p, recursive, top_level=False) if os.path.isdir(p) else [p]
    return out


def _expand_glob(pattern: str, recursive: bool) -> list[str]:
    out: list[str] = []
    # `**` means "any depth", as in shells, with or without --recursive
    for match in sorted(glob.glob(pattern, recursive=recursive or "**" in pattern), key=natural_key):
        if os.path.isdir(match):
            out += _scan_folder(match, recursive, top_level=False)
        elif _is_candidate(match, match):
            out.append(match)
    return out


def _scan_folder(folder: str, recursive: bool, top_level: bool) -> list[str]:
    out: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # reached again through a symlink: a loop, or a second way in
            return
        seen_dirs.add(key)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: natural_key(e.name))
        except PermissionError:
            if top_level and path == folder:
                raise UsageError(f"cannot read folder {folder}: permission denied") from None
            return
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = entry.is_file()
            except OSError:
                continue
            if is_dir:
                if recursive:
                    walk(entry.path)
            elif is_file and _is_candidate(entry.path, entry.name):
                out.append(entry.path)

    walk(folder)
    return out


def _is_candidate(path: str, name: str) -> bool:
    """Named like an image, or starts like one (read only when the name says nothing)."""
    return os.path.splitext(name)[1].lower() in _IMAGE_SUFFIXES or bool(sniff(path))


def _unique(paths: list[str]) -> list[str]:
    """The first path to each file: two spellings of a path, or a symlink and its target (or two
    links to one file), are one file, read once."""
    seen: set = set()
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            key: object = (st.st_dev, st.st_ino)
        except OSError:  # missing: its row will say so; compare by name
            key = os.path.normcase(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def short_path(path: str, width: int | None = None) -> str:
    """A path as a table shows it: relative to the working folder when it is below it, and at
    most `width` characters (default: half the terminal) by cutting its start, not the file
    name that tells rows apart: "…/2024/05/IMG_0042.jpg"."""
    rel = os.path.relpath(path)
    shown = path if rel.startswith("..") else rel
    if width is None:
        import shutil

        width = max(24, shutil.get_terminal_size().columns // 2)
    return shown if len(shown) <= width else "…" + shown[len(shown) - width + 1:]
