"""`--pretrained`: training starts from the architecture's ImageNet weights (a local file where
the download would land; no network) with the classifier head replaced for the dataset."""

from __future__ import annotations

import pytest
import torch
from train_shapes import make_dataset

from visiontool import checkpoint, weights
from visiontool.models import registry
from visiontool.train.config import TrainConfig
from visiontool.train.engine import train


@pytest.fixture(autouse=True)
def local_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VISIONTOOL_OFFLINE", "1")
    (tmp_path / "weights").mkdir()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "weights"
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "arch, head, size",
    [("mobilenet_v3_small", "classifier.3.weight", 32),  # last Linear of a classifier Sequential
     ("squeezenet1_1", "classifier.1.weight", 64)],  # a 1x1 convolution producing the logits
)
def test_backbone_from_the_weights_file_and_a_new_head(tmp_path, local_weights_only, arch, head, size):
    file_name = weights.file_name_of(weights.weights_url(arch, "DEFAULT"))
    torch.manual_seed(123)
    imagenet = registry.build(arch, 1000).state_dict()
    torch.save(imagenet, local_weights_only / file_name)

    data = make_dataset(tmp_path / "data", train_per_class=3, val_per_class=1, size=size)
    # A learning rate of 1e-12 leaves the loaded weights where they started.
    train(TrainConfig(data=str(data), model=arch, pretrained=True, epochs=1, batch_size=9, image_size=size,
                      lr=1e-12, weight_decay=0.0, augment="none", quiet=True, out=str(tmp_path / "run")))
    state, meta = checkpoint.load(tmp_path / "run" / "last.safetensors")
    assert imagenet[head].shape[0] == 1000 and state[head].shape[0] == 3
    assert state[head].shape[1:] == imagenet[head].shape[1:]
    convs = [k for k, v in imagenet.items() if v.ndim == 4 and k != head]
    assert convs
    for key in convs:
        torch.testing.assert_close(state[key], imagenet[key], rtol=0, atol=1e-6, msg=key)
    assert meta["arch"] == arch and meta["labels"] == ["disc", "square", "triangle"]
    # the weights' own normalization, at the chosen size with torchvision's 256/224 margin
    pp = meta["preprocess"]
    assert pp["crop"] == size and pp["resize"] == round(size * 256 / 224)
    assert pp["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_missing_weights_offline_is_one_clear_line(tmp_path):
    from visiontool.errors import WeightsError

    data = make_dataset(tmp_path / "data", train_per_class=2, val_per_class=1)
    with pytest.raises(WeightsError, match="is not on disk and the network is off"):
        train(TrainConfig(data=str(data), model="resnet18", pretrained=True, epochs=1, quiet=True,
                          out=str(tmp_path / "run")))


def test_train_offline_forbids_the_download_and_leaves_the_environment_alone(tmp_path, monkeypatch):
    import os

    from typer.testing import CliRunner

    from visiontool.cli.app import app

    monkeypatch.delenv("VISIONTOOL_OFFLINE")  # only --offline forbids the network here
    fetched = []
    monkeypatch.setattr(weights, "download", lambda *args, **kwargs: fetched.append(args))
    data = make_dataset(tmp_path / "data", train_per_class=2, val_per_class=1)
    result = CliRunner().invoke(app, ["train", str(data), "--model", "squeezenet1_1", "--pretrained", "--offline",
                                      "--image-size", "32", "--output", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 1, result.output
    assert "is not on disk and the network is off" in result.stderr and fetched == []
    assert "VISIONTOOL_OFFLINE" not in os.environ
