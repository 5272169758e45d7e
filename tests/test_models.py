"""Registry, LeNet-5 and the loader: names, shapes, state_dict and checkpoint loading, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from visiontool import checkpoint
from visiontool.errors import UsageError, WeightsError
from visiontool.models import registry
from visiontool.models.lenet import LeNet5
from visiontool.models.loader import load_model


@pytest.fixture(autouse=True)
def no_local_weights(tmp_path, monkeypatch):
    """Empty weights folders and no network: nothing outside the test is found or fetched."""
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_DIR", str(tmp_path / "user-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("VISIONTOOL_OFFLINE", "1")
    return tmp_path / "user-weights"


def _outputs(module, shape=(2, 3, 64, 64)):
    torch.manual_seed(1)
    with torch.inference_mode():
        return module.eval()(torch.randn(*shape))


def test_registry_lists_torchvision_architectures_and_lenet5():
    names = {s.name for s in registry.list_specs(task="classify")}
    for name in ("resnet18", "efficientnet_b0", "convnext_tiny", "alexnet", "vgg11", "googlenet",
                 "mobilenet_v3_small", "lenet5"):
        assert name in names
    assert len(names) >= 80  # every torchvision classification architecture
    spec = registry.get_spec("resnet18")
    assert (spec.num_params, spec.input_size, spec.default_weights) == (11689512, 224, "IMAGENET1K_V1")
    assert spec.labels[0] == "tench" and len(spec.labels) == 1000
    assert registry.get_spec("resnet50").weights == ("IMAGENET1K_V1", "IMAGENET1K_V2")


def test_pattern_narrows_the_list():
    assert [s.name for s in registry.list_specs(pattern="resnet1*")] == ["resnet101", "resnet152", "resnet18"]
    lenets = {s.name for s in registry.list_specs(pattern="LENET*")}
    assert "lenet5" in lenets and all(n.startswith("lenet5") for n in lenets)
    lenet = {s.name for s in registry.list_specs(pattern="lenet")}  # a prefix, not any substring
    assert "lenet5" in lenet and not lenet & {"googlenet", "mobilenet_v2", "shufflenet_v2_x1_0"}
    assert "fasterrcnn_resnet50_fpn" in {s.name for s in registry.list_specs(pattern="FPN")}  # a whole word


@pytest.mark.parametrize("typo, suggestion", [("resnet81", "resnet18"), ("convnext_tiy", "convnext_tiny"),
                                              ("LeNet5", "lenet5")])
def test_unknown_name_suggests_close_matches(typo, suggestion):
    with pytest.raises(UsageError, match=f"unknown model '{typo}'.*did you mean .*{suggestion}"):
        registry.get_spec(typo)


def test_lenet5_shapes_and_parameter_count():
    net = LeNet5(num_classes=10)
    assert _outputs(net, (4, 1, 32, 32)).shape == (4, 10)
    assert LeNet5(num_classes=3, in_channels=3)(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    # 156 (C1) + 2416 (C3) + 48120 (C5) + 10164 (F6) + 850 (output): the paper's layer sizes.
    assert sum(p.numel() for p in net.parameters()) == 61706
    assert registry.param_count(registry.get_spec("lenet5")) == 61706


def test_plain_torchvision_state_dict_loads(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    loaded = load_model("resnet18", str(path))
    assert torch.equal(_outputs(loaded.module), _outputs(reference))
    assert loaded.info.labels[:2] == ["tench", "goldfish"] and len(loaded.info.labels) == 1000
    assert loaded.info.preprocess == registry.get_spec("resnet18").preprocess
    assert loaded.info.weights_source == str(path)


def test_state_dict_with_other_head_keeps_its_size(tmp_path):
    path = tmp_path / "r18-7.pth"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), path)
    loaded = load_model("resnet18", str(path))
    assert loaded.info.labels == [f"class_{i}" for i in range(7)]
    assert _outputs(loaded.module).shape == (2, 7)


def test_num_classes_replaces_only_the_head(tmp_path):
    reference = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    loaded = load_model("resnet18", str(path), num_classes=5)
    assert loaded.module.fc.out_features == 5
    assert torch.equal(loaded.module.conv1.weight, reference.conv1.weight)
    assert loaded.info.labels == [f"class_{i}" for i in range(5)]


def test_mismatched_state_dict_says_what_is_wrong(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = state.pop("fc.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"does not fit resnet18: 1 keys missing, 1 unexpected \(missing e\.g\. "
                                           r"fc\.weight; unexpected e\.g\. extra\.weight\)"):
        load_model("resnet18", str(path))
    lenet = tmp_path / "lenet.pth"
    torch.save(LeNet5().state_dict(), lenet)
    # 62 parameters + 40 BatchNorm running statistics; the 20 step counters are not required.
    with pytest.raises(WeightsError, match=r"does not fit resnet18: 102 keys missing, 10 unexpected"):
        load_model("resnet18", str(lenet))


def test_state_dict_file_as_model_asks_for_the_architecture(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(LeNet5().state_dict(), path)
    with pytest.raises(UsageError, match=r"pass --model ARCH --weights .*r18\.pth"):
        load_model(str(path))
    with pytest.raises(UsageError, match="model file not found"):
        load_model(str(tmp_path / "missing.safetensors"))


def _lenet_checkpoint(path, num_classes=3, labels=("cat", "dog", "fox")):
    torch.manual_seed(3)
    net = LeNet5(num_classes=num_classes)
    meta = {"arch": "lenet5", "task": "classify", "num_classes": num_classes, "labels": list(labels),
            "preprocess": registry.LENET5_PREPROCESS.to_dict(), "arch_kwargs": {"in_channels": 1}}
    checkpoint.save(path, net.state_dict(), meta)
    return net


def test_checkpoint_loads_with_its_labels_and_preprocess(tmp_path):
    path = tmp_path / "best.safetensors"
    net = _lenet_checkpoint(path)
    loaded = load_model(str(path))
    assert torch.equal(_outputs(loaded.module, (2, 1, 32, 32)), _outputs(net, (2, 1, 32, 32)))
    assert loaded.info.labels == ["cat", "dog", "fox"]
    assert loaded.info.preprocess == registry.LENET5_PREPROCESS
    assert (loaded.info.arch, loaded.info.extra["num_classes"]) == ("lenet5", 3)
    with pytest.raises(UsageError, match="carries its own weights"):
        load_model(str(path), "DEFAULT")


def test_shipped_checkpoints_are_registry_entries(tmp_path, monkeypatch):
    from visiontool import weights

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    net = _lenet_checkpoint(shipped / "lenet5-pets.safetensors")
    monkeypatch.setattr(weights, "shipped_dir", lambda: shipped)
    spec = registry.get_spec("lenet5-pets")
    assert (spec.arch, spec.labels, spec.input_size) == ("lenet5", ("cat", "dog", "fox"), 32)
    assert registry.param_count(spec) == 61706 - 850 + 84 * 3 + 3
    loaded = load_model("lenet5-pets")
    assert torch.equal(_outputs(loaded.module, (1, 1, 32, 32)), _outputs(net, (1, 1, 32, 32)))
    assert loaded.info.labels == ["cat", "dog", "fox"]


def test_random_init_uses_default_weights_facts():
    loaded = load_model("resnet18", "none")
    assert loaded.info.weights_source == "random init"
    assert loaded.info.labels == list(registry.get_spec("resnet18").labels)
    assert not loaded.module.training
    lenet = load_model("lenet5")
    assert lenet.info.labels == [f"class_{i}" for i in range(10)]
    assert lenet.info.preprocess.channels == 1


def test_official_weights_found_locally_and_offline_message(no_local_weights):
    with pytest.raises(WeightsError, match=r"resnet18-f37072fd\.pth .*https://download\.pytorch\.org/models/"
                                           r"resnet18-f37072fd\.pth"):
        load_model("resnet18", offline=True)
    # A file under the official name in the user weights folder is used as is.
    no_local_weights.mkdir()
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), no_local_weights / "resnet18-f37072fd.pth")
    loaded = load_model("resnet18", "IMAGENET1K_V1", offline=True)
    assert torch.equal(_outputs(loaded.module), _outputs(reference))
    expected = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert loaded.info.labels == expected.meta["categories"]
    assert "IMAGENET1K_V1" in loaded.info.weights_source
    with pytest.raises(UsageError, match="unknown weights 'IMAGENET1K_V9' for resnet18"):
        load_model("resnet18", "IMAGENET1K_V9")


def test_googlenet_official_layout_loads_like_torchvision(no_local_weights):
    """Official googlenet files carry auxiliary heads and expect transform_input=True."""
    no_local_weights.mkdir()
    reference = torchvision.models.GoogLeNet(aux_logits=True, transform_input=True, init_weights=True)
    torch.save(reference.state_dict(), no_local_weights / "googlenet-1378be20.pth")
    loaded = load_model("googlenet", offline=True)
    assert loaded.module.transform_input and loaded.module.aux1 is None
    assert torch.allclose(_outputs(loaded.module), _outputs(reference))


def _photo(width=300, height=200) -> Image.Image:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = (x * 0.6 + y * 0.4 + rng.normal(0, 30, (height, width, 3))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize("arch, weights_name", [("resnet18", "IMAGENET1K_V1"), ("efficientnet_b0", "IMAGENET1K_V1"),
                                                ("convnext_tiny", "IMAGENET1K_V1"), ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1"),
                                                ("resnet50", "IMAGENET1K_V2")])
def test_preprocess_equals_torchvision_transforms(arch, weights_name):
    chosen = torchvision.models.get_model_weights(arch)[weights_name]
    ours = registry.preprocess_from_weights(chosen)
    img = _photo()
    theirs = chosen.transforms()(img).numpy()
    mine = ours(img)
    assert mine.shape == theirs.shape
    assert np.abs(mine - theirs).max() < 1e-6
    if weights_name == torchvision.models.get_model_weights(arch).DEFAULT.name:
        assert registry.get_spec(arch).preprocess == ours
