"""Draw the style images of the shipped styles: pictures made here from numbers, so they are
this project's own (no licence but the project's).

    python scripts/style_images.py samples/styles

  glass.jpg    stained glass: Voronoi cells in jewel colours, each shaded from its centre,
               between dark leading lines
  swirls.jpg   brushwork: short strokes of blues, cyans and yellows that follow the swirls of a
               field of vortices, over a dark blue ground

Both are 512 x 512 JPEGs (quality 90) drawn from a generator seeded with --seed, so a seed gives
the same pictures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIDE = 512
# stained glass: ruby, amber, emerald, cobalt, violet, turquoise, gold (RGB)
GLASS = np.array([(155, 17, 30), (255, 160, 20), (10, 130, 60), (20, 60, 170),
                  (110, 40, 150), (20, 160, 170), (230, 200, 60)], np.float32)  # fmt: skip
LEAD = np.array((25, 22, 20), np.float32)
# brushwork: night blues, cyan, pale blue, yellows
STROKES = np.array([(18, 38, 92), (35, 75, 160), (70, 130, 200), (150, 200, 230),
                    (240, 220, 90), (250, 240, 180), (20, 90, 110)], np.float32)  # fmt: skip


def stained_glass(rng: np.random.Generator, side: int = SIDE, cells: int = 14) -> np.ndarray:
    """Stained glass: a jittered cells x cells grid of Voronoi seeds."""
    grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) + 0.5) * side / cells
    seeds = grid + rng.uniform(-0.4, 0.4, grid.shape) * side / cells
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    d = np.sqrt((x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2)
    nearest = np.argsort(d, axis=-1)[..., :2]
    d1 = np.take_along_axis(d, nearest[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, nearest[..., 1:], -1)[..., 0]
    cell = nearest[..., 0]
    colour = GLASS[rng.integers(len(GLASS), size=len(seeds))] * rng.uniform(0.75, 1.15, (len(seeds), 1))
    glow = np.clip(1.25 - 0.9 * d1 / (side / cells), 0.45, 1.25)  # lighter in the middle of a pane
    image = colour[cell] * glow[..., None]
    image += rng.normal(0, 6, image.shape)  # the glass is not flat
    lead = np.clip((d2 - d1 - 2.0) / 2.0, 0, 1)[..., None]  # 0 on the lines, soft 2 px edge
    return np.clip(lead * image + (1 - lead) * LEAD, 0, 255).astype(np.uint8)


def swirls(rng: np.random.Generator, side: int = SIDE, strokes: int = 7000) -> np.ndarray:
    """Brushwork along a field of a few vortices and a drift; colour follows a smooth field."""
    centres = rng.uniform(0, side, (7, 2))
    spins = rng.choice([-1.0, 1.0], 7) * rng.uniform(0.6, 1.4, 7)
    drift = rng.normal(0, 0.3, 2)

    def direction(p: np.ndarray) -> np.ndarray:
        v = np.tile(drift, (len(p), 1))
        for c, s in zip(centres, spins):
            r = p - c
            dist2 = (r**2).sum(1, keepdims=True) + (0.08 * side) ** 2
            v += s * np.stack([-r[:, 1], r[:, 0]], 1) * (0.15 * side) / dist2
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-6)

    # which colour where: a smooth random field, quantised into the palette
    low = rng.normal(size=(6, 6)).astype(np.float32)
    tone = np.asarray(Image.fromarray(low).resize((side, side), Image.Resampling.BICUBIC))
    tone = (tone - tone.min()) / (tone.max() - tone.min() + 1e-6)
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in STROKES[0]))
    draw = ImageDraw.Draw(canvas)
    for _ in range(strokes):
        p = rng.uniform(0, side, (1, 2))
        length, step = int(rng.integers(6, 18)), rng.uniform(2.0, 3.5)
        points = [tuple(p[0])]
        for _ in range(length):
            p = p + step * direction(p)
            points.append(tuple(p[0]))
        ix, iy = (int(np.clip(v, 0, side - 1)) for v in points[0])
        k = int(np.clip(tone[iy, ix] * len(STROKES) + rng.normal(0, 0.7), 0, len(STROKES) - 1))
        colour = np.clip(STROKES[k] * rng.uniform(0.85, 1.15) + rng.normal(0, 8, 3), 0, 255)
        draw.line(points, fill=tuple(int(v) for v in colour), width=int(rng.integers(3, 7)), joint="curve")
    return np.asarray(canvas.filter(ImageFilter.SMOOTH))


STYLES = {"glass": stained_glass, "swirls": swirls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for k, (name, draw) in enumerate(STYLES.items()):
        Image.fromarray(draw(np.random.default_rng([args.seed, k]))).save(args.out / f"{name}.jpg", quality=90)
    print(f"wrote {', '.join(f'{n}.jpg' for n in STYLES)} under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
