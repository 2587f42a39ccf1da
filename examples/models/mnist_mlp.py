"""The 784-256-10 ReLU MLP of the C examples: `mlpc aot examples/models/mnist_mlp.py -o build` exports it."""

from mlpc import nn, optim

model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = optim.Adam(lr=1e-3)
batch_size = 128
