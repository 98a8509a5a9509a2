"""meru_nb.scenes, meru_nb.render and meru_nb.data: determinism, resolutions, the ground truth checked by brute force, shards, text pool, bad input."""
import hashlib
import itertools

import numpy as np
import pytest
import torch
import webdataset as wds

from meru_nb.data import HierarchicalScenes, text_pool, write_shards
from meru_nb.render import render
from meru_nb.scenes import (COLOURS, LEVEL_PROBS, MAX_PARTS, POSITIONS, ROOT, SHAPES, SIZES, Caption, Part, Scene,
                            SceneObject, Taxonomy, caption_text, describes, generalises, level, random_caption,
                            random_scene)


# ---------------------------------------------------------------- every scene of one and two objects

OBJECTS = [SceneObject(s, c, z, p) for s in SHAPES.leaves for c in COLOURS.leaves for z in SIZES for p in POSITIONS]
PAIRS = np.array([(i, j) for i, j in itertools.combinations(range(len(OBJECTS)), 2)
                  if OBJECTS[i].position != OBJECTS[j].position])


def part_truth(part):
    "Which of the 360 enumerated objects satisfy `part`, from the attribute values alone (independent of satisfies)."
    def ok(o):
        return ((part.shape is None or part.shape in (o.shape, SHAPES.parent(o.shape)))
                and (part.colour is None or part.colour in (o.colour, COLOURS.parent(o.colour)))
                and part.size in (None, o.size) and part.position in (None, o.position))
    return np.array([ok(o) for o in OBJECTS])


def truth(caption):
    "Whether `caption` describes each enumerated scene: 360 one-object scenes, then every two-object scene."
    sats = [part_truth(p) for p in caption.parts]
    i, j = PAIRS[:, 0], PAIRS[:, 1]
    if not sats: return np.ones(len(OBJECTS) + len(PAIRS), bool)
    if len(sats) == 1: return np.concatenate([sats[0], sats[0][i] | sats[0][j]])
    a, b = sats
    return np.concatenate([np.zeros(len(OBJECTS), bool), (a[i] & b[j]) | (a[j] & b[i])])


def scene_of(k):
    "The k-th enumerated scene."
    return Scene([OBJECTS[k]]) if k < len(OBJECTS) else Scene([OBJECTS[t] for t in PAIRS[k - len(OBJECTS)]])


def generalisations(c):
    "Captions one step more generic than `c`: one attribute of one part lifted to its parent, or dropped."
    out = []
    for k, p in enumerate(c.parts):
        for attr, tree in (("shape", SHAPES), ("colour", COLOURS), ("size", None), ("position", None)):
            v = getattr(p, attr)
            if v is None: continue
            up = tree.parent(v) if tree else None
            new = dict(shape=p.shape, colour=p.colour, size=p.size, position=p.position)
            new[attr] = None if up in (None, "shape", "colour") else up
            if any(new.values()):
                out.append(Caption(c.parts[:k] + (Part(**new),) + c.parts[k + 1:]))
            else:
                out.append(Caption(c.parts[:k] + c.parts[k + 1:]))
    return out


@pytest.fixture(scope="module")
def captions():
    "Captions from random scenes at every level, their chains of generalisations, and the hard cases."
    rng = np.random.default_rng(123)
    found = {ROOT}
    for _ in range(120):
        c = random_caption(random_scene(rng), rng)
        frontier = [c]
        while frontier:
            c = frontier.pop()
            if c not in found and len(found) < 700:
                found.add(c); frontier += generalisations(c)
    found |= {Caption([Part(shape="polygon"), Part(shape="round")]), Caption([Part(size="small"), Part(size="large")]),
              Caption([Part(shape="circle"), Part(shape="ellipse")]), Caption([Part(shape="round", colour="red")]),
              Caption([Part(shape="circle", colour="red"), Part(shape="ellipse")]),
              Caption([Part(shape="round"), Part(shape="round")]), Caption([Part(colour="warm"), Part(colour="cool")]),
              Caption([Part(shape="triangle", position="left"), Part(position="right")])}
    return sorted(found, key=lambda c: caption_text(c))


# ---------------------------------------------------------------- ground truth

def test_entailment_agrees_with_brute_force(captions):
    "A entails B exactly when every enumerated scene that B describes, A describes; and levels follow entailment."
    T = torch.tensor(np.stack([truth(c) for c in captions]), dtype=torch.float32)
    assert T.sum(1).min() > 0, "every caption is satisfiable"
    counter = T @ (1 - T).T          # counter[b, a] = scenes described by b and not by a
    brute = (counter == 0).T.numpy()  # brute[a, b]: a entails b
    ours = np.array([[generalises(a, b) for b in captions] for a in captions])
    assert brute.sum() > 3 * len(captions) and (~brute).sum() > 0     # both outcomes occur, not only reflexive pairs
    bad = np.argwhere(ours != brute)
    assert not len(bad), [(caption_text(captions[a]), caption_text(captions[b]), bool(brute[a, b])) for a, b in bad[:5]]
    lv = np.array([level(c) for c in captions])
    assert (lv[:, None] <= lv[None, :])[brute].all(), "if A entails B then level(A) <= level(B)"


def test_describes_agrees_with_brute_force(captions):
    "describes() on real scene objects agrees with the attribute-level truth table."
    rng = np.random.default_rng(0)
    ks = rng.choice(len(OBJECTS) + len(PAIRS), 300, replace=False)
    scenes = [scene_of(k) for k in ks]
    for c in captions[::7]:
        assert [describes(c, s) for s in scenes] == truth(c)[ks].tolist(), caption_text(c)


def test_entailment_reflexive_transitive_on_samples(captions):
    "Entailment is a preorder: reflexive, transitive; and antisymmetric on canonical captions."
    sub = captions[::4]
    E = np.array([[generalises(a, b) for b in sub] for a in sub])
    assert E.diagonal().all()
    assert not (E & E.T & ~np.eye(len(sub), dtype=bool)).any()
    two_steps = (E.astype(int) @ E.astype(int)) > 0
    assert not (two_steps & ~E).any()


def test_generated_captions_are_true_and_at_their_level():
    "Every caption the dataset generates describes its own scene; the root entails it; levels follow level_probs."
    ds = HierarchicalScenes(n=3000, seed=5, max_objects=3)
    levels = []
    for i in range(3000):
        scene, caption, text = ds.annotation(i)
        assert describes(caption, scene) and generalises(ROOT, caption) and generalises(caption, caption)
        assert isinstance(text, str) and text
        levels.append(level(caption))
    freq = np.bincount(levels, minlength=5) / len(levels)
    assert np.abs(freq - np.array(LEVEL_PROBS)).max() < 0.04
    assert len({ds.annotation(i)[2] for i in range(300)}) > 150, "phrasing varies"


def test_canonical_text_is_injective():
    "Distinct captions have distinct canonical texts (all captions of up to two parts without size)."
    pool = text_pool(max_parts=2, attributes=("shape", "colour", "position"))
    assert len(set(pool.texts)) == len(pool) == len(set(pool.captions))


# ---------------------------------------------------------------- taxonomy

def test_taxonomy_api():
    assert SHAPES.root == "shape" and SHAPES.children("polygon") == ["triangle", "square", "star", "cross"]
    assert SHAPES.ancestors("circle") == ["round", "shape"] and SHAPES.ancestors("shape") == []
    assert [SHAPES.depth(n) for n in ("shape", "round", "ellipse")] == [0, 1, 2]
    assert SHAPES.lca("circle", "ellipse") == "round" and SHAPES.lca("circle", "square") == "shape"
    assert COLOURS.lca("purple", "purple") == "purple" and COLOURS.lca("blue", "cool") == "cool"
    assert set(COLOURS.leaves) == {"red", "orange", "yellow", "blue", "green", "purple"}
    assert sorted(SHAPES.nodes) == sorted(["shape"] + SHAPES.descendants("shape"))
    for tree in (SHAPES, COLOURS):
        for a, b in itertools.product(tree.nodes, repeat=2):
            l = tree.lca(a, b)
            assert tree.is_a(a, l) and tree.is_a(b, l) and l == tree.lca(b, a)
            assert not any(tree.is_a(a, k) and tree.is_a(b, k) for k in tree.children(l))   # lowest
    with pytest.raises(ValueError, match="unknown node 'cube'"): SHAPES.depth("cube")
    with pytest.raises(ValueError, match="appears twice"): Taxonomy("r", {"r": ["a", "b"], "a": ["b"]})
    with pytest.raises(ValueError, match="not reachable"): Taxonomy("r", {"r": ["a"], "x": ["y"]})


# ---------------------------------------------------------------- dataset, rendering, determinism

def test_same_seed_same_bytes_different_seed_differs():
    a, b, c = (HierarchicalScenes(n=50, size=32, seed=s) for s in (3, 3, 4))
    for i in (0, 17, 49, -1):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    assert sum(torch.equal(a[i][0], c[i][0]) for i in range(50)) == 0
    assert a.sample(-1).scene == a.sample(49).scene


def test_any_resolution_and_pixels_match_the_scene():
    ds = HierarchicalScenes(n=20, size=224, seed=1, max_objects=3)
    for size in (8, 17, 32, 64, 100, 224):
        img, _ = HierarchicalScenes(n=3, size=size)[2]
        assert img.shape == (3, size, size) and img.dtype == torch.float32 and 0 <= img.min() <= img.max() <= 1
    for i in range(20):
        s = ds.sample(i)
        px = np.asarray(s.image)
        for o in s.scene.objects:   # the centre of every object has exactly its colour
            assert tuple(px[int(o.y * 224), int(o.x * 224)]) == o.rgb
        free = set(POSITIONS) - {o.position for o in s.scene.objects}
        for p in free:               # an empty region is background: light and grey-ish
            x, y = {"left": (0.18, 0.5), "right": (0.82, 0.5), "top": (0.5, 0.18), "bottom": (0.5, 0.82), "centre": (0.5, 0.5)}[p]
            assert px[int(y * 224), int(x * 224)].min() >= 130


def test_dataloader_workers_match_main_process():
    ds = HierarchicalScenes(n=12, size=16, seed=2)
    one = list(torch.utils.data.DataLoader(ds, batch_size=4))
    two = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert all(torch.equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(one, two))


# ---------------------------------------------------------------- shards

def test_shards_round_trip_and_are_deterministic(tmp_path):
    paths = write_shards(tmp_path / "a", 11, samples_per_shard=4, size=24, seed=7)
    again = write_shards(tmp_path / "b", 11, samples_per_shard=4, size=24, seed=7)
    assert [p.name for p in paths] == ["scenes-000000.tar", "scenes-000001.tar", "scenes-000002.tar"]
    digest = lambda ps: [hashlib.sha256(p.read_bytes()).hexdigest() for p in ps]
    assert digest(paths) == digest(again)
    records = list(wds.WebDataset([str(p) for p in paths], shardshuffle=False).decode("rgb8"))
    ds = HierarchicalScenes(11, size=24, seed=7)
    assert len(records) == 11
    for i, r in enumerate(records):
        s = ds.sample(i)
        assert r["txt"] == s.text and r["json"]["level"] == s.level and r["json"]["index"] == i
        assert Scene.from_dict(r["json"]["scene"]) == s.scene and Caption.from_dict(r["json"]["caption"]) == s.caption
        assert np.array_equal(r["png"], np.asarray(s.image))
    jpg = write_shards(tmp_path / "c", 3, size=24, image_format="jpg")
    assert len(list(wds.WebDataset([str(p) for p in jpg], shardshuffle=False))) == 3


# ---------------------------------------------------------------- text pool

def test_text_pool_contents():
    assert text_pool(0).texts == ["an image"] and text_pool(0).levels == [0]
    one = text_pool(1)
    assert len(one) == 9 * 9 * 3 * 6 and np.bincount(one.levels).tolist() == [1, 4, 12, 64, len(one) - 81]
    assert one.levels == sorted(one.levels) and all(level(c) == l for c, l in zip(one.captions, one.levels))
    assert all(truth(c).any() for c in one.captions[::10])                       # all satisfiable
    rng = np.random.default_rng(9)
    for _ in range(300):                                                          # the dataset's one-part captions are all in it
        c = random_caption(random_scene(rng), rng)
        if len(c.parts) <= 1: assert caption_text(c) in one.texts
    assert {"a polygon", "something warm-coloured", "a triangle", "a red triangle"} <= set(one.texts)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, match", [
    (lambda: HierarchicalScenes(size=-32), "`size` must be an integer of at least 8"),
    (lambda: HierarchicalScenes(size=32.0), "`size` must be an integer"),
    (lambda: HierarchicalScenes(n=-1), "`n` must be a non-negative integer"),
    (lambda: HierarchicalScenes(seed=-1), "`seed` must be a non-negative integer"),
    (lambda: HierarchicalScenes(max_objects=0), "`max_objects` must be an integer in 1..5"),
    (lambda: HierarchicalScenes(level_probs=(1, 0, 0)), "`level_probs` must be 5 non-negative weights"),
    (lambda: SceneObject("cube", "red", "small", "left"), "unknown shape 'cube'"),
    (lambda: SceneObject("circle", "pink", "small", "left"), "unknown colour 'pink'"),
    (lambda: SceneObject("circle", "red", "medium", "left"), "unknown size 'medium'"),
    (lambda: Scene([]), "at least one object"),
    (lambda: Scene([SceneObject("circle", "red", "small", "left")] * 2), "distinct positions"),
    (lambda: Part(), "at least one attribute"),
    (lambda: Part(shape="shape"), "unknown shape 'shape'"),
    (lambda: Part(colour="red", position="middle"), "unknown position 'middle'"),
    (lambda: Caption([Part(shape="circle")] * (MAX_PARTS + 1)), "at most 2 parts"),
    (lambda: Caption([Part(shape="circle", position="top"), Part(position="top")]), "two objects in one position"),
    (lambda: render(Scene([SceneObject("circle", "red", "small", "left")]), 0), "`size` must be an integer"),
    (lambda: text_pool(3), "`max_parts` must be in 0..2"),
    (lambda: text_pool(1, attributes=("texture",)), "unknown attributes"),
    (lambda: write_shards("/tmp/never", 1, samples_per_shard=0), "`samples_per_shard` must be a positive integer"),
    (lambda: write_shards("/tmp/never", 1, image_format="gif"), "'png' or 'jpg'"),
])
def test_bad_input_fails_clearly(call, match):
    with pytest.raises(ValueError, match=match): call()


def test_index_out_of_range():
    with pytest.raises(IndexError, match="out of range for 5 samples"): HierarchicalScenes(5)[5]


def test_an_item_draws_once_what_annotation_and_negative_draw_apart():
    "__getitem__ draws the scene once for the caption and its negative: the same text, negative and picture as the parts."
    data = HierarchicalScenes(300, 32, seed=4, negatives=True, binding_share=0.6)
    swapped = 0
    for i in range(0, 300, 3):
        image, text, negative = data[i]
        scene, _, annotated = data.annotation(i)
        assert (text, negative) == (annotated, data.negative(i))
        assert np.array_equal((image * 255).round().byte().permute(1, 2, 0).numpy(), np.asarray(render(scene, 32)))
        swapped += negative != ""
    assert 30 < swapped < 100       # some items have a negative, not all: both branches run
