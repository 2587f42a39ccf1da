"""A model with a hand-written module using functional ops: `mlpc train examples/models/custom_module.py`."""

from mlpc import F, nn


class GatedLayer(nn.Module):
    """y = tanh(x W1 + b1) * sigmoid(x W2 + b2)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        self.value = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)

    def forward(self, x):
        return F.tanh(self.value(x)) * F.sigmoid(self.gate(x))


model = nn.Sequential(GatedLayer(784, 128), nn.Linear(128, 10))
in_features = 784
