"""Tests of meru_nb.pipelines: webdataset and CSV pipelines, their bad-input handling, transforms and the RedCaps prefix."""
import io
import json
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from meru_nb.data import HierarchicalScenes, write_shards
from meru_nb.encoders import tokenize
from meru_nb.pipelines import (CsvDataset, SkipLog, SkippedSampleWarning, eval_transform, expand_shards,
                               redcaps_caption, segment_subreddit, shard_dataset, train_transform)

CTX = 16


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _encoded(fmt="JPEG", size=40, k=0):
    buf = io.BytesIO()
    HierarchicalScenes(k + 1, size, as_tensor=False)[k][0].save(buf, format=fmt)
    return buf.getvalue()


def _tokens(items):
    return sorted(tuple(y.tolist()) for _, y in items)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return write_shards(root, n=16, samples_per_shard=4, size=32)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_round_trip_txt(tmp_path, fmt):
    paths = write_shards(tmp_path, n=6, samples_per_shard=3, size=32, image_format=fmt)
    items = list(shard_dataset(paths, eval_transform(32), CTX, shuffle=0))
    truth = HierarchicalScenes(6, 32)
    assert len(items) == 6
    for k, (x, y) in enumerate(items):
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        assert torch.equal(y, tokenize(truth[k][1], CTX)[0])
        err = (x - truth[k][0]).abs().mean().item()
        assert err < (1e-6 if fmt == "png" else 0.05), err


def test_round_trip_json_caption(tmp_path):
    with tarfile.open(tmp_path / "redcaps-0.tar", "w") as tar:
        for k in range(3):
            _add(tar, f"{k:04d}.jpg", _encoded(k=k))
            _add(tar, f"{k:04d}.json", json.dumps({"caption": f"picture {k}", "subreddit": "itookapicture"}).encode())
    items = list(shard_dataset(tmp_path / "redcaps-0.tar", eval_transform(32), CTX, shuffle=0))
    assert _tokens(items) == sorted(tuple(tokenize(f"picture {k}", CTX)[0].tolist()) for k in range(3))
    prefixed = list(shard_dataset(tmp_path / "redcaps-0.tar", eval_transform(32), CTX, shuffle=0, redcaps_prob=1.0))
    assert all(torch.equal(y, tokenize(f"i took a picture : picture {k}", CTX)[0]) for k, (_, y) in enumerate(prefixed))


def test_shard_patterns(shards):
    folder = shards[0].parent
    assert expand_shards(f"{folder}/scenes-{{000000..000003}}.tar") == [str(p) for p in shards]
    assert expand_shards(str(folder / "*.tar")) == [str(p) for p in shards]
    with pytest.raises(FileNotFoundError, match="6 shard.*scenes-000004"):
        expand_shards(f"{folder}/scenes-{{000000..000009}}.tar")
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        shard_dataset(f"{folder}/other-*.tar")
    with pytest.raises(FileNotFoundError, match="do not exist.*gone.tar"):
        shard_dataset(folder / "gone.tar")


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_split_by_rank_covers_once(shards, world_size):
    seen = []
    for rank in range(world_size):
        seen += list(shard_dataset(shards, eval_transform(32), CTX, shuffle=4, rank=rank, world_size=world_size))
    assert len(seen) == 16
    assert _tokens(seen) == _tokens(shard_dataset(shards, eval_transform(32), CTX, shuffle=0))


def test_split_by_rank_then_workers(shards):
    everything = _tokens(shard_dataset(shards, eval_transform(32), CTX, shuffle=0))
    seen = []
    for rank in range(2):
        ds = shard_dataset(shards, eval_transform(32), CTX, shuffle=4, rank=rank, world_size=2)
        for x, y in DataLoader(ds, batch_size=3, num_workers=2):
            assert x.shape[1:] == (3, 32, 32)
            seen += [tuple(t.tolist()) for t in y]
    assert sorted(seen) == everything


def test_split_arguments(shards):
    with pytest.raises(ValueError, match="cannot be split"):
        shard_dataset(shards, rank=0, world_size=8)
    with pytest.raises(ValueError, match="both"):
        shard_dataset(shards, rank=0)


def test_resampled_goes_past_one_epoch(shards):
    it = iter(shard_dataset(shards, eval_transform(32), CTX, resampled=True, shuffle=8, seed=1))
    items = [next(it) for _ in range(50)]
    assert len(items) == 50 and len(set(_tokens(items))) <= 16


def test_shuffle_changes_order(shards):
    plain = [tuple(y.tolist()) for _, y in shard_dataset(shards, eval_transform(32), CTX, shuffle=0)]
    mixed = [tuple(y.tolist()) for _, y in shard_dataset(shards, eval_transform(32), CTX, shuffle=16)]
    assert sorted(plain) == sorted(mixed) and plain != mixed


@pytest.fixture
def bad_shards(tmp_path):
    with tarfile.open(tmp_path / "bad-000.tar", "w") as tar:
        _add(tar, "good1.jpg", _encoded()); _add(tar, "good1.txt", b"a red circle")
        _add(tar, "trunc.jpg", _encoded(size=64)[:400]); _add(tar, "trunc.txt", b"a square")
        _add(tar, "nocap.jpg", _encoded()); _add(tar, "nocap.json", b'{"subreddit": "pics"}')
        _add(tar, "empty.jpg", _encoded()); _add(tar, "empty.txt", b"")
        _add(tar, "latin.jpg", _encoded()); _add(tar, "latin.txt", "caf\u00e9 au lait".encode("latin-1"))
        _add(tar, "badjson.png", _encoded("PNG")); _add(tar, "badjson.json", b"{not json")
        _add(tar, "good2.png", _encoded("PNG")); _add(tar, "good2.txt", b"a blue square")
    tarfile.open(tmp_path / "bad-001.tar", "w").close()          # a valid tar with no members
    (tmp_path / "bad-002.tar").write_bytes(b"")                   # a zero-byte file
    return tmp_path


def test_bad_samples_skipped_counted_warned(bad_shards):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = shard_dataset(f"{bad_shards}/bad-*.tar", eval_transform(32), CTX, shuffle=0)
        items = list(ds)
    assert _tokens(items) == sorted(tuple(tokenize(t, CTX)[0].tolist()) for t in ["a red circle", "a blue square"])
    assert ds.log.counts == {"corrupt image": 1, "missing caption": 1, "empty caption": 1,
                             "undecodable text": 2, "empty shard": 2}
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedSampleWarning)]
    assert len(messages) == 7
    for name in ["bad-000.tar/trunc", "bad-000.tar/nocap", "bad-000.tar/empty", "bad-000.tar/latin",
                 "bad-000.tar/badjson", "bad-001.tar", "bad-002.tar"]:
        assert any(name in m for m in messages), name


def test_bad_samples_with_workers(bad_shards):
    ds = shard_dataset(f"{bad_shards}/bad-*.tar", eval_transform(32), CTX, shuffle=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sum(len(x) for x, _ in DataLoader(ds, batch_size=2, num_workers=2)) == 2


def test_warnings_rate_limited(bad_shards):
    log = SkipLog(max_warnings=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(shard_dataset(f"{bad_shards}/bad-*.tar", eval_transform(32), CTX, shuffle=0, log=log))
    ours = [str(w.message) for w in caught if issubclass(w.category, SkippedSampleWarning)]
    assert log.total == 7 and len(ours) == 3 and "further skips" in ours[-1], [str(w.message) for w in caught]


def test_nothing_valid_raises(bad_shards, tmp_path_factory):
    with pytest.raises(ValueError, match="no valid sample.*empty shard"):
        shard_dataset([bad_shards / "bad-001.tar", bad_shards / "bad-002.tar"])
    other = tmp_path_factory.mktemp("allbad")
    with tarfile.open(other / "x.tar", "w") as tar:
        _add(tar, "a.jpg", b"not a jpeg"); _add(tar, "a.txt", b"a caption")
    with pytest.raises(ValueError, match="corrupt image"):
        shard_dataset(other / "x.tar")


def _table(tmp_path, sep=",", name="pairs.csv", rows=None):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for k in range(3):
        (folder / f"{k}.jpg").write_bytes(_encoded(k=k))
    (folder / "broken.jpg").write_bytes(_encoded()[:200])
    rows = rows or [("images/0.jpg", "zero"), ("images/missing.jpg", "lost"), ("images/1.jpg", ""),
                    ("images/2.jpg", "two"), ("images/broken.jpg", "broken")]
    lines = [sep.join(["filepath", "title"])] + [sep.join(r) for r in rows]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name


@pytest.mark.parametrize("sep,name", [(",", "pairs.csv"), ("\t", "pairs.tsv")])
def test_csv_skips_missing_and_empty(tmp_path, sep, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CsvDataset(_table(tmp_path, sep, name), eval_transform(32), context_length=CTX)
    assert len(ds) == 3 and ds.log.counts == {"missing file": 1, "empty caption": 1}
    messages = [str(w.message) for w in caught]
    assert any("row 3" in m and "missing.jpg" in m for m in messages) and any("row 4" in m for m in messages)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and torch.equal(y, tokenize("zero", CTX)[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = ds[2]                                           # broken.jpg: skipped at read, next valid row instead
    assert torch.equal(y, tokenize("zero", CTX)[0]) and ds.log.counts["corrupt image"] == 1
    assert any("broken.jpg" in str(w.message) for w in caught)
    with pytest.warns(SkippedSampleWarning, match="broken.jpg"):
        batch = next(iter(DataLoader(ds, batch_size=3, num_workers=0)))
    assert batch[0].shape == (3, 3, 32, 32)


def test_csv_columns_root_and_errors(tmp_path):
    path = _table(tmp_path)
    with pytest.raises(ValueError, match=r"columns are \['filepath', 'title'\]"):
        CsvDataset(path, image_key="image")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        CsvDataset(tmp_path / "nope.csv")
    (tmp_path / "other").mkdir()
    moved = (tmp_path / "other" / "pairs.csv")
    moved.write_text(path.read_text())
    with pytest.warns(SkippedSampleWarning):
        assert len(CsvDataset(moved, eval_transform(32), root=tmp_path)) == 3
    with pytest.warns(SkippedSampleWarning), pytest.raises(ValueError, match="no valid row"):
        CsvDataset(moved, eval_transform(32))                 # relative to other/: nothing exists
    semi = tmp_path / "semi.txt"
    semi.write_text("path;text\nimages/0.jpg;zero\n")
    assert len(CsvDataset(semi, image_key="path", caption_key="text", sep=";")) == 1


def test_redcaps_prefix():
    assert segment_subreddit("itookapicture") == "i took a picture"
    assert segment_subreddit("earthporn") == "earth porn"
    rng = np.random.default_rng(0)
    assert all(redcaps_caption("c", "itookapicture", rng, 1.0) == "i took a picture : c" for _ in range(20))
    assert all(redcaps_caption("c", "itookapicture", rng, 0.0) == "c" for _ in range(20))
    assert redcaps_caption("c", "", rng, 1.0) == "c"
    rng = np.random.default_rng(7)
    hits = sum(redcaps_caption("c", "pics", rng, 0.5) != "c" for _ in range(2000))
    assert 900 < hits < 1100
    draws = lambda seed: [redcaps_caption("c", "pics", rng) for rng in [np.random.default_rng(seed)] for _ in range(50)]
    assert draws(3) == draws(3) != draws(4)


def test_transforms():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8))
    torch.manual_seed(0)
    for t in (train_transform(64), eval_transform(64)):
        x = t(img)
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and x.is_contiguous()
        assert 0 <= x.min() < x.max() <= 1
    assert not torch.equal(train_transform(64)(img), train_transform(64)(img)), "the training crop is random"
    assert torch.equal(eval_transform(64)(img), eval_transform(64)(img))
    grey = Image.new("L", (50, 50), 255)
    assert torch.equal(eval_transform(32)(grey), torch.ones(3, 32, 32))


def test_images_as_other_programs_write_them(tmp_path):
    "PNG with alpha, a palette GIF with a transparent index, a 16-bit TIFF and a BMP: all listed, all read as the picture."
    from meru_nb.embed import list_images, read_image
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., :3] = (140, 136, 129)                            # colour stored under alpha 0
    rgba[4:12, 4:12] = (20, 160, 60, 255)
    Image.fromarray(rgba).save(tmp_path / "sticker.png")
    gif = Image.fromarray(rgba[..., :3]).convert("P")
    gif.save(tmp_path / "anim.gif", transparency=int(np.asarray(gif)[0, 0]))
    Image.fromarray(np.full((8, 8), 51400, dtype=np.uint16)).save(tmp_path / "scan.tif")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "plain.bmp")
    files = list_images(tmp_path)
    assert sorted(p.name for p in files) == ["anim.gif", "plain.bmp", "scan.tif", "sticker.png"]
    pictures = {p.name: np.asarray(read_image(p)) for p in files}
    assert all(a.dtype == np.uint8 and a.shape[-1] == 3 for a in pictures.values())
    for name in ("sticker.png", "anim.gif"):                   # the silhouette on white, not a coloured square
        assert (pictures[name][0, 0] == 255).all() and abs(int(pictures[name][8, 8, 1]) - 160) <= 12, name   # (a palette rounds colours)
    assert abs(pictures["scan.tif"].mean() - 51400 / 257) < 1                          # 200, not clipped to 255
    assert tuple(pictures["plain.bmp"][0, 0]) == (140, 136, 129)                     # no alpha: the colour as stored
