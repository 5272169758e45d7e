"""The guided filter a segmentation checkpoint may pass its class probabilities through."""

import pytest
import torch

from visiontool.models.guided_filter import guided_filter
from visiontool.models.unet import MEAN, STD


def _normalized(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in 0..1 as the network (and so the filter) sees it."""
    return (rgb - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _soft_edge(width=96, height=40, start=40, ramp=2):
    """A dark ink (left) blended into a light green background over `ramp` columns; the ink's
    alpha per column."""
    alpha = ((start + ramp - torch.arange(width, dtype=torch.float32)) / ramp).clamp(0, 1)
    ink, ground = torch.tensor([0.1, 0.1, 0.15]), torch.tensor([0.5, 0.8, 0.4])
    rgb = alpha.view(1, -1, 1) * ink + (1 - alpha.view(1, -1, 1)) * ground  # (1, W, 3)
    rgb = rgb.permute(2, 0, 1).expand(3, height, width)[None]
    return _normalized(rgb.contiguous()), alpha


def _crossing(curve: torch.Tensor) -> float:
    """Where a falling curve crosses one half, by linear interpolation between columns."""
    i = int((curve < 0.5).nonzero()[0])
    return i - 1 + float((curve[i - 1] - 0.5) / (curve[i - 1] - curve[i]))


def test_a_blurred_misplaced_edge_is_pulled_onto_the_image_s_edge():
    """Coarse scores blur the ink's edge over 16 px and put it 3 px too far right; filtered, the
    probability steps where the image does and crosses one half within a pixel of where the
    ink's alpha is one half, as the masks' labels do."""
    image, alpha = _soft_edge(ramp=2)
    truth = _crossing(alpha)
    blurred = ((truth + 3 + 8 - torch.arange(96, dtype=torch.float32)) / 16).clamp(0, 1)
    ink = blurred.view(1, 1, 1, -1).expand(1, 1, 40, 96)
    row = guided_filter(image, torch.cat([ink, 1 - ink], 1), radius=6)[0, 0, 20]
    assert _crossing(blurred) - truth == pytest.approx(3, abs=0.01)
    assert abs(_crossing(row) - truth) < 1.0
    steepest = int((row[:-1] - row[1:]).argmax())
    assert abs(steepest + 0.5 - truth) <= 1.0
    assert (blurred[:-1] - blurred[1:]).max() < 0.07 < 0.2 < (row[:-1] - row[1:]).max()


def test_probabilities_keep_their_sum_and_flat_regions_keep_their_class():
    torch.manual_seed(0)
    image = _normalized(torch.rand(2, 3, 50, 70))
    probs = torch.randn(2, 5, 50, 70).softmax(1)
    filtered = guided_filter(image, probs, radius=4)
    assert filtered.shape == probs.shape and filtered.dtype == torch.float32
    assert torch.allclose(filtered.sum(1), torch.ones(2, 50, 70), atol=1e-4)
    # an image of one colour says nothing of edges: a class the network is sure of stays
    flat = _normalized(torch.full((1, 3, 30, 30), 0.4))
    sure = torch.zeros(1, 3, 30, 30)
    sure[:, 1] = 1
    assert torch.allclose(guided_filter(flat, sure, radius=6), sure, atol=1e-4)
