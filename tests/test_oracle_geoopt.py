"""Cross-checks of the Lorentz geometry against geoopt, an independent implementation, in float64.

geoopt's `Lorentz(k)` is the hyperboloid <x, x>_L = -k in full (n+1) coordinates, time first,
so our curvature -c corresponds to k = 1/c. We never use geoopt's `half_aperture` (disputed)."""

import math

import geoopt
import pytest
import torch
from torch.testing import assert_close

from meru_nb.bench import geoopt_exterior_angle
from meru_nb.entailment import entailment_loss, exterior_angle, half_aperture
from meru_nb.expmap import exp_map0, log_map0
from meru_nb.lorentz import (dist, dist0, geodesic, inner, lorentz_to_poincare, pairwise_dist,
                             pairwise_inner, poincare_to_lorentz, time_component)

CURVS = [0.1, 0.3, 1.0, 3.0, 10.0]
DIM = 6


def space_points(n: int, seed: int, lo: float = 0.1, hi: float = 4.0) -> torch.Tensor:
    "`n` random space components in float64, in random directions, norms log-uniform in [lo, hi]."
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, DIM, generator=g, dtype=torch.float64), dim=-1)
    log_norm = torch.empty(n, 1, dtype=torch.float64).uniform_(math.log(lo), math.log(hi), generator=g)
    return direction * log_norm.exp()


def full(x: torch.Tensor, c: float) -> torch.Tensor:
    "geoopt's coordinates of our points: the time component first, then the space components."
    return torch.cat([time_component(x, c, keepdim=True), x], dim=-1)


def manifold(c: float) -> geoopt.Lorentz:
    return geoopt.Lorentz(k=torch.tensor(1.0 / c, dtype=torch.float64))


@pytest.mark.parametrize("c", CURVS)
def test_full_points_lie_on_geoopt_hyperboloid(c):
    "Appending time_component gives points with <x, x>_L = -1/c, which geoopt accepts as on its manifold."
    x = space_points(50, seed=1)
    m = manifold(c)
    assert_close(m.inner(None, full(x, c)), torch.full((50,), -1.0 / c, dtype=torch.float64))
    m.assert_check_point_on_manifold(full(x, c))


@pytest.mark.parametrize("c", CURVS)
def test_inner_matches_geoopt(c):
    "inner and pairwise_inner equal geoopt's Minkowski inner product of the full points."
    x, y = space_points(40, seed=2), space_points(30, seed=3)
    m = manifold(c)
    assert_close(inner(x[:30], y, c), m.inner(None, full(x[:30], c), full(y, c)))
    expected = m.inner(None, full(x, c)[:, None, :], full(y, c)[None, :, :])
    assert_close(pairwise_inner(x, y, c), expected)


@pytest.mark.parametrize("c", CURVS)
def test_dist_matches_geoopt(c):
    "dist (elementwise) equals geoopt's Lorentz distance with k = 1/c."
    x, y = space_points(100, seed=4), space_points(100, seed=5)
    assert_close(dist(x, y, c), manifold(c).dist(full(x, c), full(y, c)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c", CURVS)
def test_pairwise_dist_matches_geoopt(c):
    "pairwise_dist equals geoopt's distance for every pair of rows."
    x, y = space_points(20, seed=6), space_points(15, seed=7)
    expected = manifold(c).dist(full(x, c)[:, None, :], full(y, c)[None, :, :])
    assert_close(pairwise_dist(x, y, c), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c", CURVS)
def test_dist0_matches_geoopt(c):
    "dist0 equals geoopt's distance to its origin."
    x = space_points(100, seed=8)
    assert_close(dist0(x, c), manifold(c).dist0(full(x, c)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c", CURVS)
def test_exp_map0_matches_geoopt(c):
    "exp_map0(v) is the space part of geoopt's expmap0 of the tangent vector (0, v) at its origin."
    v = space_points(100, seed=9, lo=0.01 / math.sqrt(c), hi=8.0 / math.sqrt(c))  # below the sinh cap
    expected = manifold(c).expmap0(torch.cat([torch.zeros_like(v[:, :1]), v], dim=-1))
    assert_close(full(exp_map0(v, c), c), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c", CURVS)
def test_log_map0_matches_geoopt(c):
    "log_map0(x) is the space part of geoopt's logmap0, whose time part is 0."
    x = space_points(100, seed=10)
    expected = manifold(c).logmap0(full(x, c))
    assert_close(expected[:, 0], torch.zeros(100, dtype=torch.float64), rtol=0, atol=1e-9)
    assert_close(log_map0(x, c), expected[:, 1:], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("c", CURVS)
def test_geodesic_matches_geoopt(c):
    "geodesic(x, y, t) is geoopt's expmap at x of t times its logmap at x of y."
    x, y = space_points(10, seed=11), space_points(10, seed=12)
    t = torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    m = manifold(c)
    X, Y = full(x, c), full(y, c)
    expected = torch.stack([m.expmap(X, s * m.logmap(X, Y))[:, 1:] for s in t])
    assert_close(geodesic(x, y, t, c), expected, rtol=1e-8, atol=1e-8)
    assert_close(geodesic(x, y, torch.zeros(1, dtype=torch.float64), c)[0], x)


@pytest.mark.parametrize("c", CURVS)
def test_lorentz_to_poincare_matches_geoopt_ball(c):
    "Distances between lorentz_to_poincare images in geoopt's PoincareBall(c) equal our Lorentz distances."
    x, y = space_points(50, seed=13), space_points(50, seed=14)
    p, q = lorentz_to_poincare(x, c), lorentz_to_poincare(y, c)
    ball = geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))
    ball.assert_check_point_on_manifold(p)
    assert_close(ball.dist(p, q), dist(x, y, c), rtol=1e-9, atol=1e-9)
    assert_close(poincare_to_lorentz(p, c), x, rtol=1e-9, atol=1e-9)


def exterior_angle_oracle(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    "pi minus the angle at x between the geodesics to O and to y: chapter 12a's geoopt oracle, on our points."
    return geoopt_exterior_angle(full(x, c), full(y, c), torch.tensor(1.0 / c, dtype=torch.float64))


@pytest.mark.parametrize("c", CURVS)
def test_exterior_angle_matches_geoopt_tangent_angle(c):
    "exterior_angle equals pi minus the Lorentz-metric angle between logmap_x(O) and logmap_x(y)."
    x, y = space_points(200, seed=15), space_points(200, seed=16)
    assert_close(exterior_angle(x, y, c), exterior_angle_oracle(x, y, c), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("min_radius", [0.05, 0.1, 0.3])
def test_half_aperture_satisfies_cone_equation(c, min_radius):
    "Outside the min-radius ball, sinh(sqrt(c) d(O, x)) * sin(aperture) = 2K with d from geoopt; inside it is pi/2."
    x = space_points(200, seed=17, lo=0.01 / math.sqrt(c), hi=10.0 / math.sqrt(c))
    aper = half_aperture(x, c, min_radius=min_radius)
    sinh_d = torch.sinh(math.sqrt(c) * manifold(c).dist0(full(x, c)))
    outside = sinh_d > 2 * min_radius * (1 + 1e-6)
    assert outside.sum() > 20 and (~outside).sum() > 5
    assert_close(sinh_d[outside] * torch.sin(aper[outside]),
                 torch.full_like(aper[outside], 2 * min_radius), rtol=1e-6, atol=0)
    assert_close(aper[~outside], torch.full_like(aper[~outside], math.pi / 2), rtol=0, atol=2e-4)


@pytest.mark.parametrize("c", CURVS)
def test_entailment_loss_matches_oracles(c):
    "entailment_loss is relu(oracle exterior angle - oracle aperture), reduced by mean, sum or none."
    x, y = space_points(100, seed=18), space_points(100, seed=19)
    y[:50] = 1.5 * x[:50] + 0.05 * y[:50]  # pushed outward from x: many of these are inside the cone
    sinh_d = torch.sinh(math.sqrt(c) * manifold(c).dist0(full(x, c)))
    aper = torch.asin((0.2 / sinh_d).clamp(max=1 - 1e-8))  # the reference clamps at 1 - eps
    expected = torch.relu(exterior_angle_oracle(x, y, c) - aper)
    assert (expected > 0).any() and (expected == 0).any()
    assert_close(entailment_loss(x, y, c, reduction="none"), expected, rtol=1e-6, atol=1e-6)
    assert_close(entailment_loss(x, y, c), expected.mean(), rtol=1e-6, atol=1e-6)
    assert_close(entailment_loss(x, y, c, reduction="sum"), expected.sum(), rtol=1e-6, atol=1e-5)
