"""Tests of meru_nb.emoji on packages built here the way the real ones come: emoji.json and 8 x 8 RGBA pictures whose
transparent pixels store a colour, as a folder and as a .tgz whose members start with `package/`."""
import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from meru_nb.emoji import (ROOT_WORDS, EmojiCaptions, caption_text, describes, generalises, level, read_emoji,
                           skin_tone, style_split, subcategory_text, write_table)
from meru_nb.pipelines import CsvDataset, eval_transform

HIDDEN = (140, 136, 129)                     # what a transparent pixel stores: not the background
VENDORS = ("google", "twitter", "facebook")
HAND = ("People & Body", "hand-fingers-open", "waving hand sign")


def _png(rgb) -> bytes:
    px = np.zeros((8, 8, 4), np.uint8)
    px[..., :3] = HIDDEN
    px[1:7, 2:6] = (*rgb, 255)
    buf = io.BytesIO()
    Image.fromarray(px, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _entry(name, short, image, category, subcategory, order, lacking=(), tones=()):
    entry = {"name": name, "short_name": short, "image": image, "category": category, "subcategory": subcategory,
             "sort_order": order, **{f"has_img_{v}": v not in lacking for v in VENDORS}}
    if tones:
        entry["skin_variations"] = {t: {"image": f"{image[:-4]}-{t.lower()}.png", **{f"has_img_{v}": True for v in VENDORS}}
                                    for t in tones}
    return entry


ENTRIES = [   # 2 groups, 3 subgroups; the hand has two skin tones; facebook has no rose
    _entry("ROSE", "rose", "1f339.png", "Animals & Nature", "plant-flower", 4, lacking=("facebook",)),
    _entry("CAT FACE", "cat", "1f431.png", "Animals & Nature", "animal-mammal", 3),
    _entry("DOG FACE", "dog", "1f436.png", "Animals & Nature", "animal-mammal", 2),
    _entry("WAVING HAND SIGN", "wave", "1f44b.png", "People & Body", "hand-fingers-open", 1, tones=("1F3FB", "1F3FE")),
]


def _colour(vendor, image):
    "A silhouette colour of its own for every vendor and picture."
    k = sum(map(ord, image)) % 97
    return (20 + 2 * k, 40 + 60 * (VENDORS + (vendor,)).index(vendor), 250 - k)


def _files(vendor, entries=ENTRIES, flag=None):
    "{member name: bytes} of a package of `vendor`: emoji.json and the pictures its flags (or `flag`'s) promise."
    flag = flag or f"has_img_{vendor}"
    files = {"package/emoji.json": json.dumps(entries).encode()}
    for e in entries:
        for r in [e, *e.get("skin_variations", {}).values()]:
            if r.get(flag, True):
                files[f"package/img/{vendor}/64/{r['image']}"] = _png(_colour(vendor, r["image"]))
    return files


def _folder(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _tgz(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    "Each vendor as a folder and as a .tgz."
    root = tmp_path_factory.mktemp("emoji")
    return {v: {"folder": _folder(root / v, _files(v)), "tgz": _tgz(root / f"{v}.tgz", _files(v))} for v in VENDORS}


@pytest.fixture(scope="module")
def sets(packages):
    return {v: read_emoji(packages[v]["tgz"]) for v in VENDORS}


def test_counts_and_what_is_skipped(sets):
    "Four emoji and two variants; the vendor without a rose skips it and names it."
    assert [len(sets[v]) for v in VENDORS] == [6, 6, 5]
    assert [sets[v].skipped for v in VENDORS] == [[], [], ["rose"]]
    assert all(sets[v].vendor == v and {e.vendor for e in sets[v].items} == {v} for v in VENDORS)
    g = sets["google"]
    assert len({e.category for e in g.items}) == 2 and len({e.subcategory for e in g.items}) == 3
    assert [e.path for e in g.items[:3]] == [HAND, HAND + ("light skin tone",), HAND + ("medium-dark skin tone",)]
    assert [e.name for e in g.items[3:]] == ["dog face", "cat face", "rose"]          # Unicode's order, not the file's
    assert "6 pictures of 4 emoji, 0 skipped" in repr(g) and "1 skipped" in repr(sets["facebook"])


def test_a_folder_reads_as_its_tgz(packages, sets):
    for v in VENDORS:
        for where in (packages[v]["folder"], packages[v]["folder"] / "package"):
            got = read_emoji(where)
            assert got.items == sets[v].items and [e.png for e in got.items] == [e.png for e in sets[v].items]


def test_a_flagged_picture_whose_file_is_missing_is_skipped(tmp_path):
    root = _folder(tmp_path / "pkg", _files("twitter"))
    (root / "package/img/twitter/64/1f44b-1f3fe.png").unlink()
    got = read_emoji(root)
    assert len(got) == 5 and got.skipped == ["waving hand sign: medium-dark skin tone"]


def test_a_picture_the_flag_disowns_is_skipped(tmp_path):
    "A file present under a false has_img flag (a fallback drawn by another vendor) would leak a style: it is skipped."
    files = _files("facebook")
    files["package/img/facebook/64/1f339.png"] = _png(_colour("google", "1f339.png"))
    got = read_emoji(_folder(tmp_path / "pkg", files))
    assert len(got) == 5 and got.skipped == ["rose"]


def test_any_vendor_name_is_read_the_same_way(tmp_path):
    "A style the package's flags do not know: its pictures decide."
    files = _files("newstyle", flag="has_img_newstyle")
    del files["package/img/newstyle/64/1f431.png"]
    got = read_emoji(_tgz(tmp_path / "new.tgz", files))
    assert got.vendor == "newstyle" and len(got) == 5 and got.skipped == ["cat face"]


def test_pictures_are_rgb_with_white_around_the_silhouette(sets):
    for v in VENDORS:
        for e in sets[v].items:
            raw = np.asarray(Image.open(io.BytesIO(e.png)))
            assert raw.shape == (8, 8, 4) and tuple(raw[0, 0, :3]) == HIDDEN and raw[0, 0, 3] == 0   # the hard case
            img = e.picture()
            seen = np.asarray(img)
            assert img.mode == "RGB" and seen.shape == (8, 8, 3)
            assert (seen[0, 0] == 255).all() and (seen[7, 7] == 255).all()            # white around
            assert tuple(seen[4, 3]) == _colour(v, e.image)                           # the silhouette's own colour


def test_captions_at_every_level():
    toned = HAND + ("medium skin tone",)
    assert [caption_text(toned[:k]) for k in range(5)] == [
        "an emoji", "people and body", "a hand: fingers open", "waving hand sign", "waving hand sign: medium skin tone"]
    rng = np.random.default_rng(0)
    assert {caption_text((), rng) for _ in range(200)} == set(ROOT_WORDS)
    assert all("dog face" in caption_text(("Animals & Nature", "animal-mammal", "dog face"), rng) for _ in range(50))
    assert subcategory_text("animal-mammal") == "an animal: mammal"
    assert subcategory_text("musical-instrument") == "a musical instrument emoji"
    assert subcategory_text("plant-other") == "a plant: miscellaneous"
    assert subcategory_text("arts & crafts") == "an arts and crafts emoji"
    assert skin_tone("1F3FB-1F3FF") == "light skin tone, dark skin tone" and skin_tone("1F3FE-1F3FE") == "medium-dark skin tone"
    with pytest.raises(ValueError, match="1F3FA"):
        skin_tone("1F3FA")
    with pytest.raises(ValueError, match="at most 4"):
        caption_text(toned + ("extra",))


def test_the_tree_is_the_ground_truth(sets):
    items = [e for s in sets.values() for e in s.items]
    dog, cat = ("Animals & Nature", "animal-mammal", "dog face"), ("Animals & Nature", "animal-mammal", "cat face")
    assert {e.name for e in items if describes(dog[:2], e)} == {"dog face", "cat face"}
    assert not any(describes(cat, e) for e in items if e.name == "dog face")
    assert sum(describes(HAND + ("light skin tone",), e) for e in items) == 3               # one picture per vendor
    assert sum(describes(HAND, e) for e in items) == 9 and all(describes((), e) for e in items)
    nodes = {e.path[:k] for e in items for k in range(len(e.path) + 1)}
    assert [level(n) for n in nodes].count(4) == 2 and len(nodes) == 1 + 2 + 3 + 4 + 2
    for a in nodes:
        for b in nodes:
            if generalises(a, b):                 # every picture b describes, a describes; the root generalises all
                assert all(describes(a, e) for e in items if describes(b, e)) and generalises((), b)
            assert generalises(a, b) == (a == b[:len(a)])
    assert generalises(dog[:2], dog) and not generalises(dog, dog[:2]) and not generalises(cat, dog)


def test_dataset_items_are_pure_functions_of_seed_and_index(sets):
    a, b = EmojiCaptions(sets["google"], n=40, size=16, seed=3), EmojiCaptions(sets["google"].items, n=40, size=16, seed=3)
    for i in (0, 7, 39, -1):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    other = EmojiCaptions(sets["google"], n=40, size=16, seed=4)
    assert [a[i][1] for i in range(40)] != [other[i][1] for i in range(40)]
    x, text = a[5]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and isinstance(text, str)
    for i in range(40):
        item, caption, text = a.annotation(i)
        assert item is a.items[i % 6] and describes(caption, item) and text == a[i][1]
    images, texts = next(iter(torch.utils.data.DataLoader(a, batch_size=8)))
    assert images.shape == (8, 3, 16, 16) and len(texts) == 8
    with pytest.raises(IndexError):
        a[40]


def test_levels_follow_level_probs(sets):
    for k in range(5):
        ds = EmojiCaptions(sets["google"], n=30, level_probs=np.eye(5)[k])
        got = [level(ds.annotation(i)[1]) for i in range(30)]
        want = [min(k, len(ds.items[i % 6].path)) for i in range(30)]                   # no tone: level 4 falls to 3
        assert got == want
    mixed = EmojiCaptions(sets["google"], n=3000, level_probs=(1, 1, 1, 1, 0))
    counts = np.bincount([level(mixed.annotation(i)[1]) for i in range(3000)], minlength=5) / 3000
    assert np.abs(counts[:4] - 0.25).max() < 0.04 and counts[4] == 0


def test_dataset_rejects_bad_arguments(sets):
    with pytest.raises(ValueError, match="empty"):
        EmojiCaptions([])
    with pytest.raises(ValueError, match="level_probs"):
        EmojiCaptions(sets["google"], level_probs=(1, 1, 1))
    with pytest.raises(ValueError, match="`size`"):
        EmojiCaptions(sets["google"], size=4)


def test_the_table_is_what_csv_dataset_and_training_read(sets, tmp_path):
    ds = EmojiCaptions(sets["twitter"], n=24, size=32, seed=1)
    path = write_table(ds, tmp_path / "table")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [r["title"] for r in rows] == [ds.annotation(i)[2] for i in range(24)]
    assert [int(r["level"]) for r in rows] == [level(ds.annotation(i)[1]) for i in range(24)]
    assert len(list((tmp_path / "table" / "images" / "twitter").glob("*.png"))) == 6
    on_disk = Image.open(tmp_path / "table" / rows[0]["filepath"])
    assert on_disk.mode == "RGB" and on_disk.size == (32, 32) and on_disk.getpixel((0, 0)) == (255, 255, 255)
    table = CsvDataset(path, eval_transform(32), context_length=16)
    assert len(table) == 24 and table[0][0].shape == (3, 32, 32) and table.log.total == 0

    from meru_nb.config import TrainConfig
    from meru_nb.train import train
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), data=str(path), steps=2, batch_size=8, warmup_steps=1,
                      ckpt_every=0, progress=False, device="cpu", precision="fp32")
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)


def test_splits_never_leak_the_test_vendor(sets):
    everything = [e for s in sets.values() for e in s.items]
    for test_vendor in VENDORS:
        for by in ("concept", "image"):
            for seed in range(4):
                split = style_split(sets.values(), test_vendor, val_fraction=0.25, by=by, seed=seed)
                assert {e.vendor for e in split.test} == {test_vendor} and split.test == sets[test_vendor].items
                assert test_vendor not in {e.vendor for e in split.train + split.val}
                assert sorted(map(id, split.train + split.val)) == sorted(id(e) for e in everything if e.vendor != test_vendor)
                assert split == style_split(list(sets.values()), test_vendor, val_fraction=0.25, by=by, seed=seed)
                if by == "concept":
                    assert not {e.path[:3] for e in split.train} & {e.path[:3] for e in split.val}
                    assert len({e.path[:3] for e in split.val}) == 1
    held = {frozenset(e.path[:3] for e in style_split(sets.values(), "google", seed=s, val_fraction=0.25).val) for s in range(10)}
    assert len(held) > 1                                                    # the seed decides which concepts are held out
    only_google = style_split(everything, "facebook", train_vendors=["google"], val_fraction=0.5, by="image")
    assert {e.vendor for e in only_google.train + only_google.val} == {"google"} and len(only_google.val) == 3


def test_split_errors_name_the_vendors(sets):
    with pytest.raises(ValueError, match=r"'apple'.*\['facebook', 'google', 'twitter'\]"):
        style_split(sets.values(), "apple")
    with pytest.raises(ValueError, match="'google' is the test vendor"):
        style_split(sets.values(), "google", train_vendors=["google"])
    with pytest.raises(ValueError, match="no vendor left"):
        style_split([sets["google"]], "google")
    with pytest.raises(ValueError, match="`by`"):
        style_split(sets.values(), "google", by="colour")


def test_errors_name_the_path(packages, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/emoji\.json"):
        read_emoji(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere.tgz"):
        read_emoji(tmp_path / "nowhere.tgz")
    files = _files("google")
    del files["package/emoji.json"]
    with pytest.raises(FileNotFoundError, match=r"no-index\.tgz.*package/emoji\.json"):
        read_emoji(_tgz(tmp_path / "no-index.tgz", files))
    (tmp_path / "junk.tgz").write_bytes(b"not a tar file")
    with pytest.raises(ValueError, match="junk.tgz"):
        read_emoji(tmp_path / "junk.tgz")
    with pytest.raises(ValueError, match=r"'apple'.*\['google'\]"):
        read_emoji(packages["google"]["tgz"], vendor="apple")
    two = _folder(tmp_path / "two", {**_files("google"), **_files("twitter")})
    with pytest.raises(ValueError, match=r"no vendor given.*\['google', 'twitter'\]"):
        read_emoji(two)
    assert len(read_emoji(two, vendor="twitter")) == 6
    broken = [dict(ENTRIES[1])]
    del broken[0]["subcategory"]
    with pytest.raises(ValueError, match="'subcategory'"):
        read_emoji(_folder(tmp_path / "broken", _files("google", broken)))


REAL = sorted((Path(__file__).resolve().parent.parent / "data" / "emoji").glob("emoji-datasource-*.tgz"))


@pytest.mark.skipif(not REAL, reason="no package in data/emoji (make emoji-data)")
def test_real_packages_keep_what_the_tree_promises():
    "On each fetched package: every entry and variant is read or skipped, one picture per node, one text per node."
    for package in REAL:
        s = read_emoji(package)
        with tarfile.open(package) as tar:
            entries = json.load(tar.extractfile("package/emoji.json"))
        assert len(s) + len(s.skipped) == sum(1 + len(e.get("skin_variations", {})) for e in entries)
        assert len({e.path for e in s.items}) == len(s)
        nodes = {e.path[:k] for e in s.items for k in range(len(e.path) + 1)}
        assert len({caption_text(n) for n in nodes}) == len(nodes)
        assert len({subcategory_text(e.subcategory) for e in s.items}) == len({e.subcategory for e in s.items})
        for e in s.items[::97]:
            img = e.picture()
            assert img.mode == "RGB" and img.size == (64, 64)
