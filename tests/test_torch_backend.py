"""The PyTorch backend: folded batch norm gives the module's own outputs, devices are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from visiontool.backends.torch_backend import TorchBackend, resolve_device
from visiontool.errors import UsageError


def _folds_to_the_same_outputs(net, shape, atol):
    """Batch norms with statistics of their own, folded by the backend: none left, same outputs."""
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    backend = TorchBackend(net, "cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backend.module.modules())
    np.testing.assert_allclose(backend(x)[0], expected, rtol=1e-4, atol=atol)


def test_folded_batch_norm_matches_the_plain_module():
    torch.manual_seed(0)
    _folds_to_the_same_outputs(torchvision.models.resnet18(num_classes=5).eval(), (2, 3, 64, 64), 1e-5)


def test_a_network_run_at_several_scales_has_each_batch_norm_folded_once():
    """The segmentation adapter calls its network once per scale: folding must not fold a
    convolution's batch norm into it once per call."""
    from visiontool.models.segmentation import SegmentationLogits
    from visiontool.models.unet import UNet

    torch.manual_seed(0)
    adapter = SegmentationLogits(UNet(3, widths=(8, 8, 16)), (0.5, 1.0, 1.5)).eval()
    _folds_to_the_same_outputs(adapter, (1, 3, 40, 56), 1e-4)


def test_cuda_without_cuda_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UsageError, match="no CUDA device is available here"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
