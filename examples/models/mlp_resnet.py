"""An MLP-ResNet for `mlpc train examples/models/mlp_resnet.py`: residual blocks of Linear-GELU-Linear."""

from mlpc import nn, optim


def block(width: int) -> nn.Module:
    return nn.Residual(nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)))


model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), block(128), block(128), nn.Linear(128, 10))
optimizer = optim.AdamW(lr=1e-3, weight_decay=1e-4)
batch_size = 128
