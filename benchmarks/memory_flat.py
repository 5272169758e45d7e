"""Peak memory of `visiontool classify` as the number of images grows: it must stay flat.

    python benchmarks/memory_flat.py [--counts 1000 10000 100000]

Each run classifies a folder of N small digit images (hard links to samples/digits, so the
folder costs no disk) with the shipped lenet5-mnist, writing rows to a JSONL file, and records
the whole process's peak RSS and images/s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import benchlib as bl

ROOT = Path(__file__).resolve().parent.parent


def make_folder(folder: Path, count: int) -> None:
    digits = sorted((ROOT / "samples" / "digits").glob("*.png"))
    for sub in range(0, count, 10_000):  # a few sub-folders, as large collections have
        (folder / f"{sub // 10_000:03d}").mkdir(parents=True)
    for i in range(count):
        os.link(digits[i % len(digits)], folder / f"{i // 10_000:03d}" / f"{i:06d}.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 10_000, 100_000])
    args = ap.parse_args()
    exe = bl.visiontool_exe()
    runs = []
    for count in args.counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "imgs"
            make_folder(folder, count)
            out = Path(tmp) / "rows.jsonl"
            run = bl.run_timed([exe, "classify", str(folder), "-r", "--model", "lenet5-mnist",
                                "--batch-size", "256", "-o", str(out), "-q"], env=bl.offline_env())
            with out.open() as fh:
                rows = sum(1 for _ in fh)
            runs.append({"images": count, "rows": rows, **run.as_dict(),
                         "images_per_second": round(count / run.seconds, 1)})
    rss = [r["peak_rss_mb"] for r in runs]
    print(json.dumps({"benchmark": "memory_flat", "runs": runs,
                      "peak_rss_growth": round(rss[-1] / rss[0], 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
