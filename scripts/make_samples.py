"""Rebuild samples/: a few held-out MNIST digits and a few photos from scikit-image.

    python scripts/make_samples.py

Digits come from the held-out split of scripts/make_mnist_folder.py (never trained on), named
<digit>_<index>.png so a reader can check the answers; photos are scikit-image's public-domain
test images, saved as JPEG at most 512 px on the long side.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def main() -> None:
    digits = ROOT / "samples" / "digits"
    photos = ROOT / "samples" / "photos"
    for folder in (digits, photos):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_mnist_folder.py"), tmp], check=True)
        for digit in range(10):
            first = sorted((Path(tmp) / "heldout" / str(digit)).iterdir())[0]
            shutil.copy(first, digits / f"{digit}_{first.stem}.png")

    import skimage.data

    for name in PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        img.thumbnail((512, 512))
        img.save(photos / f"{name}.jpg", quality=90)
    print(f"wrote {digits} and {photos}")


if __name__ == "__main__":
    main()
