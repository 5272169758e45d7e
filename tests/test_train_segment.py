"""`train --task segment` and `val` of segmentation checkpoints: the dataset's checks name the
file, the scores come from one pixel confusion matrix, a run resumes to the same numbers, and
`val --json` reproduces the training run's best epoch."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from visiontool.cli.app import app
from visiontool.errors import DatasetError
from visiontool.models.unet import UNet
from visiontool.train import segment_data
from visiontool.train.config import TrainConfig
from visiontool.train.engine import resume, train
from visiontool.train.metrics import PixelConfusion, segmentation_scores

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["ground", "red", "blue"]


def _scene(rng, side: int = 40):
    """A noisy grey image with a red and a blue rectangle; the mask marks them 1 and 2 and
    one pixel of each rectangle's border 255 (ignore)."""
    image = rng.integers(90, 160, (side, side, 3)).astype(np.uint8)
    mask = np.zeros((side, side), np.uint8)
    for label, colour in ((1, (220, 30, 30)), (2, (30, 30, 220))):
        h, w = rng.integers(8, 16, 2)
        y, x = rng.integers(0, side - h), rng.integers(0, side - w)
        image[y : y + h, x : x + w] = colour
        mask[y : y + h, x : x + w] = label
        mask[y, x] = 255
    return image, mask


def make_segmentation(root, train: int = 16, val: int = 6, palette: bool = True, classes: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        if not n:
            continue
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            image, mask = _scene(rng)
            Image.fromarray(image).save(root / split / "images" / f"{i:03d}.png")
            out = Image.fromarray(mask)
            if palette:
                out = out.convert("P")
                out.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [128] * (253 * 3))
            out.save(root / split / "masks" / f"{i:03d}.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


# ------------------------------------------------------------------------------------- metrics


def test_scores_of_a_hand_made_confusion():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    acc = PixelConfusion(3)
    acc.update(pred, target)
    # the ignored pixel (255, predicted 2) counts nowhere
    assert acc.confusion.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = segmentation_scores(acc.confusion)
    # IoU = TP / (TP + FP + FN): class 0: 2 / (2 + 1 + 1); class 1: 2 / (2 + 1 + 0); class 2: 1 / (1 + 0 + 1)
    assert s.iou == pytest.approx([0.5, 2 / 3, 0.5])
    assert s.miou == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert s.pixel_accuracy == pytest.approx(5 / 7)
    assert s.pixels == [3, 2, 2]


def test_a_class_neither_true_nor_predicted_is_left_out_of_the_mean():
    s = segmentation_scores([[3, 1, 0], [1, 1, 0], [0, 0, 0]])
    assert s.iou[2] is None
    assert s.miou == pytest.approx((3 / 5 + 1 / 3) / 2)


# -------------------------------------------------------------------------------------- model


def test_unet_answers_at_the_input_size_for_odd_sizes():
    model = UNet(5, widths=(8, 8, 16, 16, 16)).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 37, 51)).shape == (2, 5, 37, 51)


def test_unet_exports_to_onnx_with_dynamic_height_and_width(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = UNet(4, widths=(8, 8, 16, 16, 16)).eval()
    path = tmp_path / "unet.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), opset_version=17, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 45, 70)
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    assert got.shape == (1, 4, 45, 70)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("params", [(1.0, 0.3, 0.8, 1, 0, 0.0, 0.0), (1.0, 0.5, 0.5, 0, 1, 0.99, 0.4),
                                    (0.5, 0.2, 0.9, 1, 1, 0.99, 0.7)])
def test_crops_move_image_and_mask_together(params):
    from visiontool.train.segment import random_crop

    rng = np.random.default_rng(3)
    mask = rng.integers(0, 4, (70, 90)).astype(np.uint8)
    mask[40:50, 60:70] = 9  # a small class: a centred crop (class pick 0.99) must hold it
    image = np.repeat(mask[..., None] * 20, 3, axis=2)
    x, y = random_crop(image, mask, params, 48)
    assert x.shape == (3, 48, 48) and y.shape == (48, 48)
    if params[0] == 1.0:  # no scaling: every pixel of the image still says its class
        assert torch.equal(x[0], y.float() * 20)
    else:  # a window larger than the image: the part outside is ignored
        assert (y == 255).any() and set(y.unique().tolist()) - {255} <= set(range(4)) | {9}
    if params[4]:
        assert (y == 9).any()


def test_scaled_crops_keep_the_mask_on_its_image():
    """A mask resized with its image stays on it: over crops at many scales, a square's mask is
    centred where the square's bright pixels are (one crop's mask may be off by a fraction of a
    pixel, a whole pixel set being kept or not; on average none is)."""
    from visiontool.train.segment import random_crop

    mask = np.zeros((120, 120), np.uint8)
    mask[41:80, 37:76] = 1
    image = np.repeat(mask[..., None] * 255, 3, axis=2)
    offsets = []
    for scale in np.linspace(0.8, 1.25, 25):
        for u in (0.2, 0.5, 0.7):
            x, y = random_crop(image, mask, (scale, u, u, 0, 0, 0.0, 0.0), 100)
            ys, xs = np.nonzero(y.numpy() == 1)
            weight = x[0].numpy() / 255
            gy, gx = np.mgrid[: weight.shape[0], : weight.shape[1]]
            offsets.append((xs.mean() - (gx * weight).sum() / weight.sum(), ys.mean() - (gy * weight).sum() / weight.sum()))
    assert np.abs(np.mean(offsets, axis=0)).max() < 0.05


# ------------------------------------------------------------------------------------- dataset


def test_dataset_reads_palette_and_grey_masks_and_names_classes(tmp_path):
    root = make_segmentation(tmp_path / "p", train=3, val=2)
    ds = segment_data.scan_segmentation(root)
    assert ds.classes == CLASSES and ds.val_source == "val/" and len(ds.train) == 3
    decoded = segment_data.decode(ds.train, 1)
    assert set(np.unique(decoded.masks[0])) <= {0, 1, 2, 255}
    grey = make_segmentation(tmp_path / "g", train=5, val=0, palette=False, classes=False)
    ds = segment_data.scan_segmentation(grey, val_fraction=0.4, seed=1)
    assert (len(ds.train), len(ds.val)) == (3, 2) and "held out" in ds.val_source
    assert segment_data.settle_classes(ds, [segment_data.decode(ds.train, 1)]) == ["0", "1", "2"]


def _error(root) -> str:
    ds = segment_data.scan_segmentation(root)
    with pytest.raises(DatasetError) as err:
        segment_data.settle_classes(ds, [segment_data.decode(ds.train + ds.val, 1)])
    return str(err.value)


def test_each_dataset_fault_is_one_line_naming_its_file(tmp_path):
    root = make_segmentation(tmp_path / "d", train=3, val=0)
    masks = root / "train" / "masks"

    (masks / "001.png").rename(tmp_path / "kept.png")
    with pytest.raises(DatasetError, match=r"train/images/001.png: no mask .*001.png"):
        segment_data.scan_segmentation(root)
    (tmp_path / "kept.png").rename(masks / "001.png")

    Image.new("L", (41, 40)).save(masks / "002.png")
    assert _error(root) == f"{masks / '002.png'}: the mask is 41x40, its image 002.png is 40x40"

    Image.new("RGB", (40, 40)).save(masks / "002.png")
    assert _error(root).startswith(f"{masks / '002.png'}: the mask is RGB, not class indices")

    Image.fromarray(np.full((40, 40), 3, np.uint8)).save(masks / "002.png")
    message = _error(root)
    assert message.startswith(f"{masks / '002.png'}: class index 3 is out of range")
    assert "names 3 classes (0..2; 255 = ignore)" in message
    assert "\n" not in message


def test_a_dataset_fault_ends_train_with_exit_code_2(tmp_path):
    root = make_segmentation(tmp_path / "d", train=3, val=0)
    Image.new("RGB", (40, 40)).save(root / "train" / "masks" / "000.png")
    result = CliRunner().invoke(app, ["train", "--task", "segment", str(root), "--epochs", "1",
                                      "--output", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert "000.png: the mask is RGB" in result.output


# ------------------------------------------------------------------------------- training, val


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("segment")
    data = make_segmentation(tmp / "data")
    cfg = TrainConfig(task="segment", data=str(data), epochs=3, batch_size=8, image_size=32, lr=0.01,
                      flip=True, out=str(tmp / "run"), quiet=True)
    result = train(cfg)
    yield data, tmp / "run", result, cfg
    torch.set_num_threads(before)


def _rows(run_dir):
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def test_training_writes_its_run_folder_and_learns(trained):
    _, run, result, _ = trained
    assert {"best.safetensors", "last.safetensors", "results.csv", "curves.png", "val_predictions.png",
            "state.pt"} <= {p.name for p in run.iterdir()}
    rows = _rows(run)
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_pixel_acc", "val_miou", "lr", "seconds"]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert result.best_score == pytest.approx(max(float(r["val_miou"]) for r in rows), abs=1e-6)


def test_val_json_reproduces_the_best_epoch_by_an_independent_count(trained):
    """mIoU recomputed here from masks predicted by the checkpoint, class by class with numpy."""
    from visiontool.models.loader import load_model

    data, run, result, _ = trained
    out = CliRunner().invoke(app, ["val", str(run / "best.safetensors"), str(data), "--json", "-q"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert set(report) == {"model", "arch", "data", "images", "skipped", "pixel_accuracy", "miou", "per_class", "confusion"}
    assert report["arch"] == "unet" and report["images"] == 6 and report["skipped"] == 0
    assert [c["label"] for c in report["per_class"]] == CLASSES
    assert set(report["per_class"][0]) == {"label", "index", "pixels", "iou"}
    assert report["miou"] == pytest.approx(result.best_score, abs=1e-6)

    loaded = load_model(str(run / "best.safetensors"))
    pp = loaded.info.preprocess
    assert pp.fit == "none"
    inter, union, correct, scored = np.zeros(3), np.zeros(3), 0, 0
    for path in sorted((data / "val" / "images").iterdir()):
        truth = np.array(Image.open(data / "val" / "masks" / path.name))
        with torch.inference_mode():
            pred = loaded.module.eval()(torch.from_numpy(pp(Image.open(path)))[None]).argmax(1)[0].numpy()
        keep = truth != 255
        for k in range(3):
            inter[k] += np.sum((pred == k) & (truth == k) & keep)
            union[k] += np.sum(((pred == k) | (truth == k)) & keep)
        correct += np.sum((pred == truth) & keep)
        scored += keep.sum()
    assert report["pixel_accuracy"] == pytest.approx(correct / scored, abs=1e-6)
    assert report["miou"] == pytest.approx(np.mean(inter[union > 0] / union[union > 0]), abs=1e-6)
    assert [c["iou"] for c in report["per_class"]] == pytest.approx(list(inter / union), abs=1e-6)


def test_val_prints_the_per_class_table(trained):
    data, run, _, _ = trained
    out = CliRunner().invoke(app, ["val", str(run / "best.safetensors"), str(data), "-q"])
    assert out.exit_code == 0, out.output
    assert "mIoU" in out.stdout and "Per class" in out.stdout
    assert all(name in out.stdout for name in CLASSES)


def test_an_interrupted_run_resumes_to_the_same_numbers(trained, tmp_path):
    _, run, _, cfg = trained

    def stop_after_one(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "cut")}), on_epoch_end=stop_after_one)
    resume(tmp_path / "cut")
    straight, resumed = _rows(run), _rows(tmp_path / "cut")
    assert [r["val_miou"] for r in resumed] == [r["val_miou"] for r in straight]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in straight]


def test_a_checkpoint_is_fine_tuned_with_its_weights_and_a_new_head_for_other_classes(trained, tmp_path):
    from safetensors.torch import load_file

    data, run, _, cfg = trained
    start = load_file(run / "best.safetensors")
    same = train(TrainConfig(**{**cfg.__dict__, "model": str(run / "best.safetensors"), "epochs": 1, "lr": 1e-9,
                                "warmup_epochs": 0, "out": str(tmp_path / "same")}))
    after = load_file(same.run_dir / "last.safetensors")
    # lr 1e-9: the weights are the checkpoint's (BatchNorm statistics move), the head included
    assert set(after) == set(start)
    assert all(torch.allclose(after[k], start[k], atol=1e-6) for k in start if "running" not in k and "num_batches" not in k)
    two = make_segmentation(tmp_path / "two", train=8, val=3)
    (two / "classes.txt").write_text("ground\nred\n")  # one class fewer
    for folder in ("train", "val"):
        for mask in (two / folder / "masks").iterdir():
            m = np.array(Image.open(mask))
            Image.fromarray(np.where(m == 2, 1, m).astype(np.uint8)).save(mask)
    result = train(TrainConfig(**{**cfg.__dict__, "data": str(two), "model": str(run / "best.safetensors"),
                                  "epochs": 1, "out": str(tmp_path / "new")}))
    tuned = load_file(result.run_dir / "best.safetensors")
    assert tuned["head.weight"].shape[0] == tuned["coarse_head.weight"].shape[0] == 2
    assert torch.allclose(tuned["down.0.0.weight"], start["down.0.0.weight"], atol=0.05)  # started from it


def _at_scales(net, x, scales):
    """The mean of the log class probabilities of `net` run at `scales` of x, each resized back."""
    import torch.nn.functional as F

    log_probs = [F.interpolate(net(F.interpolate(x, scale_factor=s, mode="bilinear")), size=x.shape[-2:],
                               mode="bilinear").log_softmax(1) for s in scales]
    return sum(log_probs) / len(log_probs)


def test_a_run_with_scales_validates_and_segments_at_them_and_its_fine_tunes_keep_them(trained, tmp_path):
    from safetensors.torch import load_file

    from visiontool.models.loader import load_model

    data, run, _, cfg = trained
    out = tmp_path / "scaled"
    train(TrainConfig(**{**cfg.__dict__, "model": str(run / "best.safetensors"), "epochs": 1, "lr": 1e-9,
                         "warmup_epochs": 0, "scales": "0.5,1,1.5", "out": str(out)}))
    loaded = load_model(str(out / "best.safetensors"))
    assert loaded.info.extra["scales"] == [0.5, 1.0, 1.5]
    # the network alone, from the checkpoint's tensors, run at the three scales by hand
    net = UNet(3, **loaded.info.extra["arch_kwargs"]).eval()
    net.load_state_dict(load_file(out / "best.safetensors"))
    pp, confusion, single = loaded.info.preprocess, np.zeros((3, 3), np.int64), np.zeros((3, 3), np.int64)
    for path in sorted((data / "val" / "images").iterdir()):
        truth = np.array(Image.open(data / "val" / "masks" / path.name)).astype(np.int64)
        x = torch.from_numpy(pp(Image.open(path)))[None]
        with torch.inference_mode():
            got = loaded.module(x)
            want = _at_scales(net, x, (0.5, 1.0, 1.5))
            alone = net(x).argmax(1)[0].numpy()
        assert torch.allclose(got, want, atol=1e-4)
        pred, keep = got.argmax(1)[0].numpy(), truth != 255
        confusion += np.bincount(truth[keep] * 3 + pred[keep], minlength=9).reshape(3, 3)
        single += np.bincount(truth[keep] * 3 + alone[keep], minlength=9).reshape(3, 3)
    miou = np.mean(np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion)))
    # validation during training and `val` both score the three scales, not the network alone
    assert float(_rows(out)[0]["val_miou"]) == pytest.approx(miou, abs=1e-6)
    report = json.loads(CliRunner().invoke(app, ["val", str(out / "best.safetensors"), str(data), "--json", "-q"]).stdout)
    assert report["miou"] == pytest.approx(miou, abs=1e-6)
    assert not np.array_equal(confusion, single)
    again = train(TrainConfig(**{**cfg.__dict__, "model": str(out / "best.safetensors"), "epochs": 1,
                                 "out": str(tmp_path / "again")}))
    assert load_model(str(again.run_dir / "best.safetensors")).info.extra["scales"] == [0.5, 1.0, 1.5]


def test_a_run_with_a_guided_filter_validates_and_segments_through_it(trained, tmp_path):
    from safetensors.torch import load_file

    from visiontool.models.guided_filter import guided_filter
    from visiontool.models.loader import load_model

    data, run, _, cfg = trained
    out = tmp_path / "guided"
    train(TrainConfig(**{**cfg.__dict__, "model": str(run / "best.safetensors"), "epochs": 1, "lr": 1e-9,
                         "warmup_epochs": 0, "guided_filter": 4, "out": str(out)}))
    loaded = load_model(str(out / "best.safetensors"))
    assert loaded.info.extra["guided_filter"] == 4
    net = UNet(3, **loaded.info.extra["arch_kwargs"]).eval()
    net.load_state_dict(load_file(out / "best.safetensors"))
    pp, confusion, changed = loaded.info.preprocess, np.zeros((3, 3), np.int64), 0
    for path in sorted((data / "val" / "images").iterdir()):
        truth = np.array(Image.open(data / "val" / "masks" / path.name)).astype(np.int64)
        x = torch.from_numpy(pp(Image.open(path)))[None]
        with torch.inference_mode():
            got = loaded.module(x).argmax(1)[0].numpy()
            want = guided_filter(x, net(x).softmax(1), 4).argmax(1)[0].numpy()
            changed += int((net(x).argmax(1)[0].numpy() != want).sum())
        assert (got == want).mean() > 0.999
        keep = truth != 255
        confusion += np.bincount(truth[keep] * 3 + got[keep], minlength=9).reshape(3, 3)
    assert changed > 0  # the filter moved some pixels' class
    miou = np.mean(np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion)))
    assert float(_rows(out)[0]["val_miou"]) == pytest.approx(miou, abs=1e-3)
    result = CliRunner().invoke(app, ["train", "--task", "segment", str(data), "--guided-filter", "40", "-q",
                                      "-o", str(tmp_path / "far")])
    assert result.exit_code == 2 and "error: --guided-filter: guided filter radius 40: give a whole" in result.stderr


@pytest.mark.parametrize("scales,message", [("0.75,x", "are not numbers"), ("0.1,1", "each must lie in [0.25, 4]"),
                                            ("1,1", "give 1 to 8 different ones")])
def test_wrong_scales_are_refused_in_one_line(tmp_path, scales, message):
    root = make_segmentation(tmp_path / "p", train=3, val=2)
    result = CliRunner().invoke(app, ["train", "--task", "segment", str(root), "--epochs", "1", "--scales", scales,
                                      "-o", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert "error: --scales: scales " in result.stderr and scales in result.stderr
    assert message in result.stderr and not (tmp_path / "run").exists()


def test_train_help_offers_the_segment_task():
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert "classify|detect|segment" in result.output


def test_torchvision_models_get_resized_classifiers_and_the_auxiliary_loss():
    import torch.nn.functional as F

    from visiontool.models import registry
    from visiontool.train.segment import AUX_WEIGHT, SegmentTraining, _model

    cfg = TrainConfig(task="segment", data="unused", model="deeplabv3_mobilenet_v3_large")
    module, kwargs, _, _, reading = _model(cfg, registry.get_spec(cfg.model), 3, None)
    assert kwargs == {"aux_loss": True} and reading == ((1.0,), 0)  # one scale, no guided filter
    module.train()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    y[0, 0] = 255
    main, aux = SegmentTraining.forward(None, module, x, y)
    assert main.shape == aux.shape == (2, 3, 64, 64)
    loss, sums = SegmentTraining.loss(None, (main, aux), y)
    want = F.cross_entropy(main, y, ignore_index=255) + AUX_WEIGHT * F.cross_entropy(aux, y, ignore_index=255)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert float(sums[0]) == pytest.approx(2 * float(want), rel=1e-5)


def test_val_scores_the_pairs_a_run_held_out_and_refuses_to_guess_otherwise(tmp_path):
    data = make_segmentation(tmp_path / "data", train=10, val=0)
    out = tmp_path / "run"
    train(TrainConfig(task="segment", data=str(data), epochs=1, batch_size=4, image_size=32, val_fraction=0.3,
                      seed=5, out=str(out), quiet=True))
    result = CliRunner().invoke(app, ["val", str(out / "best.safetensors"), str(data), "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 3 and report["data"].endswith("30% of train/ held out (seed 5))")
    assert report["miou"] == pytest.approx(float(_rows(out)[0]["val_miou"]), abs=1e-6)
    other = CliRunner().invoke(app, ["val", "unet", str(data), "--weights", "none", "-q"])
    assert other.exit_code == 2 and "no val/ folder in" in other.output


def test_a_model_of_another_task_is_refused_with_both_ways_out(tmp_path):
    root = make_segmentation(tmp_path / "p", train=3, val=2)
    result = CliRunner().invoke(app, ["train", "--task", "segment", str(root), "--model", "lenet5", "--epochs", "1",
                                      "-o", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert ("lenet5 is a classify model: train it with --task classify, or give `train --task segment` a segment "
            "model (e.g. unet;") in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task,option,reader", [("segment", ["--label-smoothing", "0.2"], "classify"),
                                                 ("classify", ["--style-image", "x.png"], "stylize"),
                                                 ("detect", ["--augment", "randaugment"], "classify"),
                                                 ("stylize", ["--pretrained"], "classify, detect, segment"),
                                                 ("classify", ["--scales", "1,2"], "segment"),
                                                 ("detect", ["--guided-filter", "6"], "segment")])
def test_an_option_the_task_never_reads_is_refused_not_ignored(tmp_path, task, option, reader):
    root = make_segmentation(tmp_path / "p", train=3, val=2)
    result = CliRunner().invoke(app, ["train", "--task", task, str(root), "--epochs", "1", *option,
                                      "-o", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert f"{option[0]} does not apply to --task {task} (it is for --task {reader})" in result.stderr
    assert not (tmp_path / "run").exists()


def test_width_sets_a_unet_s_channels_from_scratch_and_nothing_else(tmp_path):
    from safetensors.torch import load_file

    from visiontool.models.loader import load_model

    root = make_segmentation(tmp_path / "p", train=4, val=2)
    base = ["train", "--task", "segment", str(root), "--epochs", "1", "--batch-size", "4", "--image-size", "32"]
    result = CliRunner().invoke(app, [*base, "--width", "8", "-o", str(tmp_path / "narrow")])
    assert result.exit_code == 0, result.output
    assert "unet (widths 8, 12, 24, 48, 80): 3 classes" in result.stderr
    ckpt = tmp_path / "narrow" / "best.safetensors"
    assert load_model(str(ckpt)).info.extra["arch_kwargs"]["widths"] == [8, 12, 24, 48, 80]
    assert load_file(ckpt)["down.0.0.weight"].shape == (8, 3, 3, 3)
    for other, message in ((["--model", "lraspp_mobilenet_v3_large"], "lraspp_mobilenet_v3_large has its own"),
                           (["--model", str(ckpt)], f"{ckpt} has its own")):
        refused = CliRunner().invoke(app, [*base, "--width", "8", *other, "-o", str(tmp_path / "no"), "-q"])
        assert refused.exit_code == 2
        assert f"error: --width sets the channels of a UNet trained from scratch; {message}" in refused.stderr
    assert not (tmp_path / "no").exists()
