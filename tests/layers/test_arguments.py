"""Unknown or unsupported arguments are refused with an error naming them; torch's accepted ones work."""

from __future__ import annotations

import re

import pytest

import mlpc
from mlpc import nn, optim


@pytest.mark.parametrize("make,word", [
    (lambda: nn.ReLU(foo=1), "foo"),
    (lambda: nn.Sigmoid(inplace=True), "inplace"),  # torch's Sigmoid has no inplace either
    (lambda: nn.Tanh(1), "positional"),
    (lambda: nn.Identity(54), "positional"),  # torch's Identity ignores arguments; mlpc refuses them
    (lambda: nn.GELU(approx="tanh"), "approx"),
    (lambda: nn.SiLU(beta=2.0), "beta"),
    (lambda: nn.Softplus(alpha=1.0), "alpha"),
    (lambda: nn.LayerNorm(4, affine=False), "affine"),
    (lambda: nn.Dropout(rate=0.1), "rate"),
    (lambda: nn.Linear(3, 4, bais=False), "bais"),
    (lambda: nn.CrossEntropyLoss(smoothing=0.1), "smoothing"),
    (lambda: nn.MSELoss(size_average=True), "size_average"),
    (lambda: nn.L1Loss(delta=1.0), "delta"),
    (lambda: nn.BCEWithLogitsLoss(label_smoothing=0.1), "label_smoothing"),
    (lambda: optim.Adam(amsgrad=True), "amsgrad"),
    (lambda: optim.SGD(lr=0.1, nesterov_momentum=0.9), "nesterov_momentum"),
    (lambda: mlpc.compile(nn.Linear(2, 2), batch=4), "batch"),
    (lambda: mlpc.compile(nn.Linear(2, 2), loss="mse"), "loss"),
    (lambda: mlpc.compile(nn.Linear(2, 2), optimizer="adam"), "optimizer"),
])
def test_unknown_keyword_is_a_type_error(make, word):
    with pytest.raises(TypeError, match=word):
        make()


@pytest.mark.parametrize("make,word", [
    (lambda: nn.GELU(approximate="erf"), "approximate"),
    (lambda: nn.MSELoss(reduction="none"), "reduction"),
    (lambda: nn.CrossEntropyLoss(reduction="batchmean"), "reduction"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), "label_smoothing"),
    (lambda: nn.CrossEntropyLoss(weight=[1.0, 2.0]), "weight"),
    (lambda: nn.CrossEntropyLoss(ignore_index=0), "ignore_index"),
    (lambda: nn.BCEWithLogitsLoss(pos_weight=[2.0]), "pos_weight"),
    (lambda: nn.HuberLoss(delta=0.0), "delta"),
    (lambda: nn.Dropout(1.5), "p"),
    (lambda: nn.Dropout("0.5"), "p"),
    (lambda: nn.Softplus(beta=0.0), "beta"),
    (lambda: nn.LayerNorm((3, 4)), "normalized_shape"),
    (lambda: nn.LayerNorm(4, eps=0.0), "eps"),
    (lambda: nn.LayerNorm(4, device="cuda"), "device"),
    (lambda: nn.Linear(3, 4, dtype="float64"), "dtype"),
])
def test_unsupported_value_is_a_value_error(make, word):
    with pytest.raises(ValueError, match=word):
        make()


def test_relu_inplace_is_accepted_as_a_no_op():
    a = mlpc.compile(nn.Sequential(nn.Linear(3, 2), nn.ReLU(inplace=True)), nn.MSELoss(), backend="numpy")
    b = mlpc.compile(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), nn.MSELoss(), backend="numpy")
    def strip(text: str) -> str:  # the two were built on different lines
        return re.sub(r'loc\("[^"]*"\)', "", text)

    assert strip(a.ir("simplified")) == strip(b.ir("simplified"))


def test_torch_defaults_are_accepted():
    nn.CrossEntropyLoss(weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0)
    nn.BCEWithLogitsLoss(weight=None, reduction="sum", pos_weight=None)
    nn.LayerNorm([8], eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None)
    nn.Linear(3, 4, bias=True, device=None, dtype=None)
    nn.LeakyReLU(negative_slope=0.1, inplace=False)
    nn.ELU(alpha=0.5, inplace=True)
    nn.Dropout(p=0.2, inplace=False)


def test_user_subclass_without_init_refuses_arguments():
    class Double(nn.Module):
        def forward(self, x):
            return x * 2.0

    class Zero(nn.Loss):
        def __call__(self, p, t):
            return (p * 0.0).sum()

    with pytest.raises(TypeError):
        Double(scale=3)
    with pytest.raises(TypeError):
        Zero(reduction="sum")
