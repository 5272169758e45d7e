"""Segmentation training: the shipped model's recipe (`visiontool train --task segment`, UNet)
against the plain PyTorch loop a user would write with torchvision's lraspp_mobilenet_v3_large
from scratch, on the same digit scenes; both scored by held-out mIoU.

    python scripts/digit_scenes.py DATA --format seg --train 2000 --val 100 --heldout 300
    python benchmarks/segment_train_compare.py DATA [--epochs 20] [--plain-epochs 20]
                                             [--device cpu] [--visiontool-args "..."]

The plain loop: a Dataset that reads each pair from disk, a random 160 px crop of image and mask
(scaled alike; the mask by "nearest-exact", which samples at pixel centres as bilinear does, so
that it stays on its image as visiontool's does) and normalization, a DataLoader with workers, Adam at 1e-3, cross-entropy with
ignore index 255, then the whole held-out images one by one. Both sides are scored by the same
function here on DATA/heldout (digits and backgrounds that training never saw). Reports wall
seconds and held-out mIoU per side. Target: visiontool's mIoU higher in less time.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl
import numpy as np

CROP = 160
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def visiontool_cmd(data: Path, out: Path, a: argparse.Namespace) -> list[str]:
    return [bl.visiontool_exe(), "train", "--task", "segment", str(data), "--epochs", str(a.epochs), "--no-flip",
            "--device", a.device, "--seed", "0", "--output", str(out), "--quiet", *shlex.split(a.visiontool_args)]


def _pairs(split: Path) -> list[tuple[Path, Path]]:
    return [(p, split / "masks" / (p.stem + ".png")) for p in sorted((split / "images").iterdir())]


def plain_loop(data: Path, epochs: int, batch_size: int, workers: int, device: str):
    """What a user writes from the torchvision docs: a Dataset, a DataLoader, a model, a loop."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    class Scenes(Dataset):
        def __init__(self, pairs):
            self.pairs = pairs

        def __len__(self):
            return len(self.pairs)

        def __getitem__(self, i):
            image = torch.from_numpy(np.array(Image.open(self.pairs[i][0]).convert("RGB"))).permute(2, 0, 1).float() / 255
            mask = torch.from_numpy(np.array(Image.open(self.pairs[i][1]))).long()
            h, w = mask.shape
            scale = float(np.exp(np.random.uniform(np.log(0.8), np.log(1.25))))
            side = min(round(CROP / scale), h, w)
            y, x = np.random.randint(0, h - side + 1), np.random.randint(0, w - side + 1)
            image = F.interpolate(image[None, :, y : y + side, x : x + side], size=(CROP, CROP), mode="bilinear")[0]
            mask = F.interpolate(mask[None, None, y : y + side, x : x + side].float(), size=(CROP, CROP), mode="nearest-exact")[0, 0]
            image = (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
            return image, mask.long()

    torch.manual_seed(0)
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=11).to(device)
    loader = DataLoader(Scenes(_pairs(data / "train")), batch_size=batch_size, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        model.train()
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            loss = F.cross_entropy(model(images)["out"], masks, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        bl.log(f"plain loop: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}")
    return model.eval()


def heldout_miou(model, data: Path, device: str, mean=MEAN, std=STD) -> float:
    """mIoU over the 11 classes on DATA/heldout, each image whole, from one confusion matrix."""
    import torch
    from PIL import Image

    from visiontool.train.metrics import PixelConfusion, segmentation_scores

    confusion = PixelConfusion(11)
    m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    with torch.inference_mode():
        for image_path, mask_path in _pairs(data / "heldout"):
            x = (torch.from_numpy(np.array(Image.open(image_path).convert("RGB"))).permute(2, 0, 1).float() / 255 - m) / s
            out = model(x[None].to(device))
            logits = out["out"] if isinstance(out, dict) else out
            confusion.update(logits.argmax(1)[0].cpu(), torch.from_numpy(np.array(Image.open(mask_path))))
    return segmentation_scores(confusion.confusion).miou


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--epochs", type=int, default=20, help="visiontool's epochs")
    ap.add_argument("--plain-epochs", type=int, default=None, help="the plain loop's epochs (default: --epochs)")
    ap.add_argument("--batch-size", type=int, default=16, help="the plain loop's batch")
    ap.add_argument("--workers", type=int, default=2, help="the plain loop's DataLoader workers")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--visiontool-args", default="")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--skip-visiontool", action="store_true")
    args = ap.parse_args()
    import torch

    from visiontool.models.loader import load_model

    report: dict = {"benchmark": "segment_train_compare", "data": str(args.data), "device": args.device,
                    "train_images": len(_pairs(args.data / "train")), "heldout_images": len(_pairs(args.data / "heldout")),
                    "crop": CROP}
    if not args.skip_visiontool:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            run = bl.run_timed(visiontool_cmd(args.data, out, args), env=bl.offline_env())
            loaded = load_model(str(out / "best.safetensors"))
            pp = loaded.info.preprocess
            report["visiontool"] = {**run.as_dict(), "model": loaded.info.arch, "epochs": args.epochs,
                                    "heldout_miou": round(heldout_miou(loaded.module.eval().to(args.device), args.data,
                                                                       args.device, pp.mean, pp.std), 4)}
    if not args.skip_plain:
        epochs = args.plain_epochs or args.epochs
        before = bl.loadavg()
        start = time.perf_counter()
        model = plain_loop(args.data, epochs, args.batch_size, args.workers, args.device)
        seconds = time.perf_counter() - start
        report["plain_pytorch"] = {"model": "lraspp_mobilenet_v3_large", "epochs": epochs, "batch_size": args.batch_size,
                                   "seconds": round(seconds, 3), "loadavg_before": before, "loadavg_after": bl.loadavg(),
                                   "heldout_miou": round(heldout_miou(model, args.data, args.device), 4)}
        del model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    vt, plain = report.get("visiontool"), report.get("plain_pytorch")
    if vt and plain:
        report["time_ratio"] = round(vt["seconds"] / plain["seconds"], 3)
        report["miou_delta"] = round(vt["heldout_miou"] - plain["heldout_miou"], 4)
        report["meets_target"] = vt["heldout_miou"] > plain["heldout_miou"] and vt["seconds"] < plain["seconds"]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
