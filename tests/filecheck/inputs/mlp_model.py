"""A small model for the dump/stats FileCheck tests: 13 -> 7 -> 3 with ReLU, SGD with momentum."""

from mlpc import nn, optim

model = nn.Sequential(nn.Linear(13, 7), nn.ReLU(), nn.Linear(7, 3))
optimizer = optim.SGD(lr=0.1, momentum=0.9)
batch_size = 4
