"""Options shared by several commands, defined once: the same name, type, default and help
wherever they appear (tests/test_cli_surface.py checks the whole app for it).

Where commands need different defaults (batch size, model), the option's default is None and
its help names each command's; the command resolves it with `default_for`.

Nothing here (or anywhere in visiontool.cli at module level) imports torch, torchvision or
cv2: `visiontool --help` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer

TASK_NAMES = ("classify", "detect", "segment", "stylize")

# Per-command defaults of the options whose help lists them.
BATCH_SIZE = {"train": "64 (16 with --task detect)", "val": 64, "classify": 32, "benchmark": 32, "detect": 8,
              "segment": 8, "stylize": 4}
MODEL = {"classify": "resnet50", "detect": "griddet-digits", "segment": "lraspp_mobilenet_v3_large"}


def default_for(table: dict, command: str, value):
    """`value` when given, else `command`'s default from `table`."""
    return table[command] if value is None else value


def _listing(table: dict) -> str:
    by_value: dict = {}
    for command, value in table.items():
        by_value.setdefault(value, []).append(command)
    return ", ".join(f"{value} for {' and '.join(commands)}" for value, commands in by_value.items())


Model = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        show_default=False,
        help="A registry name (see `visiontool models`), a checkpoint written by `train`, an "
        "architecture with --weights FILE, or an .onnx file; train takes an architecture, or "
        "fine-tunes a checkpoint or a shipped model. "
        f"Default: {_listing(MODEL)}; train: griddet for --task detect, else required.",
    ),
]
Weights = Annotated[
    Optional[str],
    typer.Option(
        "--weights",
        metavar="WEIGHTS",
        show_default=False,
        help="For torchvision names: DEFAULT, a weights name (IMAGENET1K_V2), none "
        "(random init) or a file (.safetensors, .pth state_dict).",
    ),
]
Device = Annotated[
    str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (auto: cuda when there is one).")
]
BatchSize = Annotated[
    Optional[int],
    typer.Option(
        min=1,
        metavar="N",
        show_default=False,
        help=f"Images per batch (default: {_listing(BATCH_SIZE)}); train's is the global batch, "
        "split over the processes of a torchrun job.",
    ),
]
Workers = Annotated[
    Optional[int],
    typer.Option(min=0, metavar="N", show_default=False,
                 help="Image decoding workers (default: one per spare core)."),
]
Offline = Annotated[
    bool,
    typer.Option(
        "--offline", envvar="VISIONTOOL_OFFLINE", show_envvar=False,
        help="Never use the network; a missing weights file fails, naming where to put it "
        "(also VISIONTOOL_OFFLINE=1).",
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bars, summaries or notes; results are always shown."),
]
Output = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        show_default=False,
        help="Where results go: rows to FILE.jsonl, .csv or .json (classify, detect, segment, stylize; default: "
        "a table or JSON Lines on stdout); the .onnx file (export; default: next to a "
        "checkpoint, same stem); the run folder (train; default: runs/train/MODEL-N); the averaged "
        "checkpoint (weights average).",
    ),
]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Finish an interrupted run: keep the rows already in --output (or "
                 "in its .partial file), process only the inputs without one."),
]
Shard = Annotated[
    Optional[str],
    typer.Option(metavar="K/N", show_default=False,
                 help="Process share K of N (1 <= K <= N) of the inputs into its own part, "
                 "FILE.part-K-of-N.EXT; the last share to finish merges the parts into --output "
                 "(under torchrun each process takes its share by itself and rank 0 merges)."),
]
MaxPixels = Annotated[
    Optional[int],
    typer.Option(min=1, metavar="PIXELS", show_default=False,
                 help="Refuse images larger than this many pixels, from their header, before decoding "
                 "(default: 178,956,970, about 13,000 x 13,000; a guard against decompression bombs; "
                 "VISIONTOOL_MAX_PIXELS sets it for every command, train and val too)."),
]
DecodeTimeout = Annotated[
    Optional[float],
    typer.Option(min=0.001, metavar="SECONDS", show_default=False,
                 help="Give up on an image whose decoding takes longer than this and report it as an "
                 "error row (default: 60; VISIONTOOL_DECODE_TIMEOUT sets it for every command)."),
]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")]
Backend = Annotated[
    Optional[Literal["torch", "onnx"]],
    typer.Option(case_sensitive=False, metavar="torch|onnx", show_default=False,
                 help="torch or onnx (default: onnx for an .onnx model, else torch)."),
]
ExactDecode = Annotated[
    bool,
    typer.Option("--exact-decode", help="Decode JPEGs at full size even when a reduced-size decode "
                 "would do (slower, bit-exact with torchvision)."),
]
ImageSize = Annotated[
    Optional[int],
    typer.Option(min=8, metavar="PIXELS", show_default=False,
                 help="Side of the square input (default: the model's own; for torchvision's "
                 "detectors and segmentation models, the shorter side they resize to)."),
]
Classes = Annotated[
    Optional[List[str]],
    typer.Option(metavar="NAMES", show_default=False,
                 help="Only these classes: names or indices, comma-separated or repeated "
                 "(segment: the others count as background, class 0)."),
]
SaveDir = Annotated[
    Optional[Path],
    typer.Option(metavar="DIR", show_default=False,
                 help="Write pictures here, named by the input's stem (JPEG for JPEG inputs, else "
                 "PNG): detect's annotated images (default: none); segment's masks (STEM_mask.png) "
                 "and overlays (without it masks only, next to --output, rows.jsonl: rows-masks/, "
                 "or in ./segment-out); stylize's paintings (default: stylized/)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
Calibration = Annotated[
    Optional[Path],
    typer.Option(metavar="DIR", show_default=False,
                 help="Images to calibrate static int8 (QDQ, per-channel) on; without it, export "
                 "--int8 is dynamic and benchmark's onnx-int8 uses generated images."),
]
Task = Annotated[
    Optional[Literal["classify", "detect", "segment", "stylize"]],
    typer.Option(case_sensitive=False, metavar="classify|detect|segment|stylize", show_default=False,
                 help="The task: what train trains (default classify), which models `models` lists "
                 "(default: all)."),
]
Sources = Annotated[
    List[str],
    typer.Argument(metavar="SOURCES", help="Image files, folders, globs ('photos/**/*.jpg' descends), @list.txt, or - for paths on stdin."),
]
StyleImage = Annotated[
    Optional[Path],
    typer.Option(metavar="IMAGE", show_default=False,
                 help="The picture whose style a style network learns (train --task stylize; required there)."),
]
ContentWeight = Annotated[
    Optional[float],
    typer.Option(min=0, metavar="W", show_default=False,
                 help="Weight of the content loss, which keeps the input's features (default: 1 for "
                 "stylize --method optimize and train --task stylize)."),
]
StyleWeight = Annotated[
    Optional[float],
    typer.Option(min=0, metavar="W", show_default=False,
                 help="Weight of the style loss, the Gram matrices of the style image's features "
                 "(default: 100 for stylize --method optimize, 10 for train --task stylize)."),
]
TvWeight = Annotated[
    Optional[float],
    typer.Option(min=0, metavar="W", show_default=False,
                 help="Weight of the total-variation loss, which keeps the output smooth (default: 0)."),
]
LOSS_NETS = ("auto", "vgg16", "vgg19", "random")
LossNet = Annotated[
    Optional[Literal[LOSS_NETS]],
    typer.Option(case_sensitive=False, metavar="|".join(LOSS_NETS), show_default=False,
                 help="The network style losses are measured with: vgg16 or vgg19 (ImageNet weights, "
                 "fetched like `weights pull`), random (random filters, no download) or auto (default: "
                 "vgg16 when its weights are on disk or may be fetched, else random)."),
]
Width = Annotated[
    Optional[int],
    typer.Option(min=1, metavar="N", show_default=False,
                 help="Channels of the network's first layer; the others scale along (train --task "
                 "stylize: 32 by default, Johnson et al.'s; --task segment, a UNet from scratch: 16)."),
]
Scales = Annotated[
    Optional[str],
    typer.Option(metavar="S,S,...", show_default=False,
                 help="Segment each image at these scales of it and average the log class probabilities "
                 "(train --task segment: validation and the checkpoint do; weights average: the averaged "
                 "segmentation checkpoint does; costs one pass per scale; e.g. 0.75,1,1.25; default: 1, or "
                 "the fine-tuned checkpoint's, or the first averaged one's)."),
]
GuidedFilter = Annotated[
    Optional[int],
    typer.Option(min=0, metavar="RADIUS", show_default=False,
                 help="Pass the class probabilities through a guided filter of this radius in pixels, with the "
                 "image as the guide, so that the classes' edges follow the image's (train --task segment: "
                 "validation and the checkpoint do; weights average: the averaged segmentation checkpoint "
                 "does; e.g. 6; 0: none; default: none, or the fine-tuned checkpoint's, or the first "
                 "averaged one's)."),
]
