"""StyleNet (the feed-forward style network) and the loss network's features, Grams and losses."""

from __future__ import annotations

import pytest
import torch

from visiontool import style_loss
from visiontool.errors import UsageError, WeightsError
from visiontool.models import registry
from visiontool.models.stylenet import StyleNet


@pytest.fixture(autouse=True)
def no_local_weights(tmp_path, monkeypatch):
    """Empty weights folders and no network: nothing outside the test is found or fetched."""
    monkeypatch.setenv("VISIONTOOL_WEIGHTS_DIR", str(tmp_path / "user-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("VISIONTOOL_OFFLINE", "1")


@pytest.mark.parametrize("size", [(8, 8), (13, 17), (40, 31)])
def test_stylenet_keeps_any_size_and_paints_in_unit_range(size, one_thread):
    torch.manual_seed(0)
    net = StyleNet(width=4, blocks=1).eval()
    with torch.inference_mode():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.std() > 0


def test_stylenet_is_registered_with_the_papers_size_and_a_width(one_thread):
    arch = registry.OWN_ARCHS["stylenet"]
    assert arch.task == "stylize" and arch.preprocess.fit == "none" and arch.preprocess.mean == (0.0, 0.0, 0.0)
    # Johnson et al.'s network at width 32 has about 1.68 M parameters; half the width, about a quarter.
    assert registry.count_params("stylenet", 3) == 1_679_235
    assert registry.count_params("stylenet", 3, width=16) < 1_679_235 / 3.5


def test_stylenet_trains_unclamped_and_runs_deterministically(one_thread):
    torch.manual_seed(0)
    net = StyleNet(width=4, blocks=1)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        net.out[1].bias.fill_(3.0)  # pushes every output above 1
        assert net.train()(x).min() > 1.0  # training sees raw values: saturated pixels keep gradients
        a, b = net.eval()(x), net(x)
    assert a.max() == 1.0 and torch.equal(a, b)


def test_gram_is_the_mean_outer_product_of_channels():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # (1, 2, 1, 2)
    g = style_loss.gram(f)
    assert torch.allclose(g, torch.tensor([[[2.5, 0.5], [0.5, 5.0]]]))
    # Size-free: the same texture tiled twice has the same Gram matrix.
    assert torch.allclose(style_loss.gram(torch.cat([f, f], dim=3)), g)


def test_losses_vanish_on_their_targets_and_grow_with_difference(one_thread):
    torch.manual_seed(0)
    net = style_loss.loss_network("random")
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 24, 40).pow(3)
    loss = style_loss.Perceptual(net, style, content_weight=1.0, style_weight=1.0, tv_weight=1.0)
    assert float(loss(content, content).content) == 0.0
    assert float(style_loss.style_loss(net(style), loss.targets, net.style_layers)) < 1e-10
    assert float(style_loss.tv_loss(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    near, far = content + 0.02 * torch.randn_like(content), content + 0.2 * torch.randn_like(content)
    assert 0 < float(loss(near, content).content) < float(loss(far, content).content)
    same = style_loss.style_distance(net, style, style)
    other = style_loss.style_distance(net, torch.cat([content, content.flip(3)]), style)
    assert float(same) < 1e-4 and other.shape == (2,) and float(other.min()) > 0.1


def test_random_loss_network_is_fixed_by_its_seed():
    a, b = style_loss.RandomPyramid(), style_loss.RandomPyramid()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not any(p.requires_grad for p in a.parameters())


def test_vgg_layers_are_named_as_in_the_papers():
    net = style_loss.VGGFeatures("vgg19")  # random weights: only the layout is checked
    feats = net(torch.rand(1, 3, 32, 32))
    assert set(feats) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"}
    assert feats["relu4_2"].shape == (1, 512, 4, 4) and net.names[-1] == "relu5_1"


def test_vgg_takes_the_feature_weights_of_a_torchvision_state_dict():
    layers = style_loss.VGGFeatures("vgg16").layers.state_dict()
    state_dict = {f"features.{k}": torch.full_like(v, 0.01) for k, v in layers.items()}
    state_dict["classifier.0.weight"] = torch.zeros(2, 2)  # the rest of the file is left out
    net = style_loss.VGGFeatures("vgg16", state_dict)
    assert all(torch.equal(p, torch.full_like(p, 0.01)) for p in net.parameters())
    assert net.names[-1] == "relu4_3" and len(net.layers) == 23


def test_loss_network_offline_without_vgg_weights(capsys):
    assert isinstance(style_loss.loss_network("auto"), style_loss.RandomPyramid)
    assert "random (offline" in capsys.readouterr().err
    with pytest.raises(WeightsError, match="vgg16-397923af.pth .* network is off"):
        style_loss.loss_network("vgg16")
    with pytest.raises(UsageError, match="--loss-net vgg: unknown"):
        style_loss.loss_network("vgg")


def test_gram_matrices_stay_float32_under_mixed_precision():
    # Training runs the loss network under autocast; a Gram matrix summed in bf16/fp16 loses
    # precision (and overflows fp16 past 65504), so it is computed in float32 all the same.
    import torch

    from visiontool.style_loss import gram

    features = torch.full((1, 2, 64, 64), 3.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram(features)
    assert g.dtype == torch.float32 and torch.equal(g, torch.full((1, 2, 2), 9.0))
