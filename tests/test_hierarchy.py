"Tests of meru_nb.hierarchy: rank statistics against hand answers (the chapter checks them against the formulas), tree metrics by hand, traversals on placed points."
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from meru_nb.data import text_pool
from meru_nb.scenes import SHAPES, Caption, Part, Scene, Taxonomy
from meru_nb.encoders import tokenize
from meru_nb.entailment import exterior_angle, half_aperture
from meru_nb.expmap import exp_map0, log_map0
from meru_nb.embed import is_hyperbolic
from meru_nb.hierarchy import (ROOT_TEXT, caption_pair_metrics, clip_root, clip_traversal, entailment_score, generality,
                               hierarchy_report, load_pool, meru_traversal, traversal_metrics, traverse, tree_metrics)
from meru_nb.lorentz import dist0, pairwise_dist
from meru_nb.models import build_model
from meru_nb.stats import dump_json, load_json, roc_auc, spearman


# --- Spearman -------------------------------------------------------------------------------------------------

def test_spearman_perfect_and_reversed():
    assert spearman([1, 2, 3, 4, 5], [2, 4, 8, 16, 32]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4, 5], [5, 1, 0, -3, -10]) == pytest.approx(-1)


def test_spearman_ties_by_hand():
    # x ranks 1, 2.5, 2.5, 4; y ranks 1, 2, 3, 4 -> centred (-1.5, 0, 0, 1.5) and (-1.5, -.5, .5, 1.5)
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_bad_input():
    assert math.isnan(spearman([2, 2, 2], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2, 3], [1, 2])


# --- ROC-AUC --------------------------------------------------------------------------------------------------

def test_auc_perfect_reversed_random():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0
    rng = np.random.default_rng(0)
    assert roc_auc(rng.random(20000), rng.random(20000) < 0.3) == pytest.approx(0.5, abs=0.02)


def test_auc_ties_count_half():
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    # pairs (pos, neg): (2, 1) right, (2, 2) tie, (3, 1) right, (3, 2) right -> 3.5 / 4
    assert roc_auc([1, 2, 2, 3], [0, 0, 1, 1]) == 0.875


def test_auc_bad_input():
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_auc([1, 2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([1, 2, 3], [1, 0])
    with pytest.raises(ValueError, match="booleans or 0/1"):
        roc_auc([1, 2], [0, 2])


# --- tree metrics ---------------------------------------------------------------------------------------------

#        animal
#       /      \
#    bird      mammal
#    /  \       /   \
# robin crow  dog   cat
#                    |
#                  kitten
ANIMALS = Taxonomy("animal", {"animal": ["bird", "mammal"], "bird": ["robin", "crow"],
                              "mammal": ["dog", "cat"], "cat": ["kitten"]})


def test_tree_metrics_single_cases_by_hand():
    exact = tree_metrics(ANIMALS, ["dog"], ["dog"])
    assert exact == {"accuracy": 1, "tie": 0, "lca_depth": 2, "lca_height": 0, "jaccard": 1,
                     "hprecision": 1, "hrecall": 1, "n": 1}
    sibling = tree_metrics(ANIMALS, ["crow"], ["robin"])           # A = {crow, bird} vs {robin, bird}
    assert sibling == {"accuracy": 0, "tie": 2, "lca_depth": 1, "lca_height": 1, "jaccard": 1 / 3,
                       "hprecision": 0.5, "hrecall": 0.5, "n": 1}
    far = tree_metrics(ANIMALS, ["kitten"], ["robin"])             # meet at the root: 3 up + 2 down... 3 + 2
    assert far["tie"] == 5 and far["lca_depth"] == 0 and far["lca_height"] == 2 and far["jaccard"] == 0
    assert far["hprecision"] == 0 and far["hrecall"] == 0
    coarse = tree_metrics(ANIMALS, ["mammal"], ["kitten"])         # an inner-node prediction on the true path
    assert coarse["tie"] == 2 and coarse["lca_depth"] == 1 and coarse["lca_height"] == 2
    assert coarse["hprecision"] == 1 and coarse["hrecall"] == pytest.approx(1 / 3) and coarse["jaccard"] == pytest.approx(1 / 3)


def test_tree_metrics_micro_averages_hp_hr():
    # pairs: (crow, robin): |A p|=2 |A t|=2 common 1; (mammal, kitten): |A p|=1 |A t|=3 common 1
    m = tree_metrics(ANIMALS, ["crow", "mammal"], ["robin", "kitten"])
    assert m["hprecision"] == pytest.approx(2 / 3) and m["hrecall"] == pytest.approx(2 / 5)
    assert m["tie"] == 2 and m["jaccard"] == pytest.approx(1 / 3)
    assert m["accuracy"] == 0 and m["n"] == 2


def test_tree_metrics_on_shapes():
    m = tree_metrics(SHAPES, ["square", "circle"], ["triangle", "ellipse"])
    assert m["tie"] == 2 and m["lca_depth"] == 1 and m["hprecision"] == 0.5


def test_tree_metrics_bad_labels():
    with pytest.raises(ValueError, match="'zebra'"):
        tree_metrics(ANIMALS, ["zebra"], ["dog"])
    with pytest.raises(ValueError, match="'unicorn'"):
        tree_metrics(ANIMALS, ["dog"], ["unicorn"])
    with pytest.raises(ValueError, match="equal length"):
        tree_metrics(ANIMALS, ["dog", "cat"], ["dog"])
    with pytest.raises(ValueError, match="non-empty"):
        tree_metrics(ANIMALS, [], [])


# --- traversal on placed points -------------------------------------------------------------------------------

def test_meru_traversal_by_hand():
    # root at O, generic on the image's axis near O, specific further out, one text off to the side
    y = torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0], [0.0, 2.0]])
    assert meru_traversal(torch.tensor([4.0, 0.02]), y, 1.0, root_index=0) == [2, 1, 0]
    # the specific text's cone is narrow (half-aperture asin(0.1)): an image slightly off its axis is outside it
    assert meru_traversal(torch.tensor([4.0, 0.1]), y, 1.0, root_index=0) == [1, 0]
    # a forced root qualifies even when its cone holds nothing: at the end only it remains
    y_far_root = torch.tensor([[0.0, 5.0], [2.0, 0.0]])
    assert meru_traversal(torch.tensor([4.0, 0.0]), y_far_root, 1.0, root_index=0) == [1, 0]


def test_meru_traversal_two_dimensional_reduction_is_exact():
    "The traversal computed in the plane of the path agrees with the same computation in all n dimensions."
    g = torch.Generator().manual_seed(0)
    lengths = []
    for trial in range(6):
        u = F.normalize(torch.randn(16, generator=g), dim=0)
        y = torch.randn(300, 16, generator=g)
        y[:200] = u * torch.rand(200, 1, generator=g) * 6 + 0.05 * torch.randn(200, 16, generator=g)
        y[0] = 0
        x, c = u * 8, 0.5 + 0.1 * trial
        t = torch.linspace(0, 1, 50)[:, None]
        points = exp_map0((1 - t) * log_map0(x[None], c), c)
        inside = half_aperture(y, c)[None] - exterior_angle(y[None], points[:, None], c) >= 0
        inside[:, 0] = True
        full = pairwise_dist(points, y, c).masked_fill(~inside, math.inf).argmin(1).tolist()
        expected = list(dict.fromkeys(full))
        assert meru_traversal(x, y, c, 0) == expected
        lengths.append(len(expected))
    assert max(lengths) >= 4          # the comparison covers real walks, not only [root]


def test_clip_traversal_by_hand():
    unit = lambda deg: torch.tensor([math.cos(math.radians(deg)), math.sin(math.radians(deg))])
    y = torch.stack([unit(d) for d in (80, -60, 10, 45)])
    assert clip_traversal(unit(0), y, unit(90)) == [2, 3, 0]
    assert clip_traversal(unit(0), y, unit(-90)) == [2, 1]


class StubCLIP(nn.Module):
    "A model whose text embeddings are placed by hand (looked up by token row) and whose image embedding is fixed."
    def __init__(self, texts, y_txt, x_img, context_length=16):
        super().__init__()
        self.config = {"towers": {"context_length": context_length, "image_size": 8}}
        self.rows = {tuple(r.tolist()): i for i, r in enumerate(tokenize(texts, context_length))}
        self.y_txt, self.x_img = y_txt, x_img
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_text(self, tokens, project=True):
        return self.y_txt[[self.rows[tuple(r.tolist())] for r in tokens]]

    def encode_image(self, images, project=True):
        return self.x_img.expand(len(images), -1)


class StubMERU(StubCLIP):
    "The same, on the hyperboloid of curvature -1."
    def curvature(self):
        return torch.tensor(1.0)


def test_traverse_with_stub_models():
    texts = ["a polygon", "a red triangle", "a round shape"]
    meru = StubMERU(texts, torch.tensor([[0.5, 0.0], [2.0, 0.0], [0.0, 2.0]]), torch.tensor([[4.0, 0.02]]))
    assert is_hyperbolic(meru)
    assert traverse(meru, torch.zeros(2, 3, 8, 8), texts) == [["a red triangle", "a polygon", ROOT_TEXT]] * 2
    # a root text from the pool replaces the [ROOT] entry
    assert traverse(meru, torch.zeros(1, 3, 8, 8), texts, root_text="a round shape") == [
        ["a red triangle", "a polygon", "a round shape"]]
    unit = lambda deg: [math.cos(math.radians(deg)), math.sin(math.radians(deg))]
    clip = StubCLIP(texts, torch.tensor([unit(60), unit(10), unit(-80)]), torch.tensor([unit(0)]))
    assert not is_hyperbolic(clip)
    # the root direction given explicitly: straight up
    assert traverse(clip, torch.zeros(1, 3, 8, 8), texts, root=torch.tensor(unit(90))) == [
        ["a red triangle", "a polygon", ROOT_TEXT]]
    # embeddings made already walk as their pictures do, and the model embeds no image
    clip.encode_image = meru.encode_image = None
    assert traverse(meru, torch.tensor([[4.0, 0.02]] * 2), texts) == [["a red triangle", "a polygon", ROOT_TEXT]] * 2
    assert traverse(clip, torch.tensor([unit(0)]), texts, root=torch.tensor(unit(90))) == [
        ["a red triangle", "a polygon", ROOT_TEXT]]


def test_traverse_bad_input():
    texts = ["a polygon"]
    meru = StubMERU(texts, torch.tensor([[0.5, 0.0]]), torch.tensor([[4.0, 0.1]]))
    with pytest.raises(ValueError, match="empty"):
        traverse(meru, torch.zeros(1, 3, 8, 8), [])
    with pytest.raises(ValueError, match="'an image'"):
        traverse(meru, torch.zeros(1, 3, 8, 8), texts, root_text="an image")
    with pytest.raises(ValueError, match=r"pictures \(B, 3, H, W\) or their embeddings \(B, n\), got shape \(3, 8, 8\)"):
        traverse(meru, torch.zeros(3, 8, 8), texts)
    with pytest.raises(ValueError, match="root_index"):
        meru_traversal(torch.ones(2), torch.ones(3, 2), 1.0, root_index=3)


def test_traversal_metrics_by_hand():
    scene = Scene([dict(shape="circle", colour="blue", size="large", position="top")])
    texts = ["a blue circle", "a round shape", "a polygon", "something cool-coloured"]
    caps = [Caption([Part(shape="circle", colour="blue")]), Caption([Part(shape="round")]),
            Caption([Part(shape="polygon")]), Caption([Part(colour="cool")])]
    m = traversal_metrics([["a blue circle", "a round shape", ROOT_TEXT], ["a polygon", "something cool-coloured"]],
                          [scene, scene], texts, caps)
    # true captions: blue circle, round, cool (3 of 4; [ROOT] aside); steps: 3->1 yes/yes, 1->0 yes/yes, 1->1 no/no
    assert {k: getattr(v, "value", v) for k, v in m.items()} == {
        "traversal_describes_rate": 0.75, "traversal_generic_step_rate": 2 / 3, "traversal_entailed_step_rate": 2 / 3,
        "traversal_mean_length": 2.5}
    # the intervals resample the two traversals: the second alone has 1 true caption of 2 and one step, neither
    lo, hi = m["traversal_describes_rate"].interval
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0
    assert m["traversal_generic_step_rate"].interval[0] >= 0 and m["traversal_generic_step_rate"].interval[1] <= 1
    assert len(m["traversal_describes_rate"].draws) == 500 and m["traversal_describes_rate"].items is None


# --- pools ----------------------------------------------------------------------------------------------------

def test_load_pool(tmp_path):
    (tmp_path / "pool.json").write_text(json.dumps(["an image", "a dog"]))
    assert load_pool(tmp_path / "pool.json") == ["an image", "a dog"]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_pool(tmp_path / "missing.json")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ValueError, match="empty"):
        load_pool(tmp_path / "empty.json")
    (tmp_path / "dict.json").write_text('{"texts": ["a"]}')
    with pytest.raises(ValueError, match="list of non-empty strings"):
        load_pool(tmp_path / "dict.json")
    (tmp_path / "broken.json").write_text("[1, ")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pool(tmp_path / "broken.json")


# --- scores on real (untrained) models --------------------------------------------------------------------------

def test_generality_and_entailment_scores_follow_the_geometry():
    meru, clip = build_model("meru", "tiny"), build_model("clip", "tiny")
    x = torch.tensor([[0.3, 0.0], [3.0, 0.0]])
    assert torch.allclose(generality(meru, x), dist0(x, meru.curvature().detach()))
    # the near point's cone holds the far point on its axis, not the other way round
    s = entailment_score(meru, x[:, None], x[None, :])
    assert s[0, 1] > 0 and s[1, 0] < 0
    u = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=-1)
    assert torch.allclose(clip_root(u), F.normalize(torch.tensor([1.0, 1.0]), dim=0))
    assert torch.allclose(generality(clip, u), torch.tensor([math.pi / 4, 0.0, math.pi / 4]), atol=1e-6)
    assert entailment_score(clip, u[0], u[2]).item() == pytest.approx(0.0, abs=1e-7)


def test_report_runs_and_is_json():
    torch.manual_seed(0)
    for kind in ("meru", "clip"):
        model = build_model(kind, "tiny")
        r = hierarchy_report(model, n=12, n_traverse=3, n_zero_shot=12, per_level=3, pool_attributes=("shape",))
        assert load_json(dump_json(r)) == r and "NaN" not in dump_json(r)
        assert r["kind"] == kind and r["n"] == 12 and r["pool_size"] == len(text_pool(1, ("shape",)))
        for key in ("image_entail_auc", "caption_entail_auc", "generic_pair_accuracy", "traversal_describes_rate"):
            assert r[key].value is None or 0 <= r[key].value <= 1, key
        assert set(r["shape_tree"]) == {"accuracy", "tie", "lca_depth", "lca_height", "jaccard", "hprecision", "hrecall", "n"}
    with pytest.raises(ValueError, match="`n`"):
        hierarchy_report(model, n=1)


def test_traversal_step_rates_differ_when_they_should():
    scene = Scene([dict(shape="triangle", colour="red", size="small", position="left")])
    texts = ["a small red triangle", "a small triangle", "a round shape"]
    caps = [Caption([Part(shape="triangle", colour="red", size="small")]), Caption([Part(shape="triangle", size="small")]),
            Caption([Part(shape="round")])]
    # level 4 -> 4 entailed but not more generic; level 4 -> 1 more generic but not entailed (round is no triangle)
    m = traversal_metrics([texts], [scene], texts, caps)
    assert m["traversal_generic_step_rate"].value == 0.5 and m["traversal_entailed_step_rate"].value == 0.5
    m = traversal_metrics([texts[:2]], [scene], texts, caps)
    assert m["traversal_generic_step_rate"].value == 0 and m["traversal_entailed_step_rate"].value == 1
    m = traversal_metrics([[texts[0], texts[2]]], [scene], texts, caps)
    assert m["traversal_generic_step_rate"].value == 1 and m["traversal_entailed_step_rate"].value == 0
    assert m["traversal_describes_rate"].value == 0.5
