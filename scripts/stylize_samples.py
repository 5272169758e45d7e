"""Write README's side-by-side pictures of `stylize --method optimize`: samples/outputs/stylize-*.png.

    python scripts/stylize_samples.py [--size 192] [--steps 100] [--loss-nets random]

Each picture is one row: the content photo (samples/photos/chelsea.jpg), the style image, then
per loss network the optimised picture and the same with --preserve-color. Two styles: the
scikit-image immunohistochemistry sample ("no known copyright restrictions") and a mosaic this
script draws itself (seeded). Loss networks other than `random` need their ImageNet weights on
disk (nothing is fetched). Also writes the style images to samples/styles/.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visiontool import style_loss  # noqa: E402
from visiontool.style_optimize import optimize  # noqa: E402
from visiontool.tasks.stylize import preserve_color, to_uint8  # noqa: E402


def mosaic(side: int = 256, cells: int = 90, seed: int = 0) -> Image.Image:
    """Bold Voronoi tiles in a few saturated colours, with dark grout: a stained-glass look."""
    rng = np.random.default_rng(seed)
    palette = np.array([[214, 40, 40], [247, 127, 0], [252, 191, 73], [0, 119, 182], [42, 157, 143], [38, 70, 83]])
    centres = rng.uniform(0, side, (cells, 2))
    yy, xx = np.mgrid[0:side, 0:side]
    d = ((xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2)
    order = np.sort(d, axis=2)
    nearest = d.argmin(axis=2)
    img = palette[rng.integers(0, len(palette), cells)][nearest].astype(np.float32)
    grout = (np.sqrt(order[..., 1]) - np.sqrt(order[..., 0])) < 2.5
    img[grout] = 25
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def tensor(img: Image.Image, side: int) -> torch.Tensor:
    w, h = img.size
    s = side / min(w, h)
    img = img.convert("RGB").resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--loss-nets", default="random")
    args = ap.parse_args()
    import skimage.data

    styles_dir, out_dir = ROOT / "samples" / "styles", ROOT / "samples" / "outputs"
    styles_dir.mkdir(parents=True, exist_ok=True)
    styles = {"tissue": Image.fromarray(skimage.data.immunohistochemistry()).resize((256, 256), Image.Resampling.BICUBIC),
              "mosaic": mosaic()}
    content = tensor(Image.open(ROOT / "samples" / "photos" / "chelsea.jpg"), args.size)
    for name, style_img in styles.items():
        style_img.quantize(256).save(styles_dir / f"{name}.png", optimize=True)
        style = tensor(style_img, args.size)
        tiles = [content[0].numpy(), style[0].numpy()]
        for net_name in args.loss_nets.split(","):
            net = style_loss.loss_network(net_name, offline=True)
            loss = style_loss.Perceptual(net, style, 1.0, 100.0, 0.0)
            start = time.perf_counter()
            painted = optimize(content, loss, args.steps)[0].numpy()
            print(f"{name} {net_name}: {time.perf_counter() - start:.0f} s; style distance "
                  f"{float(style_loss.style_distance(net, content, style)):.3f} -> "
                  f"{float(style_loss.style_distance(net, torch.from_numpy(painted)[None], style)):.3f}",
                  file=sys.stderr)
            tiles += [painted, preserve_color(painted, content[0].numpy())]
        h = min(t.shape[1] for t in tiles)
        w = min(t.shape[2] for t in tiles)
        gap = np.ones((3, h, 4), np.float32)
        centre = lambda t: t[:, (t.shape[1] - h) // 2:][:, :h, (t.shape[2] - w) // 2:][:, :, :w]
        row = np.concatenate([part for t in tiles for part in (centre(t), gap)][:-1], axis=2)
        # A 256-colour palette keeps the repository small; the differences stay visible.
        Image.fromarray(to_uint8(row)).quantize(256).save(out_dir / f"stylize-{name}.png", optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
