"""Fast style transfer against pytorch/examples' fast_neural_style, on the same photos and weights.

    python benchmarks/stylize_compare.py [--data DIR] [--images 100] [--peer DIR] [--out DIR]
                                         [--peer-images N] [--optimize-steps 100]

The peer is `neural_style.py eval` of pytorch/examples (fast_neural_style/neural_style), run as
its README shows: one process per image. --peer (or $VT_FAST_NEURAL_STYLE) is that folder
(default /tmp/fast_neural_style/neural_style): copy it there from a checkout of
github.com/pytorch/examples; nothing of it lives in this repository.

Both sides run the same network: a seeded random-weights StyleNet (width 32: the peer's
TransformerNet layer for layer), saved as a visiontool checkpoint and, through a state-dict
mapping, as the peer's state_dict (its last layer scaled by 255: the peer works in [0, 255],
visiontool in [0, 1]). `same_output` checks that the two compute the same picture.

Figures (one JSON object on stdout; progress on stderr):
- whole: wall seconds for the folder. Peer: one `neural_style.py eval` process per image (with
  --peer-images N, the first N, and the mean per image times the folder's size); visiontool:
  `visiontool stylize DATA --style MODEL --save-dir OUT -o rows.jsonl -q`, one process, with the
  exported .onnx (onnx backend) and with the checkpoint (torch backend). Goal: >= 5x.
- compute: the network alone at 640x480, images/s. Peer: its TransformerNet as its eval runs
  it (torch.no_grad, batch 1), warm (after one image) and cold (the first image of a fresh
  process, which is what each of its eval processes computes); visiontool: the onnx backend on
  batches of 1 and of --batch-size preprocessed images, and the torch backend likewise; the
  ratios use onnx's best batch. Goal: onnx >= 1.5x the peer's.
- optimize: `visiontool stylize IMAGE --style STYLE --size 512 --loss-net random --steps N`
  seconds for one image (a photo of the folder, 512x683), at N and N/5 steps: their difference
  gives the seconds per step, the rest is start-up, loading and the style's Gram matrices. The
  loss network is the one that needs no download (--optimize-loss-net vgg16 where VGG-16's
  ImageNet weights are on disk).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's visiontool
import benchlib as bl  # noqa: E402
import make_data  # noqa: E402
from detect_folder import visiontool_cmd  # noqa: E402

PEER = Path(os.environ.get("VT_FAST_NEURAL_STYLE", "/tmp/fast_neural_style/neural_style"))
SEED = 0

# visiontool StyleNet module -> the peer's TransformerNet module (their names, our layout).
_PEER_NAMES = {"down1.1": "conv1.conv2d", "down1.2": "in1", "down2.1": "conv2.conv2d", "down2.2": "in2",
               "down3.1": "conv3.conv2d", "down3.2": "in3", "up2.1": "deconv1.conv2d", "up2.2": "in4",
               "up1.1": "deconv2.conv2d", "up1.2": "in5", "out.1": "deconv3.conv2d"}


def peer_state_dict(ours: dict) -> dict:
    """Our StyleNet's tensors under the peer's names; the last layer works in [0, 255]."""
    out = {}
    for key, value in ours.items():
        module, param = key.rsplit(".", 1)
        m = re.fullmatch(r"body\.(\d+)\.body\.([01])\.([12])", module)
        if m:
            block, conv, kind = int(m.group(1)) + 1, int(m.group(2)) + 1, m.group(3)
            name = f"res{block}.conv{conv}.conv2d" if kind == "1" else f"res{block}.in{conv}"
        else:
            name = _PEER_NAMES[module]
        out[f"{name}.{param}"] = value * 255.0 if module == "out.1" else value
    return out


def make_models(out: Path) -> tuple[Path, Path, Path]:
    """(checkpoint, its .onnx, the peer's .pth), written once."""
    import torch

    from visiontool import checkpoint
    from visiontool.models.registry import STYLENET_PREPROCESS
    from visiontool.models.stylenet import StyleNet

    out.mkdir(parents=True, exist_ok=True)
    ckpt, onnx_file, pth = out / "stylenet-random.safetensors", out / "stylenet-random.onnx", out / "peer-random.pth"
    if not ckpt.exists():
        torch.manual_seed(SEED)
        net = StyleNet()
        with torch.no_grad():  # affine norms away from 1 and 0, so the mapping is really tested
            for m in net.modules():
                if isinstance(m, torch.nn.InstanceNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
        checkpoint.save(ckpt, net.state_dict(), {"arch": "stylenet", "task": "stylize", "num_classes": 3,
                                                 "labels": [], "preprocess": STYLENET_PREPROCESS.to_dict(),
                                                 "arch_kwargs": {}})
        torch.save(peer_state_dict(net.state_dict()), pth)
    if not onnx_file.exists():
        exe, env = visiontool_cmd()
        run = bl.run_timed([*exe, "export", str(ckpt), "-o", str(onnx_file), "-q"], env=env)
        if run.returncode != 0:
            raise SystemExit("visiontool export failed")
    return ckpt, onnx_file, pth


def peer_net(pth: Path):
    import torch

    sys.path.insert(0, str(PEER))
    from transformer_net import TransformerNet  # the peer's own class

    net = TransformerNet()
    net.load_state_dict(torch.load(pth, weights_only=True))
    return net.eval()


def same_output(ckpt: Path, pth: Path, image: Path) -> dict:
    """How far apart, in 8-bit levels, the two networks' pictures of one photo are (they differ
    only by instance norm's epsilon, which meets inputs 255 times larger on the peer's side)."""
    import torch
    from PIL import Image

    from visiontool.models.loader import load_model

    x = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"), np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        theirs = peer_net(pth)(x).clamp(0, 255)
        ours = load_model(str(ckpt)).module(x / 255.0) * 255.0
    diff = (theirs - ours).abs()
    return {"max_diff_8bit": round(float(diff.max()), 3), "share_within_1_level": round(float((diff <= 1).float().mean()), 5)}


_COLD = """
import sys, time, torch
sys.path.insert(0, sys.argv[1])
from transformer_net import TransformerNet
net = TransformerNet(); net.load_state_dict(torch.load(sys.argv[2], weights_only=True)); net.eval()
x = torch.rand(1, 3, 480, 640) * 255
with torch.no_grad():
    start = time.perf_counter(); net(x); print(time.perf_counter() - start)
"""


def peer_compute(pth: Path, images: int) -> dict:
    import torch

    net = peer_net(pth)
    x = torch.rand(1, 3, 480, 640) * 255
    with torch.no_grad():
        net(x)
        start = time.perf_counter()
        for _ in range(images):
            net(x)
        warm = images / (time.perf_counter() - start)
    cold = [float(subprocess.run([sys.executable, "-c", _COLD, str(PEER), str(pth)], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(2)]
    return {"warm_images_per_s": round(warm, 3), "cold_first_image_seconds": round(min(cold), 3),
            "cold_images_per_s": round(1 / min(cold), 3), "threads": torch.get_num_threads()}


def our_compute(ckpt: Path, onnx_file: Path, paths: list[Path], batch_sizes: list[int]) -> dict:
    """Images/s of each backend alone, at each batch size (at 640x480 one image a batch can beat
    four: the maps of four no longer fit the caches), and the best."""
    out: dict = {}
    for batch_size in batch_sizes:
        for key, rate in _compute_at(ckpt, onnx_file, paths, batch_size).items():
            out.setdefault(key, {})[f"batch_{batch_size}"] = rate
    return {**out, **{f"{key}_best": max(rates.values()) for key, rates in out.items()}}


def _compute_at(ckpt: Path, onnx_file: Path, paths: list[Path], batch_size: int) -> dict:
    from visiontool import pipeline
    from visiontool.backends.onnx_backend import OnnxBackend
    from visiontool.backends.torch_backend import TorchBackend
    from visiontool.models.loader import load_model
    from visiontool.models.registry import STYLENET_PREPROCESS

    batches = [b.images for b in pipeline.batches([str(p) for p in paths], STYLENET_PREPROCESS, batch_size)]
    out = {}
    for name, backend in (("onnx", lambda: OnnxBackend(onnx_file, "cpu")),
                          ("torch", lambda: TorchBackend(load_model(str(ckpt)).module, "cpu"))):
        run = backend()
        run(batches[0][:1])  # warm up
        start = time.perf_counter()
        for b in batches:
            run(b)
        out[f"{name}_images_per_s"] = round(len(paths) / (time.perf_counter() - start), 3)
    return out


def main() -> int:
    """Runs this checkout's visiontool (`python -m visiontool`, the repository on PYTHONPATH)
    unless $VT_VISIONTOOL names an executable."""
    global PEER
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder of 640x480 JPEGs (default: OUT/photos640, written once)")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--peer", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/stylize_compare"))
    ap.add_argument("--peer-images", type=int, default=None, help="time the peer on the first N only")
    ap.add_argument("--compute-images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--optimize-steps", type=int, default=100, help="stylize's default")
    ap.add_argument("--optimize-loss-net", default="random")
    args = ap.parse_args()
    PEER = args.peer or PEER
    if not (PEER / "neural_style.py").exists():
        raise SystemExit(f"no neural_style.py in {PEER}: copy fast_neural_style/neural_style of "
                         "github.com/pytorch/examples there, or point --peer at it")
    exe, env = visiontool_cmd()

    data = args.data
    if data is None:
        data = args.out / "photos640"
        if not data.exists():
            make_data.write_jpegs(data, np.random.default_rng(SEED), count=args.images)
    paths = sorted(data.glob("*.jpg"))[: args.images]
    if len(paths) < args.images:
        raise SystemExit(f"{data} holds {len(paths)} JPEGs, not {args.images}")
    folder = args.out / f"folder{args.images}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for p in paths:
        os.symlink(p.resolve(), folder / p.name)
    ckpt, onnx_file, pth = make_models(args.out / "models")
    report = {"images": len(paths), "size": [640, 480], "cpus": os.cpu_count(),
              "same_output": same_output(ckpt, pth, paths[0])}

    # Whole runs.
    peer_paths = paths[: args.peer_images] if args.peer_images else paths
    peer_out = args.out / "peer-out"
    shutil.rmtree(peer_out, ignore_errors=True)
    peer_out.mkdir()
    runs = [bl.run_timed([sys.executable, str(PEER / "neural_style.py"), "eval", "--content-image", str(p),
                          "--model", str(pth), "--output-image", str(peer_out / p.name)], quiet=True)
            for p in peer_paths]
    if any(r.returncode for r in runs):
        raise SystemExit("the peer failed; run one of its commands by hand to see why")
    peer_seconds = sum(r.seconds for r in runs) * len(paths) / len(peer_paths)
    whole = {"peer": {"seconds": round(peer_seconds, 2), "images_timed": len(peer_paths),
                      "seconds_per_image": round(peer_seconds / len(paths), 3),
                      "loadavg_before": runs[0].load_before, "loadavg_after": runs[-1].load_after}}
    for name, model in (("visiontool_onnx", onnx_file), ("visiontool_torch", ckpt)):
        out = args.out / f"{name}-out"
        shutil.rmtree(out, ignore_errors=True)
        run = bl.run_timed([*exe, "stylize", str(folder), "--style", str(model), "--save-dir", str(out),
                            "--batch-size", str(args.batch_size), "-o", str(args.out / f"{name}.jsonl"), "-q"], env=env)
        whole[name] = {**run.as_dict(), "images_per_s": round(len(paths) / run.seconds, 3),
                       "speedup_vs_peer": round(peer_seconds / run.seconds, 2)}
    report["whole"] = whole

    compute = {"peer": peer_compute(pth, args.compute_images),
               "visiontool": our_compute(ckpt, onnx_file, paths[: args.compute_images], sorted({1, args.batch_size}))}
    peer_rate, ours = compute["peer"]["warm_images_per_s"], compute["visiontool"]["onnx_images_per_s_best"]
    compute["onnx_vs_peer_warm"] = round(ours / peer_rate, 2)
    compute["onnx_vs_peer_cold"] = round(ours / compute["peer"]["cold_images_per_s"], 2)
    report["compute"] = compute

    style = args.out / "style.png"
    make_data.to_pil(make_data.to_rgb(make_data.load("immunohistochemistry"))).save(style)
    timed = {}
    for steps in (args.optimize_steps // 5, args.optimize_steps):  # two lengths: per step, and the rest
        run = bl.run_timed([*exe, "stylize", str(paths[0]), "--style", str(style), "--size", "512",
                            "--loss-net", args.optimize_loss_net, "--steps", str(steps),
                            "--save-dir", str(args.out / "optimize-out"), "-o", str(args.out / "optimize.jsonl"), "-q"],
                           env=env)
        timed[steps] = run.as_dict()
    (short, a), (full, b) = timed.items()
    per_step = (b["seconds"] - a["seconds"]) / (full - short)
    report["optimize_512"] = {"loss_net": args.optimize_loss_net, "steps": full, "seconds_per_image": b["seconds"],
                              "seconds_per_step": round(per_step, 3),
                              "seconds_besides_steps": round(b["seconds"] - full * per_step, 2), "runs": timed}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
