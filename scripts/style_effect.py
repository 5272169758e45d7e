"""Measure what style networks do to photos they never saw, and draw it.

    python scripts/style_effect.py glass swirls --size 256 --sheet samples/outputs/styles.png

For every style network (a shipped style's name or a checkpoint of `train --task stylize`) and
every held-out photo (scripts/style_content.py's HELDOUT_PHOTOS, shorter side --size):
- `distance_in`, `distance_out`: style_loss.style_distance of the photo and of its painting to the
  style image as the network learned it (shorter side scaled to the training side: a style
  network paints its texture at a fixed size in pixels, whatever the photo's size), under the
  loss network the style was trained with (its checkpoint says which; --loss-net measures under
  another). 0 is the style image's own Gram statistics.
- `moved`: 1 - distance_out / distance_in, the share of the way from the photo to the style that
  the painting went (0.5: halfway).
- `ssim`: scikit-image's structural similarity of the painting's luminance to the photo's (1:
  the same structure), so the content stays recognisable.
The style image is the one the checkpoint names, looked up in --styles (checked by its sha256).
Prints one JSON object: per style, the rows and their means. --sheet also writes a contact sheet:
the photos on the first row, then per style its style image and its paintings.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LUMA = np.array([0.299, 0.587, 0.114])


def _content_script():
    spec = importlib.util.spec_from_file_location("_style_content", Path(__file__).with_name("style_content.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_out_photos(side: int) -> list[tuple[str, np.ndarray]]:
    """The held-out photos (never cropped for training), shorter side `side`, as uint8 RGB."""
    from PIL import Image

    content = _content_script()
    photos = []
    for source in content.HELDOUT_PHOTOS:
        photo = content.load_photo(*source)
        w, h = photo.size
        scale = side / min(w, h)
        photo = photo.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
        photos.append((content.stem(source[1]), np.asarray(photo)))
    return photos


def _tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255.0)


def _style_image(meta: dict, folder: Path) -> np.ndarray:
    from visiontool.imageio import decode

    style = meta.get("style") or {}
    path = folder / str(style.get("image", ""))
    if not path.is_file():
        sys.exit(f"error: the style image {style.get('image')!r} is not in {folder} (--styles)")
    if hashlib.sha256(path.read_bytes()).hexdigest() != style.get("sha256"):
        sys.exit(f"error: {path} is not the style image the network was trained on (sha256 differs)")
    return np.asarray(decode(path, "RGB"))


def measure(model: str, photos, styles_dir: Path, loss_net: str | None, side: int):
    """(report dict, style image, paintings) for one style network."""
    import torch
    from PIL import Image
    from skimage.metrics import structural_similarity

    from visiontool import checkpoint, style_loss
    from visiontool.models import registry
    from visiontool.models.loader import load_model

    path = Path(model) if Path(model).suffix else registry.get_spec(model).shipped_file
    meta = checkpoint.read_meta(path)
    style = _style_image(meta, styles_dir)
    w, h = style.shape[1], style.shape[0]
    scale = int(meta["preprocess"]["crop"]) / min(w, h)  # as training saw it: shorter side = the training side
    style_at = np.asarray(Image.fromarray(style).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
    net = style_loss.loss_network(loss_net or meta.get("loss_network", "random"))
    module = load_model(str(path)).module
    rows, paintings = [], []
    with torch.no_grad():
        for name, photo in photos:
            x = _tensor(photo)
            y = module(x).clamp(0, 1)
            painted = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            d_in = float(style_loss.style_distance(net, x, _tensor(style_at))[0])
            d_out = float(style_loss.style_distance(net, _tensor(painted), _tensor(style_at))[0])
            ssim = structural_similarity(photo @ LUMA, painted @ LUMA, data_range=255.0)
            rows.append({"photo": name, "distance_in": round(d_in, 4), "distance_out": round(d_out, 4),
                         "moved": round(1 - d_out / d_in, 4), "ssim": round(float(ssim), 4)})
            paintings.append(painted)
    report = {"model": model, "file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "loss_network": net.name, "size": side, "rows": rows,
              "mean_moved": round(float(np.mean([r["moved"] for r in rows])), 4),
              "min_moved": round(float(np.min([r["moved"] for r in rows])), 4),
              "mean_ssim": round(float(np.mean([r["ssim"] for r in rows])), 4)}
    return report, style, paintings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped style names or checkpoints")
    parser.add_argument("--size", type=int, default=256, help="shorter side of the photos (default 256)")
    parser.add_argument("--styles", type=Path, default=ROOT / "samples" / "styles",
                        help="folder of the style images (default samples/styles)")
    parser.add_argument("--loss-net", default=None, help="measure under this loss network (default: the one trained with)")
    parser.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet PNG here")
    parser.add_argument("--cell", type=int, default=144, help="contact sheet cell side (default 144)")
    args = parser.parse_args()
    photos = held_out_photos(args.size)
    reports, grid, tags = [], [[None, *(p for _, p in photos)]], [[None, *(n for n, _ in photos)]]
    for model in args.models:
        report, style, paintings = measure(model, photos, args.styles, args.loss_net, args.size)
        reports.append(report)
        grid.append([style, *paintings])
        tags.append([Path(model).stem, *([None] * len(paintings))])
        print(f"{model}: moved {report['mean_moved']:.2f} of the way to the style (min {report['min_moved']:.2f}), "
              f"luminance SSIM {report['mean_ssim']:.2f}", file=sys.stderr)
    if args.sheet is not None:
        from visiontool import render

        render.contact_sheet(grid, args.sheet, tags=tags, cell=args.cell)
    print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
