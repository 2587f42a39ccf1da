"""Train a 784-256-10 ReLU MLP on MNIST from Python and print test accuracy per epoch."""

import sys

import mlpc
from mlpc import init, nn, optim
from mlpc.datasets import mnist

backend = sys.argv[1] if len(sys.argv) > 1 else "llvm"
data = mnist()
model = nn.Sequential(
    nn.Linear(784, 256, init=init.kaiming_normal()),
    nn.ReLU(),
    nn.Linear(256, 10),
)
trainer = mlpc.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3),
                       batch_size=128, backend=backend)
for epoch in range(5):
    for x, y in trainer.batches(data.x_train, data.y_train, seed=epoch):
        loss = trainer.step(x, y)
    print(f"epoch {epoch + 1}: last loss {loss:.4f}, test accuracy {trainer.evaluate(data.x_test, data.y_test):.4f}")
trainer.save("mnist.safetensors")
