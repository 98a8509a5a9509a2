"""Analytic gradients agree with finite differences (torch.autograd.gradcheck, float64).

Points are generic: norms around 1, directions spread out, so that no clamp is active (distances
well above the acosh floor, sqrt(c)||x|| above the min-radius ball, exterior angles away from 0 and
pi, losses away from the relu kink). Gradients are checked w.r.t. the points and the curvature."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from meru_nb.entailment import entailment_loss, exterior_angle, half_aperture
from meru_nb.expmap import exp_map0, log_map0
from meru_nb.lorentz import (dist, dist0, geodesic, inner, lorentz_to_poincare, pairwise_dist,
                             pairwise_inner, poincare_to_lorentz, time_component)


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64).requires_grad_()


def generic(n: int, dim: int = 3, seed: int = 0, lo: float = 0.5, hi: float = 2.0) -> torch.Tensor:
    "`n` float64 points in random directions with norms uniform in [lo, hi], ready for gradcheck."
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1)
    return leaf(direction * torch.empty(n, 1, dtype=torch.float64).uniform_(lo, hi, generator=g))


CURVS = [0.3, 1.0, 4.0]


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_time_component(c):
    "time_component's gradient w.r.t. x and c matches finite differences."
    assert gradcheck(lambda x, k: time_component(x, k), (generic(4), leaf(torch.tensor(c))))
    assert gradcheck(lambda x, k: time_component(x, k, keepdim=True), (generic(4), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_inner(c):
    "inner's gradient w.r.t. x, y and c matches finite differences."
    assert gradcheck(inner, (generic(4, seed=1), generic(4, seed=2), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_pairwise_inner(c):
    "pairwise_inner's gradient w.r.t. x, y and c matches finite differences."
    assert gradcheck(pairwise_inner, (generic(3, seed=1), generic(4, seed=2), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_dist(c):
    "dist's gradient w.r.t. x, y and c matches finite differences."
    assert gradcheck(dist, (generic(4, seed=1), generic(4, seed=2), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_pairwise_dist(c):
    "pairwise_dist's gradient w.r.t. x, y and c matches finite differences."
    assert gradcheck(pairwise_dist, (generic(3, seed=1), generic(4, seed=2), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_dist0(c):
    "dist0's gradient w.r.t. x and c matches finite differences."
    assert gradcheck(dist0, (generic(4), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_geodesic(c):
    "geodesic's gradient w.r.t. x, y, t and c matches finite differences."
    t = leaf(torch.tensor([0.2, 0.5, 0.7]))
    assert gradcheck(geodesic, (generic(2, seed=1), generic(2, seed=2), t, leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_exp_map0(c):
    "exp_map0's gradient w.r.t. v and c matches finite differences, below and above the Taylor threshold."
    assert gradcheck(exp_map0, (generic(4), leaf(torch.tensor(c))))
    assert gradcheck(exp_map0, (generic(4, lo=1e-6, hi=1e-5), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_log_map0(c):
    "log_map0's gradient w.r.t. x and c matches finite differences, below and above the Taylor threshold."
    assert gradcheck(log_map0, (generic(4), leaf(torch.tensor(c))))
    assert gradcheck(log_map0, (generic(4, lo=1e-6, hi=1e-5), leaf(torch.tensor(c))))


def test_gradcheck_exp_map0_beyond_sinh_cap():
    "Past the sinh cap the output is sqrt(c)||exp0(v)|| = 2^15 along v: its gradient is still exact."
    assert gradcheck(exp_map0, (generic(3, lo=20.0, hi=40.0), leaf(torch.tensor(1.0))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_lorentz_to_poincare(c):
    "lorentz_to_poincare's gradient w.r.t. x and c matches finite differences."
    assert gradcheck(lorentz_to_poincare, (generic(4), leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_poincare_to_lorentz(c):
    "poincare_to_lorentz's gradient w.r.t. p and c matches finite differences inside the ball."
    p = generic(4, lo=0.1 / math.sqrt(c), hi=0.8 / math.sqrt(c))
    assert gradcheck(poincare_to_lorentz, (p, leaf(torch.tensor(c))))


def cone_pairs(c: float):
    "Apexes x with sqrt(c)||x|| in [1, 3] and points y at generic angles, none at a clamp."
    x = generic(6, seed=3, lo=1.0 / math.sqrt(c), hi=3.0 / math.sqrt(c))
    y = generic(6, seed=4, lo=0.5 / math.sqrt(c), hi=4.0 / math.sqrt(c))
    return x, y


@pytest.mark.parametrize("c", CURVS)
def test_gradcheck_exterior_angle(c):
    "exterior_angle's gradient w.r.t. x, y and c matches finite differences."
    x, y = cone_pairs(c)
    angle = exterior_angle(x, y, c)
    assert ((angle > 0.1) & (angle < math.pi - 0.1)).all()  # away from the acos clamp
    assert gradcheck(exterior_angle, (x, y, leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("min_radius", [0.1, 0.3])
def test_gradcheck_half_aperture(c, min_radius):
    "half_aperture's gradient w.r.t. x and c matches finite differences outside the min-radius ball."
    x, _ = cone_pairs(c)
    assert gradcheck(lambda x, k: half_aperture(x, k, min_radius=min_radius), (x, leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_entailment_loss(c, reduction):
    "entailment_loss's gradient w.r.t. x, y and c matches finite differences where the loss is positive."
    x, y = cone_pairs(c)
    y = leaf(-y.detach())  # y on the far side of O from x: outside the cone
    assert (entailment_loss(x, y, c, reduction="none") > 0.1).all()
    fn = lambda x, y, k: entailment_loss(x, y, k, reduction=reduction)
    assert gradcheck(fn, (x, y, leaf(torch.tensor(c))))


@pytest.mark.parametrize("c", CURVS)
def test_entailment_loss_gradient_is_zero_inside_cone(c):
    "Inside the cone the loss is exactly 0, and so is its gradient w.r.t. x, y and c."
    x, _ = cone_pairs(c)
    y = leaf(2.0 * x.detach())
    k = leaf(torch.tensor(c))
    loss = entailment_loss(x, y, k, reduction="sum")
    loss.backward()
    assert loss == 0
    for grad in (x.grad, y.grad, k.grad):
        assert torch.equal(grad, torch.zeros_like(grad))
