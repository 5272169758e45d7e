"""Options shared by several commands, defined once.

Nothing here (or anywhere in visiontool.cli at module level) imports torch, torchvision or
cv2: `visiontool --help` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (see `visiontool models`), a checkpoint written by `train`, "
        "a torchvision state_dict file (with --weights) or an .onnx file.",
    ),
]
Weights = Annotated[
    Optional[str],
    typer.Option(
        help="For torchvision names: DEFAULT, a weights name (IMAGENET1K_V2), none "
        "(random init) or a file (.safetensors, .pth state_dict).",
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per batch.")]
Workers = Annotated[
    Optional[int], typer.Option(min=0, help="Decoding workers (default: one per spare core).")
]
Offline = Annotated[
    bool,
    typer.Option(
        "--offline", envvar="VISIONTOOL_OFFLINE", help="Never use the network (also VISIONTOOL_OFFLINE=1)."
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
Output = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write rows to FILE.jsonl, .csv or .json (default: table, or JSONL when stdout is not a terminal)."),
]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")]
Backend = Annotated[
    Optional[str], typer.Option(help="torch or onnx (default: from the model argument).")
]
ExactDecode = Annotated[
    bool,
    typer.Option(help="Decode JPEGs at full size even when a reduced-size decode would do (slower, bit-exact with torchvision)."),
]
