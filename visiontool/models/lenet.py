"""LeNet-5, the network that read cheques.

Source: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE 86(11), 1998, section II.B and Fig. 2:

    INPUT 32x32 -> C1: 6@28x28 -> S2: 6@14x14 -> C3: 16@10x10 -> S4: 16@5x5
                -> C5: 120 -> F6: 84 -> OUTPUT: classes

The layer sizes are the paper's. Three choices are the modern ones, not the paper's:
ReLU instead of the scaled tanh, max-pooling instead of the trainable average "subsampling",
and C3 connected to all six S2 maps (the paper's Table I wires each C3 map to a subset to
break symmetry and save compute; full connection trains as well and is simpler). The final
layer is a plain linear classifier instead of the paper's Euclidean RBF units, so it pairs
with cross-entropy like every other model here.
"""

from __future__ import annotations

from torch import Tensor, nn

INPUT_SIZE = 32  # the paper's input: 28x28 digits centred in a 32x32 field


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # C1: 32x32 -> 6@28x28
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # S2: -> 6@14x14
            nn.Conv2d(6, 16, kernel_size=5),  # C3: -> 16@10x10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # S4: -> 16@5x5
        )
        self.classifier = nn.Sequential(
            # C5 is a 5x5 convolution over a 5x5 map, i.e. a fully connected layer.
            nn.Linear(16 * 5 * 5, 120),  # C5
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),  # F6
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),  # OUTPUT
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
