"""Each transcendental primitive and activation (forward and derivative) as the scalar rule the LLVM backend
renders, with its float64 reference: the cases tests/codegen/test_vecmath.py measures."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mlpc.ops import registry
from mlpc.ops import scalar as S
from mlpc.ops.elementwise import GELU_C, GELU_K, GELU_SAT, INV_SQRT_2PI, SQRT_HALF

X = S.X
Ref = Callable[[np.ndarray], np.ndarray]


def _t(f: Callable[..., torch.Tensor]) -> Ref:
    return lambda x: f(torch.from_numpy(x)).numpy()


def _rule(name: str) -> S.Expr:
    rule = registry.get(name).scalar
    assert rule is not None
    return rule({})


def _sig(x: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(x)).numpy()


def _phi_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * torch.special.erfc(torch.from_numpy(-x * SQRT_HALF)).numpy()


def _gelu_u(x: np.ndarray) -> np.ndarray:
    xc = np.clip(x, -GELU_SAT, GELU_SAT)
    return GELU_C * (xc + GELU_K * xc ** 3)


def _sech2(u: np.ndarray) -> np.ndarray:
    return 1.0 / np.cosh(u) ** 2


# the backward graphs' rules (mlpc/ops/elementwise.py vjps; functional.elu/softplus are where/exp/log
# composites), as one scalar expression of x each: what the fused epilogue computes per element
_T = S.tanh(X)
_SG = S.sigmoid(X)
_XC = S.minimum(S.maximum(X, -GELU_SAT), GELU_SAT)
_GT = S.tanh(GELU_C * (_XC + GELU_K * (_XC * _XC * _XC)))
_GELU_D = 0.5 * (1.0 + _GT) + (0.5 * X) * ((1.0 - _GT * _GT) * (GELU_C * (1.0 + (3 * GELU_K) * (_XC * _XC))))
_GELU_ERF_D = 0.5 * (1.0 + S.erf(X * SQRT_HALF)) + X * (INV_SQRT_2PI * S.exp(-0.5 * (X * X)))
_POS = S.gt(X, 0.0)
_E = S.exp(S.select(_POS, -X, X))  # stable softplus: where(x > 0, x, 0) + log(1 + exp(-|x|))
_SOFTPLUS = S.select(_POS, X, 0.0) + S.log(_E + 1.0)
_SOFTPLUS_D = S.select(_POS, 1.0, 0.0) + (_E / (_E + 1.0)) * S.select(_POS, -1.0, 1.0)

PRIMITIVES: dict[str, tuple[S.Expr, Ref]] = {
    "exp": (S.exp(X), np.exp),
    "log": (S.log(X), np.log),
    "tanh": (S.tanh(X), np.tanh),
    "erf": (S.erf(X), _t(torch.erf)),
}

ACTIVATIONS: dict[str, tuple[S.Expr, Ref]] = {
    "sigmoid": (_rule("sigmoid"), _sig),
    "sigmoid'": (_SG * (1.0 - _SG), lambda x: _sig(x) * _sig(-x)),
    "tanh'": (1.0 - _T * _T, lambda x: _sech2(x)),
    "gelu": (_rule("gelu"), lambda x: 0.5 * x * (1.0 + np.tanh(_gelu_u(x)))),
    "gelu'": (_GELU_D, lambda x: 0.5 * (1.0 + np.tanh(_gelu_u(x))) + 0.5 * x * _sech2(_gelu_u(x)) * GELU_C
              * (1.0 + 3 * GELU_K * np.clip(x, -GELU_SAT, GELU_SAT) ** 2)),
    "gelu_erf": (_rule("gelu_erf"), lambda x: x * _phi_cdf(x)),
    "gelu_erf'": (_GELU_ERF_D, lambda x: _phi_cdf(x) + x * INV_SQRT_2PI * np.exp(-0.5 * x * x)),
    "silu": (_rule("silu"), lambda x: x * _sig(x)),
    "silu'": (_SG * (1.0 + X * (1.0 - _SG)), lambda x: _sig(x) * (1.0 + x * _sig(-x))),
    "elu": (S.select(S.gt(X, 0.0), X, S.exp(S.minimum(X, 0.0)) - 1.0), lambda x: np.where(x > 0, x, np.expm1(x))),
    "elu'": (S.select(S.gt(X, 0.0), 1.0, S.exp(S.minimum(X, 0.0))), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "softplus": (_SOFTPLUS, lambda x: np.logaddexp(0.0, x)),
    "softplus'": (_SOFTPLUS_D, _sig),
}
