"""Parameter groups, learning-rate schedules, batch augmentation and metrics of the engine."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visiontool.train.augment import Augmenter, crop_flip, sample_params
from visiontool.train.metrics import Accumulator
from visiontool.train.optim import build_optimizer, build_scheduler, lr_factor


def _mixed_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8, bias=False),
        nn.GroupNorm(2, 8), nn.Flatten(), nn.LazyLinear(16), nn.LayerNorm(16), nn.Linear(16, 3),
    )


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_no_weight_decay_on_norms_and_biases(name):
    model = _mixed_model()
    model(torch.zeros(1, 3, 8, 8))  # materialize the lazy layer
    opt = build_optimizer(model, name, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"])
    plain = sorted(names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"])
    assert decayed == ["0.weight", "3.weight", "6.weight", "8.weight"]
    assert plain == ["0.bias", "1.bias", "1.weight", "4.bias", "4.weight", "6.bias", "7.bias", "7.weight", "8.bias"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_torchvision_model_groups_cover_every_parameter_once():
    from visiontool.models import registry

    model = registry.build("mobilenet_v3_small", 5)
    opt = build_optimizer(model, "adamw", 1e-3, 0.9, False, 0.05)
    grouped = [p for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
    norms = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert norms and not any(id(w) in decayed for w in norms)
    assert all(p.ndim > 1 for p in opt.param_groups[0]["params"])


def _lrs(kind: str, total: int, warmup: int) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, total, warmup, kind)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_step_or_constant():
    lrs = _lrs("cosine", 100, 10)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.01, abs=1e-3)
    steps = _lrs("step", 100, 0)
    assert (steps[0], steps[49], steps[50], steps[74], steps[75], steps[99]) == pytest.approx(
        (1.0, 1.0, 0.1, 0.1, 0.01, 0.01)
    )
    assert set(_lrs("none", 20, 0)) == {1.0}
    assert lr_factor(0, 10, 0, "cosine") == 1.0


def test_crop_flip_identity_mirror_and_determinism():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    whole = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, -1.0, 0.0]], dtype=torch.float64)
    out = crop_flip(images, whole, 16)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out[0], images[0].float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(out[1], images[1].float().flip(-1), atol=1e-3, rtol=0)
    # a crop of the left half, upscaled: the left column of the crop is the image's left column
    half = torch.tensor([[0.5, 1.0, -0.5, 0.0, 1.0, 0.0]], dtype=torch.float64)
    left = crop_flip(images[:1], half, 16)
    assert torch.allclose(left[0, :, :, 0], images[0, :, :, 0].float(), atol=40)

    a = sample_params(64, torch.Generator().manual_seed(1))
    b = sample_params(64, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    w, h, cx, cy = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    assert ((w * h) >= 0.25 * 0.74).all() and (w <= 1).all() and (h <= 1).all()
    assert (cx.abs() <= 1 - w + 1e-9).all() and (cy.abs() <= 1 - h + 1e-9).all()
    assert set(a[:, 4].tolist()) == {-1.0, 1.0}

    # --no-flip and --crop-scale: no mirrored image, crops keep at least that share of the area,
    # and the other draws (positions) are those of the default run with the same seed
    c = sample_params(64, torch.Generator().manual_seed(1), crop_scale=0.8, flip=False)
    assert set(c[:, 4].tolist()) == {1.0}
    assert ((c[:, 0] * c[:, 1]) >= 0.8 * 0.74).all()
    assert torch.equal(c[:, 5], a[:, 5])


@pytest.mark.parametrize("kind", ["randaugment", "trivialaugment"])
def test_policies_run_on_uint8_and_repeat_with_the_same_params(kind):
    aug = Augmenter(kind, 24)
    images = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    params = sample_params(4, torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    a = aug.on_host(images, params)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is left as it was
    assert torch.equal(a, aug.on_host(images, params))
    assert a.dtype == torch.uint8 and not torch.equal(a, images)
    assert aug.on_device(a, params).shape == (4, 3, 24, 24)


def test_accumulator_topk_confusion_and_per_class():
    acc = Accumulator(num_classes=6)
    logits = torch.tensor([
        [9, 8, 7, 6, 5, 0],  # true 0: top-1 right
        [1, 0, 9, 8, 7, 6],  # true 1: wrong, and not in the top 5
        [0, 9, 8, 7, 6, 5],  # true 2: wrong, in the top 5
        [0, 1, 2, 9, 3, 4],  # true 3: right
    ], dtype=torch.float32)
    targets = torch.tensor([0, 1, 2, 3])
    acc.update(logits[:2], targets[:2], torch.tensor(2.0))
    acc.update(logits[2:], targets[2:], torch.tensor(4.0))
    s = acc.summary(list("abcdef"))
    assert (s.count, s.top1, s.top5, s.k, s.loss) == (4, 0.5, 0.75, 5, 1.5)
    assert s.per_class == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": None, "f": None}
    assert s.confusion[1][2] == 1 and s.confusion[2][1] == 1 and sum(map(sum, s.confusion)) == 4
    d = s.to_dict()
    assert d["per_class"][0] == {"label": "a", "images": 1, "accuracy": 1.0}


def test_default_learning_rates_and_evaluation_preprocessing():
    from visiontool.preprocess import Preprocess
    from visiontool.train.config import TrainConfig
    from visiontool.train.classify import eval_preprocess

    def lr(**kw):
        return TrainConfig(data="d", model="m", **kw).resolve().lr

    assert lr() == pytest.approx(5e-3)
    assert lr(batch_size=16) == pytest.approx(5e-3 * 0.5)  # adaptive: sqrt of the batch ratio
    assert lr(optimizer="sgd", batch_size=256) == pytest.approx(0.2)  # sgd: linear
    assert lr(pretrained=True) == pytest.approx(1e-3)
    assert lr(lr=0.3) == 0.3
    imagenet = Preprocess(crop=224, resize=256)
    assert eval_preprocess(imagenet, None, keep_margin=True) == imagenet
    assert (eval_preprocess(imagenet, 64, keep_margin=True).resize, eval_preprocess(imagenet, 64, True).crop) == (73, 64)
    scratch = eval_preprocess(imagenet, 64, keep_margin=False)
    assert (scratch.crop, scratch.resize, scratch.mean) == (64, 64, imagenet.mean)


def test_slow_batchnorm_momenta_are_raised_for_short_runs():
    from visiontool.models import registry
    from visiontool.train.engine import _settle_batchnorm

    model = registry.build("mobilenet_v3_small", 3)  # ships BN momentum 0.01
    _settle_batchnorm(model, steps_per_epoch=14)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
    model = registry.build("mobilenet_v3_small", 3)
    _settle_batchnorm(model, steps_per_epoch=1000)  # long epochs: 0.01 settles in time, kept
    assert {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
