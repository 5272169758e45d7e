"""Source expansion: what a user names on the command line becomes the right paths, in order."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from visiontool.errors import UsageError
from visiontool.sources import expand, natural_key, shard


def _png(path, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2), (9, 9, 9)).save(path, format=fmt)
    return str(path)


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """photos/ with images under odd names, a fake .jpg, hidden entries and a subfolder."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "photos"
    _png(root / "img10.jpg", fmt="JPEG")
    _png(root / "img2.jpg", fmt="JPEG")
    _png(root / "scan.dat")  # a PNG whose name says nothing
    (root / "notes.jpg").write_text("not a picture\n")
    (root / "README").write_text("hello\n")
    _png(root / ".thumb.png")
    _png(root / ".cache" / "x.png")
    _png(root / "sub" / "deep.png", fmt="BMP")
    return root


def test_folder_finds_images_by_name_or_content_in_natural_order(photos):
    # notes.jpg is text, kept for its name: its error row tells the user
    assert expand(["photos"]) == ["photos/img2.jpg", "photos/img10.jpg", "photos/notes.jpg", "photos/scan.dat"]


def test_recursive_folder_descends_and_skips_hidden(photos):
    got = expand(["photos"], recursive=True)
    assert got == ["photos/img2.jpg", "photos/img10.jpg", "photos/notes.jpg", "photos/scan.dat", "photos/sub/deep.png"]
    assert expand(["photos"], recursive=True) == got  # stable from run to run


def test_symlink_loop_terminates(photos):
    os.symlink("..", photos / "sub" / "up")  # photos/sub/up -> photos
    os.symlink(".", photos / "sub" / "self")
    got = expand(["photos"], recursive=True)
    assert sorted(got) == sorted(set(got))
    assert {os.path.basename(p) for p in got} == {"img2.jpg", "img10.jpg", "notes.jpg", "scan.dat", "deep.png"}
    assert len(got) == 5


def test_named_file_is_kept_even_if_not_an_image(photos):
    assert expand(["photos/notes.jpg", "photos/img2.jpg"]) == ["photos/notes.jpg", "photos/img2.jpg"]


def test_duplicates_removed_keeping_first(photos):
    got = expand(["photos/scan.dat", "photos", "./photos/img2.jpg"])
    assert got == ["photos/scan.dat", "photos/img2.jpg", "photos/img10.jpg", "photos/notes.jpg"]


def test_glob_matches_images_and_folders(photos):
    assert expand(["photos/*.jpg"]) == ["photos/img2.jpg", "photos/img10.jpg", "photos/notes.jpg"]
    assert expand(["photos/**/*.png"], recursive=True) == ["photos/sub/deep.png"]
    assert expand(["photos/**/*.png"]) == ["photos/sub/deep.png"]  # ** descends without --recursive
    assert expand(["photos/s*"]) == ["photos/scan.dat", "photos/sub/deep.png"]


def test_list_file_paths_are_relative_to_the_list(photos, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    absolute = str(photos / "img10.jpg")
    (lists / "todo.txt").write_text(
        f"# chosen by hand\n\n../photos/img2.jpg\n  {absolute}  \n../photos/sub\n../photos/gone.jpg\n"
    )
    got = expand(["@lists/todo.txt"])
    assert got == ["lists/../photos/img2.jpg", absolute, "lists/../photos/sub/deep.png",
                   "lists/../photos/gone.jpg"]  # a stale line stays: its row reports it
    assert all(os.path.exists(p) for p in got[:3])


def test_stdin_paths(photos):
    got = expand(["-"], stdin=io.StringIO("photos/img2.jpg\n\n# skip\nphotos/scan.dat\n"))
    assert got == ["photos/img2.jpg", "photos/scan.dat"]
    with pytest.raises(UsageError, match="stdin"):
        expand(["-"], stdin=io.StringIO("\n"))


def test_missing_sources_are_named(photos):
    with pytest.raises(UsageError, match="source not found: photos/nope.jpg"):
        expand(["photos/img2.jpg", "photos/nope.jpg"])
    with pytest.raises(UsageError, match="list file not found: missing.txt"):
        expand(["@missing.txt"])
    with pytest.raises(UsageError, match=r"no images match photos/\*\.gif"):
        expand(["photos/*.gif"])
    with pytest.raises(UsageError, match="no sources"):
        expand([])


def test_folder_without_images_is_an_error_with_a_hint(photos, tmp_path):
    (tmp_path / "docs" / "inner").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("x")
    _png(tmp_path / "docs" / "inner" / "p.png")
    with pytest.raises(UsageError, match="no images found in folder docs .*--recursive"):
        expand(["docs"])
    assert expand(["docs"], recursive=True) == ["docs/inner/p.png"]


def test_empty_list_file(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(UsageError, match="names no paths"):
        expand([f"@{tmp_path / 'empty.txt'}"])


def test_natural_key_orders_numbers_by_value():
    names = ["b1", "a10", "a2", "A3", "a2.png", "a02"]
    assert sorted(names, key=natural_key) == ["a02", "a2", "a2.png", "A3", "a10", "b1"]


def test_shard_splits_without_overlap():
    items = list(range(10))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(UsageError):
        shard(items, 3, 3)


def test_short_path_keeps_the_distinguishing_end():
    from visiontool.sources import short_path

    long = "/data/archive/camera-uploads/2024/05/holiday/IMG_0042.jpg"
    assert short_path(long, width=24) == "…05/holiday/IMG_0042.jpg"
    assert len(short_path(long, width=24)) == 24
    assert short_path("/a/b.jpg", width=24) == "/a/b.jpg"
