"""Datasets and the batch loader (nasedu.data).

CIFAR-10 cannot be downloaded here, so its test writes a small archive in the real
on-disk format (``cifar-10-batches-py/`` with the python pickles torchvision reads) and
loads it through the real ``torchvision.datasets.CIFAR10`` code path, with torchvision's
MD5 table pointed at the generated files.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nasedu import data

CIFAR_PER_BATCH = 20


# --------------------------------------------------------------------------- digits
def _fingerprints(split: data.Split) -> Counter:
    x, y = split
    return Counter((xi.numpy().tobytes(), int(yi)) for xi, yi in zip(x, y, strict=True))


def test_digits_shapes_and_fixed_split():
    d = data.load("digits")
    assert (d.num_classes, d.in_channels, d.image_size) == (10, 1, 8)
    for split, n in zip((d.train, d.valid, d.test), data.DIGITS_SPLIT, strict=True):
        x, y = split
        assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
    # Pinned: the split must not change between machines or library versions.
    assert torch.bincount(d.train[1]).tolist() == [
        99,
        101,
        98,
        102,
        101,
        101,
        101,
        100,
        97,
        100,
    ]
    assert torch.bincount(d.test[1]).tolist() == [
        40,
        41,
        39,
        41,
        40,
        40,
        40,
        40,
        39,
        40,
    ]
    again = data.load("digits")
    for a, b in zip(
        (d.train, d.valid, d.test), (again.train, again.valid, again.test), strict=True
    ):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # Normalised with the training split's statistics.
    assert abs(d.train[0].mean().item()) < 1e-4
    assert d.train[0].std().item() == pytest.approx(1.0, abs=1e-3)


def test_digits_splits_partition_the_dataset():
    from sklearn.datasets import load_digits

    d = data.load("DiGiTs")  # names are case-insensitive
    raw = load_digits()
    x_all = torch.from_numpy(
        (raw.images.astype(np.float32) / 16.0 - d.mean[0]) / d.std[0]
    )
    full = _fingerprints((x_all.float()[:, None], torch.from_numpy(raw.target)))
    parts = [_fingerprints(s) for s in (d.train, d.valid, d.test)]
    assert sum(parts, Counter()) == full  # every example in exactly one split
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not set(parts[a]) & set(parts[b])


def test_digits_split_is_stratified():
    d = data.load("digits")
    total = sum(torch.bincount(s[1], minlength=10) for s in (d.train, d.valid, d.test))
    for (_, y), n in zip((d.train, d.valid, d.test), data.DIGITS_SPLIT, strict=True):
        expected = total * n / total.sum()
        assert (torch.bincount(y, minlength=10) - expected).abs().max() <= 1.0


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*digits.*cifar10"):
        data.load("mnist")
    assert {"digits", "cifar10"} <= set(data.names())


# --------------------------------------------------------------------------- search split
def test_search_split_halves_are_disjoint_stratified_and_seeded():
    x = torch.arange(200, dtype=torch.float32).view(200, 1, 1, 1)
    y = torch.arange(200) % 4
    (xa, ya), (xb, yb) = data.search_split(x, y, portion=0.5, seed=0)
    assert len(ya) == len(yb) == 100
    ids_a, ids_b = set(xa.flatten().tolist()), set(xb.flatten().tolist())
    assert not ids_a & ids_b and len(ids_a | ids_b) == 200
    assert torch.equal(ya, x[xa.flatten().long()].flatten().long() % 4)  # pairs kept
    assert torch.bincount(ya).tolist() == [25, 25, 25, 25]
    (xa2, _), _ = data.search_split(x, y, portion=0.5, seed=0)
    (xa3, _), _ = data.search_split(x, y, portion=0.5, seed=1)
    assert torch.equal(xa, xa2) and not torch.equal(xa, xa3)
    (xs, _), (xl, _) = data.search_split(x, y, portion=0.25)
    assert (len(xs), len(xl)) == (50, 150)


@pytest.mark.parametrize("portion", [0.0, 1.0, -0.5, 2.0, 0.001])
def test_search_split_rejects_bad_portion(portion):
    with pytest.raises(ValueError, match="portion"):
        data.search_split(
            torch.zeros(100, 1, 2, 2),
            torch.zeros(100, dtype=torch.long),
            portion=portion,
        )


# --------------------------------------------------------------------------- loader
def _images(n=50, c=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, size, size, generator=g), torch.arange(n) % 10


def test_loader_batches_cover_the_epoch_once():
    x, y = _images(50)
    loader = data.BatchLoader(x, y, 16, "cpu", seed=0)
    assert len(loader) == 4
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [16, 16, 16, 2]
    assert all(
        bx.shape[1:] == (3, 8, 8) and bx.device.type == "cpu" for bx, _ in batches
    )
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == sorted(y.tolist())
    assert loader.epoch == 1
    assert len(data.BatchLoader(x, y, 16, "cpu", drop_last=True)) == 3
    # Without augmentation every image is its labelled original.
    for bx, by in batches:
        for xi, yi in zip(bx, by, strict=True):
            assert any(torch.equal(xi, x[j]) for j in torch.nonzero(y == yi).flatten())


def test_loader_order_is_seeded_and_changes_each_epoch():
    x, y = _images(40)
    y = torch.arange(40)

    def epochs(seed, shuffle=True):
        loader = data.BatchLoader(x, y, 40, "cpu", seed=seed, shuffle=shuffle)
        return [torch.cat([b for _, b in loader]) for _ in range(2)]

    first, second = epochs(0)
    assert not torch.equal(first, second)
    assert all(
        torch.equal(a, b) for a, b in zip(epochs(0), (first, second), strict=True)
    )
    assert not torch.equal(epochs(1)[0], first)
    assert torch.equal(epochs(0, shuffle=False)[0], y)


def _shift_candidates(image: torch.Tensor, pad: int, fill: torch.Tensor) -> list:
    """Every crop of ``image`` padded with ``fill``, flipped or not (the oracle)."""
    C, H, W = image.shape
    padded = fill.view(C, 1, 1).expand(C, H + 2 * pad, W + 2 * pad).clone()
    padded[:, pad : pad + H, pad : pad + W] = image
    crops = [
        padded[:, i : i + H, j : j + W]
        for i in range(2 * pad + 1)
        for j in range(2 * pad + 1)
    ]
    return [(k, False, crop) for k, crop in enumerate(crops)] + [
        (k, True, crop.flip(2)) for k, crop in enumerate(crops)
    ]


def test_crop_flip_is_a_padded_shift_possibly_flipped():
    x, y = _images(16, c=3, size=12)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    loader = data.BatchLoader(
        x,
        y,
        16,
        "cpu",
        shuffle=False,
        augment="crop_flip",
        padding=2,
        fill=fill.tolist(),
        seed=3,
    )
    ((bx, by),) = list(loader)
    assert bx.shape == x.shape and torch.equal(by, y)
    offsets, flips = set(), set()
    for i in range(16):
        matches = [
            (k, f)
            for k, f, crop in _shift_candidates(x[i], 2, fill)
            if torch.equal(crop, bx[i])
        ]
        assert matches, f"image {i} is not a padded crop of its original"
        offsets.add(matches[0][0])
        flips.add(matches[0][1])
    assert not torch.equal(bx, x)  # it changed the images
    assert len(offsets) > 3 and flips == {False, True}  # and it is random


def test_crop_only_never_flips():
    x, y = _images(16, size=8)
    loader = data.BatchLoader(x, y, 16, "cpu", shuffle=False, augment="crop", padding=1)
    ((bx, _),) = list(loader)
    for i in range(16):
        assert any(
            torch.equal(crop, bx[i])
            for _, f, crop in _shift_candidates(x[i], 1, torch.zeros(3))
            if not f
        )


def test_cutout_zeroes_one_clipped_16px_square():
    x = torch.ones(64, 3, 32, 32)
    loader = data.BatchLoader(
        x, torch.zeros(64, dtype=torch.long), 64, "cpu", cutout=16
    )
    ((bx, _),) = list(loader)
    assert bx.shape == x.shape
    full = 0
    for image in bx:
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
        hole = image[0] == 0
        assert set(image[0][~hole].tolist()) == {1.0}
        rows = torch.nonzero(hole.any(1)).flatten()
        cols = torch.nonzero(hole.any(0)).flatten()
        h, w = len(rows), len(cols)
        # One rectangle: contiguous rows and columns, all of it zero.
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        assert int(hole.sum()) == h * w
        # A centre inside the image keeps at least half the side; clipping only shrinks.
        assert 8 <= h <= 16 and 8 <= w <= 16
        full += h == w == 16
    assert full > 0


def test_resume_draws_the_same_batches(tmp_path: Path):
    x, y = _images(50, size=8)
    kwargs = dict(
        batch_size=8, device="cpu", augment="crop_flip", cutout=4, padding=2, seed=7
    )
    loader = data.BatchLoader(x, y, **kwargs)
    stream = loader.forever()
    for _ in range(9):  # one epoch has 7 batches: stop inside the second
        next(stream)
    path = tmp_path / "loader.pt"
    torch.save(loader.state_dict(), path)
    expected = [next(stream) for _ in range(10)]  # crosses into the third epoch
    assert loader.epoch == 2

    resumed = data.BatchLoader(x, y, **kwargs)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    got = resumed.forever()
    for (ex, ey), (gx, gy) in zip(
        expected, (next(got) for _ in range(10)), strict=True
    ):
        assert torch.equal(ex, gx) and torch.equal(ey, gy)


def test_resume_after_a_complete_epoch_loop():
    x, y = _images(20)
    a = data.BatchLoader(x, y, 8, "cpu", augment="flip", seed=1)
    list(a)  # one full epoch through a for loop
    b = data.BatchLoader(x, y, 8, "cpu", augment="flip", seed=1)
    b.load_state_dict(a.state_dict())
    for (ax, ay), (bx, by) in zip(a, b, strict=True):
        assert torch.equal(ax, bx) and torch.equal(ay, by)


def test_loader_rejects_bad_arguments():
    x, y = _images(10)
    with pytest.raises(ValueError, match="unknown augment 'rotate'.*crop_flip"):
        data.BatchLoader(x, y, 4, "cpu", augment="rotate")
    with pytest.raises(ValueError, match="batch_size"):
        data.BatchLoader(x, y, 0, "cpu")
    with pytest.raises(ValueError, match="labels"):
        data.BatchLoader(x, y[:5], 4, "cpu")
    with pytest.raises(ValueError, match="no batch"):
        data.BatchLoader(x, y, 16, "cpu", drop_last=True)
    with pytest.raises(ValueError, match="fill"):
        data.BatchLoader(x, y, 4, "cpu", fill=[0.0, 1.0])
    with pytest.raises(ValueError, match="batch size"):
        data.BatchLoader(x, y, 2, "cpu").load_state_dict(
            {**data.BatchLoader(x, y, 4, "cpu").state_dict(), "batch": 6}
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_keeps_data_and_augmentation_on_cuda():
    x, y = _images(64, size=32)
    loader = data.BatchLoader(x, y, 32, "cuda", augment="crop_flip", cutout=16, seed=0)
    assert loader.x.is_cuda and loader.y.is_cuda  # moved once, at construction
    state = loader.state_dict()
    first = [b for b, _ in loader]
    assert all(b.is_cuda and b.shape == (32, 3, 32, 32) for b in first)
    again = data.BatchLoader(x, y, 32, "cuda", augment="crop_flip", cutout=16, seed=0)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, (b, _) in zip(first, again, strict=True))


# --------------------------------------------------------------------------- CIFAR-10
def _pickle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    pickle.dump(obj, buffer, protocol=2)  # the archive's files are protocol-2 pickles
    return buffer.getvalue()


def _write_cifar(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A CIFAR-10 archive with CIFAR_PER_BATCH images per file, in the real format:
    rows of 3072 uint8 (1024 red, 1024 green, 1024 blue, row-major) and int labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rows = rng.randint(0, 256, size=(CIFAR_PER_BATCH, 3072)).astype(np.uint8)
        labels = [(i + j) % 10 for j in range(CIFAR_PER_BATCH)]
        (folder / name).write_bytes(
            _pickle_bytes(
                {
                    "batch_label": f"synthetic batch {i}",
                    "labels": labels,
                    "data": rows,
                    "filenames": [f"img_{i}_{j}.png" for j in range(CIFAR_PER_BATCH)],
                }
            )
        )
        written[name] = (rows, labels)
    (folder / "batches.meta").write_bytes(
        _pickle_bytes(
            {
                "label_names": [
                    "airplane",
                    "automobile",
                    "bird",
                    "cat",
                    "deer",
                    "dog",
                    "frog",
                    "horse",
                    "ship",
                    "truck",
                ],
                "num_cases_per_batch": CIFAR_PER_BATCH,
                "num_vis": 3072,
            }
        )
    )
    return written


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A generated archive, with torchvision's checksum table set to its files' MD5s."""
    from torchvision.datasets import CIFAR10

    root = tmp_path / "cache"
    written = _write_cifar(root)
    folder = root / CIFAR10.base_folder
    monkeypatch.setattr(
        CIFAR10, "train_list", [[n, _md5(folder / n)] for n, _ in CIFAR10.train_list]
    )
    monkeypatch.setattr(
        CIFAR10, "test_list", [[n, _md5(folder / n)] for n, _ in CIFAR10.test_list]
    )
    monkeypatch.setattr(
        CIFAR10,
        "meta",
        {**CIFAR10.meta, "md5": _md5(folder / CIFAR10.meta["filename"])},
    )
    return root, written


def test_cifar10_loads_a_generated_archive(cifar_root):
    root, written = cifar_root
    d = data.load("cifar10", root=root, download=False)
    assert (d.num_classes, d.in_channels, d.image_size) == (10, 3, 32)
    assert d.valid is None
    assert d.train[0].shape == (5 * CIFAR_PER_BATCH, 3, 32, 32)
    assert d.test[0].shape == (CIFAR_PER_BATCH, 3, 32, 32)
    assert d.train[0].dtype == torch.float32 and d.train[1].dtype == torch.int64
    # Oracle: the file's planar RGB rows, scaled to [0, 1] and normalised (DARTS mean/std).
    rows, labels = written["data_batch_2"]
    raw = torch.from_numpy(rows.reshape(-1, 3, 32, 32)).float() / 255.0
    mean = torch.tensor(data.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD).view(1, 3, 1, 1)
    block = slice(CIFAR_PER_BATCH, 2 * CIFAR_PER_BATCH)  # data_batch_2 comes second
    torch.testing.assert_close(d.train[0][block], (raw - mean) / std)
    assert d.train[1][block].tolist() == labels
    assert d.test[1].tolist() == written["test_batch"][1]
    # A black pixel is what the crop pads with.
    black = (torch.zeros(3) - mean.flatten()) / std.flatten()
    torch.testing.assert_close(torch.tensor(d.fill), black)


def test_cifar10_default_root_is_nasedu_data(cifar_root, monkeypatch):
    root, _ = cifar_root
    monkeypatch.setenv("NASEDU_DATA", str(root))
    assert data.default_root() == root
    assert len(data.load("cifar10", download=False).train[1]) == 5 * CIFAR_PER_BATCH


def test_cifar10_search_split_and_augmented_batches(cifar_root):
    root, _ = cifar_root
    d = data.load("cifar10", root=root, download=False)
    (xw, yw), (xa, ya) = data.search_split(*d.train, portion=0.5, seed=0)
    assert len(yw) == len(ya) == 50
    loader = data.BatchLoader(
        xw, yw, 16, "cpu", augment="crop_flip", cutout=16, fill=d.fill, seed=0
    )
    bx, by = next(loader.forever())
    assert bx.shape == (16, 3, 32, 32) and by.shape == (16,)


def test_cifar10_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*download=True"):
        data.load("cifar10", root=tmp_path, download=False)


def test_cifar10_checksums_are_checked(tmp_path):
    _write_cifar(tmp_path)  # the real checksum table: these files do not match it
    with pytest.raises(FileNotFoundError, match="corrupted"):
        data.load("cifar10", root=tmp_path, download=False)


def test_cifar10_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match="URLError.*no network.*NASEDU_DATA"):
        data.load("cifar10", root=tmp_path, download=True)
