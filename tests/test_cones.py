"""Geometric properties of the entailment cones: aperture, exterior angle, loss, transitivity.

R below is sqrt(c) ||x||, the curvature-free radius of the apex x; the min-radius ball is R < 2K."""

import math

import pytest
import torch

from meru_nb.entailment import entailment_loss, exterior_angle, half_aperture

CURVS = [0.1, 1.0, 10.0]
K = 0.1  # the default min_radius


def at_radius(R: torch.Tensor, c: float, dim: int = 4, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    "Points with sqrt(c)||x|| = R (one per entry of R) in random directions."
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(len(R), dim, generator=g, dtype=torch.float64), dim=-1)
    return (direction * R.to(torch.float64)[:, None] / c**0.5).to(dtype)


def rotate(p: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    "Rotate 2-d points `p` about O by `angle` (an isometry of the hyperboloid fixing O)."
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([cos * p[:, 0] - sin * p[:, 1], sin * p[:, 0] + cos * p[:, 1]], -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", CURVS)
def test_aperture_non_increasing_in_norm(c, dtype):
    "Along a ray from O the half-aperture never grows as ||x|| grows, and it does shrink overall."
    direction = at_radius(torch.ones(1), c, dtype=dtype)
    x = torch.logspace(-6, 6, 500, dtype=dtype)[:, None] * direction
    aper = half_aperture(x, c)
    assert (aper.diff() <= 0).all()
    assert aper[0] > 1.5 and aper[-1] < 1e-4


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-4), (torch.float64, 2e-4)])
@pytest.mark.parametrize("c", CURVS)
def test_aperture_is_right_angle_near_origin(c, dtype, tol):
    "At O and inside the min-radius ball (R <= 2K) the half-aperture is pi/2 up to the asin clamp."
    x = at_radius(torch.tensor([0.0, 1e-30, 1e-12, 1e-4, 0.05, 0.19, 0.1999]), c, dtype=dtype)
    aper = half_aperture(x, c)
    assert ((math.pi / 2 - aper).abs() <= tol).all()


@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("min_radius", [0.05, 0.1, 0.5])
def test_aperture_decays_as_asin_of_2k_over_radius(c, min_radius):
    "Outside the ball the half-aperture is asin(2K / R), tending to 0 like 2K / R."
    R = torch.tensor([1.01 * 2 * min_radius, 3.0, 30.0, 3e4], dtype=torch.float64)
    aper = half_aperture(at_radius(R, c), c, min_radius=min_radius)
    torch.testing.assert_close(aper, torch.asin(2 * min_radius / R), rtol=1e-6, atol=0)
    assert aper[-1] * R[-1] == pytest.approx(2 * min_radius, rel=1e-6)


@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("s", [1.5, 3.0, 100.0])
def test_ray_beyond_x_float64(c, s):
    "In float64, y = s x with s > 1 (on the ray from O past x) has exterior angle ~0 and loss 0, for R in [0.01, 1e4]."
    R = torch.logspace(-2, 4, 60)
    x = at_radius(R, c)
    angle = exterior_angle(x, s * x, c)
    assert (angle < 1e-14 * (1 + R.double())).all()
    assert (entailment_loss(x, s * x, c, reduction="none") == 0).all()


@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("s", [1.5, 3.0, 100.0])
def test_ray_beyond_x_float32(c, s):
    "In float32, y = s x is off the ray only by the inputs' rounding, ~1e-7 (1 + R), and in the cone up to R = 300."
    R = torch.logspace(-2, 4, 60)
    x = at_radius(R, c, dtype=torch.float32)
    angle = exterior_angle(x, s * x, c)
    assert (angle < 2e-6 * (1 + R)).all()
    assert (entailment_loss(x, s * x, c, reduction="none")[R <= 300] == 0).all()


def test_ray_beyond_x_float32_large_radius():
    "In float32, a point on the ray past x is inside x's cone (loss 0) also for R = 30, where the aperture is 0.0067."
    x = torch.tensor([[30.0, 0.0]])
    assert exterior_angle(x, 2 * x, 1.0) < 1e-4
    assert entailment_loss(x, 2 * x, 1.0) == 0


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-3), (torch.float64, 1e-9)])
@pytest.mark.parametrize("c", CURVS)
@pytest.mark.parametrize("s", [0.0, 0.3, 0.9])
def test_segment_before_x_has_straight_exterior_angle(c, s, dtype, tol):
    "y = s x with 0 <= s < 1 (between O and x) has exterior angle ~pi and a positive loss, for R in [0.3, 10]."
    x = at_radius(torch.logspace(math.log10(0.3), 1, 30), c, dtype=dtype)
    angle = exterior_angle(x, s * x, c)
    assert (math.pi - angle < tol).all()
    assert (entailment_loss(x, s * x, c, reduction="none") > 1.0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", CURVS)
def test_loss_positive_outside_cone(c, dtype):
    "Opposite points (-s x) and points rotated far about O are outside the cone: positive loss, for R in [0.01, 100]."
    R = torch.logspace(-2, 2, 40)
    x = at_radius(R, c, dim=2, dtype=dtype)
    turn = lambda angle: torch.tensor(angle, dtype=dtype)
    for y in (-x, -3 * x, rotate(x, turn(math.pi / 2)), rotate(2 * x, turn(2.5)), rotate(10 * x, turn(-2.0))):
        loss = entailment_loss(x, y, c, reduction="none")
        assert (loss > 0).all()
        torch.testing.assert_close(loss, exterior_angle(x, y, c) - half_aperture(x, c))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", CURVS)
def test_loss_zero_iff_exterior_angle_within_aperture(c, dtype):
    "entailment_loss(x, y) == 0 exactly when exterior_angle(x, y) <= half_aperture(x), and is their gap otherwise."
    g = torch.Generator().manual_seed(1)
    x = at_radius(torch.logspace(-1, 1, 2000), c, dim=2, seed=2, dtype=dtype)
    y = rotate(x * torch.empty(2000, 1).uniform_(0.5, 4, generator=g).to(dtype),
               torch.empty(2000).uniform_(-0.5, 0.5, generator=g).to(dtype))
    ext, aper = exterior_angle(x, y, c), half_aperture(x, c)
    loss = entailment_loss(x, y, c, reduction="none")
    inside = ext <= aper
    assert 200 < inside.sum() < 1800  # both cases occur
    assert torch.equal(loss == 0, inside)
    torch.testing.assert_close(loss[~inside], (ext - aper)[~inside])


def chains(c: float, R_lo: float, R_hi: float, n: int = 20000, seed: int = 0):
    "2-d float64 triples x -> y -> z, each pushed outward from the last by a factor in [1, 4] and rotated within its aperture."
    g = torch.Generator().manual_seed(seed)
    R = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(math.log(R_lo), math.log(R_hi), generator=g))
    x = at_radius(R, c, dim=2, seed=seed + 1)

    def push(p):
        scale = torch.exp(torch.empty(n, 1, dtype=torch.float64).uniform_(0, math.log(4), generator=g))
        turn = torch.empty(n, dtype=torch.float64).uniform_(-1, 1, generator=g) * half_aperture(p, c)
        return rotate(scale * p, turn)

    y = push(x)
    z = push(y)
    entails = lambda a, b: entailment_loss(a, b, c, reduction="none") == 0
    return x, z, entails(x, y) & entails(y, z)


@pytest.mark.parametrize("c", CURVS)
def test_transitivity_outside_min_radius_ball(c):
    "For R >= 2K, y in cone(x) and z in cone(y) imply z in cone(x) (cones nest), on sampled chains."
    x, z, chained = chains(c, R_lo=2 * K, R_hi=20.0)
    gap = exterior_angle(x, z, c) - half_aperture(x, c)
    assert chained.sum() > 300
    assert (gap[chained] <= 1e-9).all()
    assert gap[chained].max() > -1e-2  # some chains end close to the boundary of cone(x)


@pytest.mark.parametrize("c", CURVS)
def test_transitivity_fails_inside_min_radius_ball(c):
    "For R < 2K the aperture is clamped to pi/2 and cones no longer nest: sampling finds z escaping cone(x)."
    x, z, chained = chains(c, R_lo=0.01, R_hi=2 * K)
    gap = exterior_angle(x, z, c) - half_aperture(x, c)
    assert (gap[chained] > 0.1).sum() > 50
