"""Which loss network carries texture statistics best, and at what cost: the evidence behind
`style_loss`'s random network (README, "stylize").

    python benchmarks/loss_networks.py [--per-class 24] [--threads 1]

Texture retrieval: grey texture crops of make_data.py's six classes (brick, grass, blobs, moon,
tissue, stars; random scale, rotation, tone and noise; grey so that colour is no shortcut).
Gallery crops come from the top 70 % of each source image, queries from the rest. Each query
takes the class of the gallery crop nearest to it under the loss network's style distance (the
mean over style layers of |G(q) - G(g)| / |G(g)|, Gram matrices): the share of queries that get
their own class says how well the network's Gram matrices tell textures apart.

Cost: seconds of one forward and backward pass at 512x512 (what one step of `stylize --method
optimize` spends in the network), on --threads threads.

Candidates: the shipped random pyramid and variants of it (channels, kernels, depth, levels),
VGG-16 and VGG-19 with random weights (He et al. 2016's setting), raw pixels (the Gram of the
image itself: its second moments only, the floor), and VGG-16/19 with ImageNet weights when
they are on disk (never fetched here). Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import make_data  # noqa: E402

from visiontool import style_loss, weights  # noqa: E402


class Pixels(style_loss.LossNetwork):
    name = "pixels"
    style_layers = content_layers = ("image",)

    def forward(self, x):
        return {"image": x - 0.5}


def candidates() -> dict:
    """name -> (description, builder)."""
    rp = style_loss.RandomPyramid
    nets = {
        "random (shipped)": (f"pyramid {rp.LEVELS} levels, channels {rp.CHANNELS}, kernels {rp.KERNELS}", rp),
        "random, one layer": ("pyramid 4 levels, one 3x3 layer of 64", lambda: rp(channels=(64,), kernels=(3,))),
        "random, wide": ("pyramid 4 levels, channels (64, 128)", lambda: rp(channels=(64, 128))),
        "random, 5x5": ("pyramid 4 levels, kernels (3, 5)", lambda: rp(kernels=(3, 5))),
        "random, 3 layers": ("pyramid 4 levels, channels (32, 64, 64)", lambda: rp(channels=(32, 64, 64), kernels=(3, 3, 3))),
        "random, 2 levels": ("pyramid 2 levels", lambda: rp(levels=2)),
        "random, 5 levels": ("pyramid 5 levels", lambda: rp(levels=5)),
        "random vgg16": ("VGG-16 layers of Johnson et al., random weights", lambda: style_loss.VGGFeatures("vgg16")),
        "random vgg19": ("VGG-19 layers of Gatys et al., random weights", lambda: style_loss.VGGFeatures("vgg19")),
        "pixels": ("the image's own second moments", Pixels),
    }
    for arch in ("vgg16", "vgg19"):
        if weights.is_present(arch, "IMAGENET1K_V1"):
            nets[f"{arch} imagenet"] = ("ImageNet weights", lambda a=arch: style_loss.loss_network(a, offline=True))
    return nets


def texture_sets(per_class: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gallery, queries = [], []
    for label, name in enumerate(make_data.TEXTURES.values()):
        grey = make_data.to_grey(make_data.load(name))
        cut = int(grey.shape[0] * make_data.TRAIN_BAND)
        for band, out in ((grey[:cut], gallery), (grey[cut:], queries)):
            out += [(make_data.texture_crop(rng, band), label) for _ in range(per_class)]
    as_tensor = lambda items: torch.from_numpy(np.stack([c for c, _ in items])).permute(0, 3, 1, 2).float()
    return as_tensor(gallery), [l for _, l in gallery], as_tensor(queries), [l for _, l in queries]


def retrieval(net, gallery, g_labels, queries, q_labels) -> float:
    with torch.no_grad():
        fg, fq = net(gallery), net(queries)
    dist = 0.0
    for k in net.style_layers:
        gg, gq = style_loss.gram(fg[k]).flatten(1), style_loss.gram(fq[k]).flatten(1)
        dist = dist + torch.cdist(gq, gg) / gg.norm(dim=1).clamp_min(1e-12)[None]
    nearest = dist.argmin(dim=1)
    return float(np.mean([g_labels[int(n)] == t for n, t in zip(nearest, q_labels)]))


def step_seconds(net, side: int = 512, repeat: int = 2) -> float:
    img = torch.rand(1, 3, side, side, requires_grad=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        feats = net(img)
        sum(style_loss.gram(feats[k]).sum() for k in net.style_layers).backward()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", help="comma-separated candidate names (default: all)")
    ap.add_argument("--no-timing", action="store_true", help="texture retrieval only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the random VGGs
    sets = texture_sets(args.per_class)
    results = {}
    wanted = set(args.only.split(",")) if args.only else None
    for name, (what, build) in candidates().items():
        if wanted is not None and name not in wanted:
            continue
        net = build()
        acc = retrieval(net, *sets)
        secs = step_seconds(net) if name != "pixels" and not args.no_timing else None
        results[name] = {"what": what, "texture_retrieval_top1": round(acc, 3),
                         "step_seconds_512": None if secs is None else round(secs, 3)}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    print(json.dumps({"classes": list(make_data.TEXTURES), "queries": len(sets[3]), "gallery": len(sets[1]),
                      "chance": round(1 / len(make_data.TEXTURES), 3), "threads": args.threads,
                      "networks": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
