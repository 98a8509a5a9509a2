"""Bad inputs raise a clear error of the right type instead of returning NaN or garbage."""

import math
import re

import numpy as np
import pytest
import torch

from meru_nb.entailment import entailment_loss, exterior_angle, half_aperture
from meru_nb.expmap import exp_map0, log_map0
from meru_nb.lorentz import (dist, dist0, geodesic, inner, lorentz_to_poincare, pairwise_dist,
                             pairwise_inner, poincare_to_lorentz, time_component)

T = torch.tensor([0.0, 0.5, 1.0])

# name: (call with one tensor argument `a` (the points) and the curvature, name of that argument)
UNARY = {
    "time_component": (lambda a, c: time_component(a, c), "x"),
    "dist0": (lambda a, c: dist0(a, c), "x"),
    "lorentz_to_poincare": (lambda a, c: lorentz_to_poincare(a, c), "x"),
    "poincare_to_lorentz": (lambda a, c: poincare_to_lorentz(a, c), "p"),
    "exp_map0": (lambda a, c: exp_map0(a, c), "v"),
    "log_map0": (lambda a, c: log_map0(a, c), "x"),
    "half_aperture": (lambda a, c: half_aperture(a, c), "x"),
}
# name: a function of (x, y, curv)
BINARY = {
    "inner": inner,
    "dist": dist,
    "pairwise_inner": pairwise_inner,
    "pairwise_dist": pairwise_dist,
    "geodesic": lambda x, y, c: geodesic(x, y, T, c),
    "exterior_angle": exterior_angle,
    "entailment_loss": entailment_loss,
}
ELEMENTWISE = ["inner", "dist", "geodesic", "exterior_angle", "entailment_loss"]
PAIRWISE = ["pairwise_inner", "pairwise_dist"]


def all_calls():
    "Every public function as a call of (x, y, curv), with the name the error should give to x and to y."
    for name, (fn, arg) in UNARY.items():
        yield pytest.param(lambda x, y, c, fn=fn: fn(x, c), arg, None, id=name)
    for name, fn in BINARY.items():
        yield pytest.param(fn, "x", "y", id=name)


CALLS = list(all_calls())


def good(n: int = 3, dim: int = 4) -> torch.Tensor:
    "Valid float32 points, well inside the Poincaré ball too."
    return 0.1 * torch.rand(n, dim, generator=torch.Generator().manual_seed(n))


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_float_tensor_raises_type_error(fn, x_name, y_name, dtype):
    "A non-floating-point tensor for the points raises TypeError naming the argument and the dtype."
    with pytest.raises(TypeError, match=rf"`{x_name}` must be a floating-point tensor.*{dtype}"):
        fn(good().to(dtype), good(), 1.0)
    if y_name:
        with pytest.raises(TypeError, match=rf"`{y_name}` must be a floating-point tensor.*{dtype}"):
            fn(good(), good().to(dtype), 1.0)


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("value", [[[0.1, 0.2]], np.array([[0.1, 0.2]]), 0.1, None])
def test_non_tensor_raises_type_error(fn, x_name, y_name, value):
    "Lists, numpy arrays, floats and None for the points raise TypeError naming the argument."
    with pytest.raises(TypeError, match=rf"`{x_name}` must be a torch.Tensor, got {type(value).__name__}"):
        fn(value, good(1, 2), 1.0)
    if y_name:
        with pytest.raises(TypeError, match=rf"`{y_name}` must be a torch.Tensor, got {type(value).__name__}"):
            fn(good(1, 2), value, 1.0)


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
def test_zero_dim_tensor_raises_value_error(fn, x_name, y_name):
    "A 0-d tensor has no feature axis: ValueError naming the argument."
    with pytest.raises(ValueError, match=rf"`{x_name}` must have a feature axis"):
        fn(torch.tensor(0.1), good(), 1.0)


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("curv", [0, 0.0, -1.0, -1e-30, math.nan, math.inf, -math.inf])
def test_bad_curv_number_raises_value_error(fn, x_name, y_name, curv):
    "A curvature parameter c that is not positive and finite raises ValueError saying it must be positive."
    with pytest.raises(ValueError, match=r"`curv` must be positive"):
        fn(good(), good(), curv)


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("curv", [0.0, -1.0, math.nan, -math.inf])
def test_bad_curv_tensor_raises_value_error(fn, x_name, y_name, curv):
    "A scalar float tensor c that is not positive raises ValueError saying it must be positive."
    with pytest.raises(ValueError, match=r"`curv` must be positive"):
        fn(good(), good(), torch.tensor(curv))


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
def test_infinite_curv_tensor_raises_value_error(fn, x_name, y_name):
    "curv = torch.tensor(inf) raises ValueError like curv = math.inf does."
    with pytest.raises(ValueError, match=r"`curv` must be positive"):
        fn(good(), good(), torch.tensor(math.inf))


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("curv", [torch.tensor(1), torch.tensor(True), True, "1.0", None, [1.0], np.float32(0.5)])
def test_non_float_curv_raises_type_error(fn, x_name, y_name, curv):
    "Integer or bool tensors, bools, strings, None, lists and numpy scalars as c raise TypeError naming `curv`."
    with pytest.raises(TypeError, match=r"`curv` must be a float"):
        fn(good(), good(), curv)


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("shape", [(2,), (1, 2), (0,)])
def test_non_scalar_curv_tensor_raises_value_error(fn, x_name, y_name, shape):
    "A curvature tensor with other than one element raises ValueError saying it must be a scalar."
    with pytest.raises(ValueError, match=rf"`curv` must be a scalar, got a tensor of shape {re.escape(str(shape))}"):
        fn(good(), good(), torch.ones(shape))


@pytest.mark.parametrize("fn, x_name, y_name", CALLS)
@pytest.mark.parametrize("curv", [2, 2.0, torch.tensor(2.0), torch.tensor([2.0]), torch.tensor(2.0, dtype=torch.float64)])
def test_good_curv_forms_agree(fn, x_name, y_name, curv):
    "c as an int, a float, a 0-d or 1-element float tensor of any float dtype all give the same result."
    torch.testing.assert_close(fn(good(), good(), curv), fn(good(), good(), 2.0))


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("x_shape, y_shape", [((3, 4), (3, 5)), ((3, 4), (2, 4)), ((2, 3, 4), (3, 3, 4)), ((4,), (3,))])
def test_mismatched_shapes_raise_value_error(name, x_shape, y_shape):
    "Different feature dimensions or non-broadcastable batch shapes raise ValueError naming both shapes."
    x, y = torch.rand(x_shape), torch.rand(y_shape)
    both = rf"{re.escape(str(x_shape))} and {re.escape(str(y_shape))}"
    with pytest.raises(ValueError, match=rf"same feature dimension and broadcastable batch shapes, got {both}"):
        BINARY[name](x, y, 1.0)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_broadcastable_shapes_are_accepted(name):
    "Batch shapes that broadcast ((3, 1, 4) with (5, 4)) are accepted and broadcast like torch."
    out = BINARY[name](0.1 * torch.rand(3, 1, 4), 0.1 * torch.rand(5, 4), 1.0)
    expected = {"geodesic": (3, 3, 5, 4), "entailment_loss": ()}.get(name, (3, 5))
    assert out.shape == expected and torch.isfinite(out).all()


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("x_shape, y_shape", [((2, 3, 4), (5, 4)), ((3, 4), (2, 5, 4)), ((4,), (5, 4)),
                                              ((3, 4), (5, 3)), ((2, 3, 4), (2, 3, 4))])
def test_pairwise_needs_two_matching_matrices(name, x_shape, y_shape):
    "Pairwise functions reject anything but (B1, n) and (B2, n) with ValueError naming both shapes."
    x, y = torch.rand(x_shape), torch.rand(y_shape)
    both = rf"{re.escape(str(x_shape))} and {re.escape(str(y_shape))}"
    with pytest.raises(ValueError, match=rf"pairwise functions take .*\(B1, n\).*\(B2, n\).*got {both}"):
        BINARY[name](x, y, 1.0)


@pytest.mark.parametrize("reduction", ["max", "MEAN", "", None, 0])
def test_bad_reduction_raises_value_error(reduction):
    "entailment_loss accepts only 'mean', 'sum' and 'none' as reduction."
    with pytest.raises(ValueError, match=r"`reduction` must be 'mean', 'sum' or 'none'"):
        entailment_loss(good(), good(), 1.0, reduction=reduction)


@pytest.mark.parametrize("min_radius", [0, 0.0, -0.1, math.nan, math.inf, "0.1", None, True, torch.tensor(0.1)])
def test_bad_min_radius_raises(min_radius):
    "half_aperture and entailment_loss reject a min_radius that is not a positive finite number."
    with pytest.raises((TypeError, ValueError), match=r"`min_radius` must be a positive number"):
        half_aperture(good(), 1.0, min_radius=min_radius)
    with pytest.raises((TypeError, ValueError), match=r"`min_radius` must be a positive number"):
        entailment_loss(good(), good(), 1.0, min_radius=min_radius)


@pytest.mark.parametrize("scale", [1.0, 1.5, 100.0])
@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_poincare_to_lorentz_outside_ball_raises(c, scale):
    "Points on or outside the Poincaré ball of radius 1/sqrt(c) raise ValueError instead of returning inf or flipped points."
    p = torch.tensor([[0.0, 0.0], [scale / c**0.5, 0.0]])
    with pytest.raises(ValueError, match=r"inside the Poincaré ball of radius 1/sqrt\(c\)"):
        poincare_to_lorentz(p, c)
