"""Property tests: every geometry function is finite, with finite gradients, from zero to huge norms.

Norms are drawn log-uniformly from 1e-30 up to 1e8 for hyperboloid points and up to 1e12 for
tangent vectors (exp_map0's input), together with the exact values 0, 1e-30, 1e-12 and the largest
one; the curvature c ranges over [0.1, 10] and is itself a leaf that receives a gradient. Each
function runs in float32, and with bfloat16 inputs inside a bfloat16 CPU autocast region, where it
must still compute and return float32."""

import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meru_nb.entailment import entailment_loss, exterior_angle, half_aperture
from meru_nb.expmap import exp_map0, log_map0
from meru_nb.lorentz import (dist, dist0, geodesic, inner, lorentz_to_poincare, pairwise_dist,
                             pairwise_inner, poincare_to_lorentz, time_component)

FAST = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

POINT_MAX, TANGENT_MAX = 1e8, 1e12


def norms(largest: float):
    "Vector norms: exact zero, tiny and huge special values, or log-uniform between 1e-30 and `largest`."
    special = st.sampled_from([n for n in [0.0, 1e-30, 1e-12, 1e-4, 1.0, 1e4] if n < largest] + [largest])
    return st.one_of(special, st.floats(-30, math.log10(largest)).map(lambda e: 10.0**e))


def rows(draw, n_rows: int, dim: int, largest: float, rng: np.random.Generator) -> np.ndarray:
    "`n_rows` vectors of dimension `dim` in random directions with independently drawn norms."
    direction = rng.standard_normal((n_rows, dim))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return direction * np.array([draw(norms(largest)) for _ in range(n_rows)])[:, None]


@st.composite
def cases(draw):
    "A curvature (float or tensor) and float64 inputs: points x, y (B, n), z (B2, n), tangent vectors v, ball points p, fractions t."
    dim, b1, b2 = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.one_of(st.sampled_from([0.1, 1.0, 10.0]), st.floats(0.1, 10.0)))
    c = torch.tensor(c) if draw(st.booleans()) else c  # a learnable curvature (see check_finite), or a float
    x = rows(draw, b1, dim, POINT_MAX, rng)
    y = draw(st.sampled_from(["independent", "equal", "zero", "beyond", "opposite"]))
    y = {"independent": rows(draw, b1, dim, POINT_MAX, rng), "equal": x.copy(), "zero": 0 * x,
         "beyond": 2 * x, "opposite": -x}[y]
    z = np.concatenate([x[:1], rows(draw, b2, dim, POINT_MAX, rng)])  # row 0 repeats x[0]: an x == y pair
    v = rows(draw, b1, dim, TANGENT_MAX, rng)
    # Poincaré ball points up to 99% of the radius 1/sqrt(c) (bfloat16 would round 0.999 up to 1).
    p = 0.99 * rows(draw, b1, dim, 1.0, rng) / float(c)**0.5
    t = np.array(sorted({0.0, 1.0, draw(st.floats(0.0, 1.0))}))
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float64)
    return c, dict(x=as_tensor(x), y=as_tensor(y), z=as_tensor(z), v=as_tensor(v), p=as_tensor(p), t=as_tensor(t))


# name: (function of the named inputs and the curvature, the names of its tensor inputs)
FUNCTIONS = {
    "time_component": (lambda x, c: time_component(x, c), "x"),
    "inner": (inner, "xy"),
    "pairwise_inner": (pairwise_inner, "xz"),
    "dist": (dist, "xy"),
    "pairwise_dist": (pairwise_dist, "xz"),
    "dist0": (dist0, "x"),
    "geodesic": (lambda x, y, t, c: geodesic(x, y, t, c), "xyt"),
    "lorentz_to_poincare": (lorentz_to_poincare, "x"),
    "poincare_to_lorentz": (poincare_to_lorentz, "p"),
    "exp_map0": (exp_map0, "v"),
    "log_map0": (log_map0, "x"),
    "exterior_angle": (exterior_angle, "xy"),
    "exterior_angle_yx": (lambda x, y, c: exterior_angle(y, x, c), "xy"),
    "half_aperture": (lambda x, c: half_aperture(x, c), "x"),
    "entailment_loss": (lambda x, y, c: entailment_loss(x, y, c, reduction="sum"), "xy"),
}


def check_finite(name: str, c, inputs: dict, dtype: torch.dtype, autocast: bool):
    "Run FUNCTIONS[name]; the output must be finite float32, and so must the gradient of every input (and c if a tensor)."
    fn, names = FUNCTIONS[name]
    leaves = [inputs[n].to(dtype).requires_grad_() for n in names]
    curv = c.detach().clone().requires_grad_() if isinstance(c, torch.Tensor) else c
    with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext():
        out = fn(*leaves, curv)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all(), f"{name} returned {out}"
    out.sum().backward()
    grads = dict(zip(names, leaves)) | ({"c": curv} if isinstance(curv, torch.Tensor) else {})
    for leaf_name, leaf in grads.items():
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), f"d {name} / d {leaf_name} = {leaf.grad}"


@FAST
@given(case=cases())
def test_finite_in_float32(case):
    "In float32 every function and its gradients w.r.t. every input and c are finite, from norm 0 to huge."
    c, inputs = case
    for name in FUNCTIONS:
        check_finite(name, c, inputs, torch.float32, autocast=False)


@FAST
@given(case=cases())
def test_finite_float32_under_bf16_autocast(case):
    "Under bf16 autocast with bf16 inputs every function returns float32, finite with finite gradients."
    c, inputs = case
    for name in FUNCTIONS:
        check_finite(name, c, inputs, torch.bfloat16, autocast=True)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype, expected", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                                             (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_output_dtype(name, dtype, expected):
    "float16 and bfloat16 inputs are lifted to float32; float32 and float64 are kept."
    fn, names = FUNCTIONS[name]
    g = torch.Generator().manual_seed(0)
    inputs = {n: 0.3 * torch.rand(3, 2, generator=g) for n in "xyzvp"} | {"t": torch.tensor([0.0, 0.5, 1.0])}
    assert fn(*[inputs[n].to(dtype) for n in names], 1.0).dtype == expected


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float16_autocast_computes_in_float32(name):
    "Under float16 autocast, float32 inputs still give the float32 result computed without autocast."
    fn, names = FUNCTIONS[name]
    g = torch.Generator().manual_seed(1)
    inputs = {n: torch.randn(3, 2, generator=g) for n in "xyzv"} | {"p": 0.3 * torch.rand(3, 2, generator=g),
                                                                   "t": torch.tensor([0.0, 0.5, 1.0])}
    args = [inputs[n] for n in names]
    with torch.autocast("cpu", dtype=torch.float16):
        inside = fn(*args, 2.0)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, fn(*args, 2.0), rtol=0, atol=0)
