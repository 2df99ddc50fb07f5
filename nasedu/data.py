"""Datasets and a GPU-resident batch loader (chapter *Introduction*, chapter *DARTS*).

Two datasets, registered by name in ``DATASETS``:

* ``digits`` — scikit-learn's handwritten digits (1,797 images, 1×8×8, 10 classes),
  shipped with scikit-learn, so it needs no network: the ``smoke`` budget's dataset.
  The split is fixed (stratified, seed 0): **1000 train / 397 valid / 400 test**.
* ``cifar10`` — CIFAR-10 through ``torchvision.datasets.CIFAR10`` (downloaded once
  into ``$NASEDU_DATA`` or ``~/.cache/nasedu``): 50,000 train / 10,000 test images,
  3×32×32. ``valid`` is None: a search holds out half of the training set with
  ``search_split`` (DARTS App. A.1.1, ``train_portion=0.5`` in ``cnn/train_search.py``),
  and the test set is never used to select an architecture (DARTS §3.2).

Images are float32, scaled to [0, 1] and normalised per channel (CIFAR-10 with the
mean/std of ``quark0/darts`` ``cnn/utils.py``; digits with its training split's).

Augmentation follows the papers' CIFAR-10 protocol, done by ``BatchLoader`` on whole
batches on the data's device:

* random crop with 4-pixel zero padding and random horizontal flip — the standard
  CIFAR-10 augmentation (He et al. 2016, §4.2) used by NASNet, ENAS, PNAS and DARTS;
* cutout (DeVries & Taylor 2017) of a 16×16 square, clipped at the border — DARTS
  App. A.2.1 ("cutout ... with length 16"), ENAS's 2.89% result; an option, off by
  default, as in the papers' searches.

Normalisation happens before augmentation here (the data are stored normalised), so
"zero padding" means padding with the normalised value of a black pixel,
``ImageData.fill``, and cutout writes zeros into normalised images — both exactly as
torchvision's ``RandomCrop(padding=4)`` → ``Normalize`` → ``Cutout`` in DARTS's
``_data_transforms_cifar10``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasedu.registry import Registry

Split = tuple[
    torch.Tensor, torch.Tensor
]  # images (N, C, H, W) float32, labels (N,) int64

# quark0/darts cnn/utils.py, _data_transforms_cifar10.
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
DIGITS_SPLIT = (1000, 397, 400)  # train / valid / test of the 1,797 digits
AUGMENTATIONS = (None, "crop", "flip", "crop_flip")


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image classification dataset held in memory as tensors.

    Attributes:
        name: the registry name.
        train, valid, test: ``(x, y)`` with ``x`` float32 ``(N, C, H, W)`` normalised
            and ``y`` int64 ``(N,)``; ``valid`` is None when the dataset has no fixed
            validation split (CIFAR-10: use ``search_split``).
        num_classes, in_channels, image_size: what a network needs to be built.
        mean, std: the per-channel normalisation applied to images in [0, 1].
    """

    name: str
    train: Split
    valid: Split | None
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def fill(self) -> tuple[float, ...]:
        """The normalised value of a black pixel: what "zero padding" pads with."""
        return tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{k}={'None' if v is None else len(v[1])}"
            for k, v in (
                ("train", self.train),
                ("valid", self.valid),
                ("test", self.test),
            )
        )
        return (
            f"ImageData({self.name!r}, {sizes}, "
            f"{self.in_channels}×{self.image_size}×{self.image_size}, "
            f"{self.num_classes} classes)"
        )


DATASETS: Registry[Callable[[Path, bool], ImageData]] = Registry(
    "dataset", case_sensitive=False
)


def names() -> list[str]:
    """The registered dataset names."""
    return DATASETS.names()


def default_root() -> Path:
    """Where downloads go: ``$NASEDU_DATA`` if set, else ``~/.cache/nasedu``."""
    return Path(os.environ.get("NASEDU_DATA") or Path.home() / ".cache" / "nasedu")


def load(name: str, root: str | Path | None = None, download: bool = True) -> ImageData:
    """Load a registered dataset (chapter *Introduction*).

    Args:
        name: one of ``names()`` (case-insensitive), e.g. ``"digits"`` or ``"cifar10"``.
        root: cache directory for downloaded datasets (default ``default_root()``).
        download: fetch a missing dataset; with False a missing one is an error.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
        FileNotFoundError: the files are missing or corrupt and ``download`` is False.
    """
    loader = DATASETS.get(name)
    return loader(
        Path(root).expanduser() if root is not None else default_root(), download
    )


# --------------------------------------------------------------------------- splits
def _stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))`` whose every prefix is class-balanced.

    Each class is shuffled, its k-th example is placed at the fractional position
    (k + 0.5) / class_size, and the examples are sorted by that position, so cutting
    the order anywhere gives every class its share within one example. NumPy's
    legacy ``RandomState`` is used because its stream never changes between releases:
    the split stays the same on every machine.
    """
    rng = np.random.RandomState(seed)
    perm = rng.permutation(len(labels))
    shuffled = labels[perm]
    rank = np.empty(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(shuffled == c)
        rank[members] = (np.arange(len(members)) + 0.5) / len(members)
    return perm[np.argsort(rank, kind="stable")]


def search_split(
    x: torch.Tensor, y: torch.Tensor, portion: float = 0.5, seed: int = 0
) -> tuple[Split, Split]:
    """Split a training set into the two halves of a search (DARTS App. A.1.1).

    The first part trains the weights w, the second the architecture α (DARTS Eq. 3-4;
    chapter *DARTS*). The split is stratified by class and fixed by ``seed``; the
    official code instead takes the first ``portion`` of the files' order, which CIFAR-10
    has already shuffled.

    Args:
        x: images ``(N, C, H, W)``; y: labels ``(N,)``, on any device.
        portion: fraction of the examples in the first part, in (0, 1).
        seed: the seed of the split.

    Returns:
        ``((x_w, y_w), (x_alpha, y_alpha))``, each in the original order.
    """
    if not 0.0 < portion < 1.0:
        raise ValueError(f"portion must be in (0, 1), got {portion!r}")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    k = int(math.floor(portion * len(y)))
    if k == 0 or k == len(y):
        raise ValueError(
            f"portion {portion} of {len(y)} examples leaves one part empty"
        )
    order = _stratified_order(y.cpu().numpy(), seed)
    first, second = np.sort(order[:k]), np.sort(order[k:])
    first_t = torch.from_numpy(first).to(y.device)
    second_t = torch.from_numpy(second).to(y.device)
    return (x[first_t], y[first_t]), (x[second_t], y[second_t])


# --------------------------------------------------------------------------- datasets
@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


@DATASETS.register("digits")
def _load_digits(root: Path, download: bool) -> ImageData:
    """scikit-learn's digits (no files, no network); ``root``/``download`` are unused."""
    images, labels = _digits_arrays()  # (1797, 8, 8) in [0, 1], (1797,)
    order = _stratified_order(labels, seed=0)
    n_train, n_valid, _ = DIGITS_SPLIT
    parts = np.split(order, [n_train, n_train + n_valid])
    train_images = images[parts[0]]
    mean, std = float(train_images.mean()), float(train_images.std())

    def split(idx: np.ndarray) -> Split:
        idx = np.sort(idx)  # file order: the split is a set
        x = torch.from_numpy((images[idx] - mean) / std).float()[
            :, None
        ]  # (N, 1, 8, 8)
        return x, torch.from_numpy(labels[idx])

    return ImageData(
        "digits",
        split(parts[0]),
        split(parts[1]),
        split(parts[2]),
        num_classes=10,
        in_channels=1,
        image_size=8,
        mean=(mean,),
        std=(std,),
    )


def _cifar_split(dataset: Any) -> Split:
    """torchvision's uint8 ``(N, 32, 32, 3)`` array as normalised float32 NCHW."""
    x = (
        torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    )  # (N, 3, 32, 32) u8
    x = x.float().div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    x.sub_(mean).div_(std)  # in place: the training set is 600 MB as float32
    return x, torch.tensor(dataset.targets, dtype=torch.int64)


@DATASETS.register("cifar10")
def _load_cifar10(root: Path, download: bool) -> ImageData:
    """CIFAR-10 through torchvision (which checks every file's MD5 before reading it)."""
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    # RuntimeError: torchvision's "Dataset not found or corrupted" (MD5 mismatch included);
    # OSError: the download failed (no network, disk full).
    except (RuntimeError, OSError) as err:
        raise FileNotFoundError(
            f"CIFAR-10 not found or corrupted in {folder} ({type(err).__name__}: {err}); "
            f"call nasedu.data.load('cifar10', root={str(root)!r}, download=True) on a "
            f"machine with network access, or set NASEDU_DATA to a folder that holds "
            f"{CIFAR10.base_folder}/"
        ) from None
    return ImageData(
        "cifar10",
        _cifar_split(train),
        None,
        _cifar_split(test),
        num_classes=10,
        in_channels=3,
        image_size=32,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


# --------------------------------------------------------------------------- loader
def _seed_for(*keys: int) -> int:
    """A 64-bit seed mixed from integers (stable across runs and machines)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])


class BatchLoader:
    """Mini-batches of a dataset held on ``device``, augmented there, resumable.

    The tensors are moved to ``device`` once, at construction: on CUDA the whole
    dataset lives on the GPU and every batch is an index into it, augmented by a few
    batched tensor operations — no host transfer, worker process or new iterator per
    step (the official DARTS code builds a new validation iterator every step:
    ``next(iter(valid_queue))``).

    ``for x, y in loader`` runs the rest of the current epoch; ``loader.forever()`` is
    an endless stream for searches that draw one batch at a time (DARTS takes a train
    and a valid batch per step). Shuffling uses a permutation seeded by ``(seed,
    epoch)`` and augmentation a ``torch.Generator`` on ``device``, so a seed fixes every
    batch (per device type), and ``state_dict()`` — epoch, position and generator
    state — lets a resumed run draw exactly the batches an uninterrupted one would.

    Args:
        x: images ``(N, C, H, W)``; y: labels ``(N,)``.
        batch_size: examples per batch.
        device: where the data and the batches live.
        shuffle: a new order every epoch (False: file order, for evaluation).
        augment: None, ``"crop"`` (random crop after ``padding``-pixel padding),
            ``"flip"`` (random horizontal flip) or ``"crop_flip"`` (both; the papers').
        cutout: side of the cutout square (DARTS App. A.2.1: 16); 0 turns it off.
        padding: pixels of padding for the random crop (4 for CIFAR-10).
        fill: value of padded pixels, a float or one per channel; pass
            ``ImageData.fill`` to pad with black as torchvision does.
        seed: seed of the order and the augmentation.
        drop_last: drop the last, smaller batch of an epoch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device | str,
        *,
        shuffle: bool = True,
        augment: str | None = None,
        cutout: int = 0,
        padding: int = 4,
        fill: float | Sequence[float] = 0.0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augment {augment!r}; valid choices: "
                f"{', '.join(map(str, AUGMENTATIONS))}"
            )
        if cutout < 0 or padding < 0:
            raise ValueError(
                f"cutout and padding must be >= 0, got {cutout} and {padding}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.x = torch.as_tensor(x).to(self.device)  # (N, C, H, W), moved once
        self.y = torch.as_tensor(y).to(self.device)  # (N,)
        if self.x.ndim != 4 or len(self.x) != len(self.y):
            raise ValueError(
                f"expected images (N, C, H, W) and N labels, got "
                f"{tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )
        fill_t = torch.as_tensor(fill, dtype=self.x.dtype, device=self.device).flatten()
        if len(fill_t) not in (1, self.x.shape[1]):
            raise ValueError(
                f"fill must be one value or {self.x.shape[1]} (one per "
                f"channel), got {fill!r}"
            )
        self.fill = fill_t.view(1, -1, 1, 1).expand(
            1, self.x.shape[1], 1, 1
        )  # (1, C, 1, 1)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.cutout, self.padding, self.seed = (
            augment,
            cutout,
            padding,
            seed,
        )
        if len(self) == 0:
            raise ValueError(
                f"{len(self.x)} examples make no batch of {batch_size} "
                f"with drop_last=True"
            )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(_seed_for(seed, 1))
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches of the current epoch already drawn
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.x)
        return (
            n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        )

    def __iter__(self) -> Iterator[Split]:
        """The remaining batches of the current epoch; the epoch counter then advances."""
        while self.batch < len(self):
            start = self.batch * self.batch_size
            idx = self._permutation()[start : start + self.batch_size]
            self.batch += (
                1  # before yielding: a state_dict taken now points past this batch
            )
            yield self._augment(self.x[idx]), self.y[idx]
        self.epoch, self.batch = self.epoch + 1, 0

    def forever(self) -> Iterator[Split]:
        """An endless stream of batches, epoch after epoch."""
        while True:
            yield from self

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position in the epoch and augmentation generator state."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where the loader that wrote ``state`` stopped."""
        missing = {"epoch", "batch", "generator"} - set(state)
        if missing:
            raise ValueError(f"loader state lacks {sorted(missing)}")
        if not 0 <= state["batch"] <= len(self):
            raise ValueError(
                f"loader state is at batch {state['batch']} of an epoch of "
                f"{len(self)} batches: was it saved with another batch size?"
            )
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.generator.set_state(state["generator"])

    def _permutation(self) -> torch.Tensor:
        if self._order is None or self._order[0] != self.epoch:
            n = len(self.x)
            if self.shuffle:
                g = torch.Generator(device=self.device)
                g.manual_seed(_seed_for(self.seed, 0, self.epoch))
                perm = torch.randperm(n, generator=g, device=self.device)
            else:
                perm = torch.arange(n, device=self.device)
            self._order = (self.epoch, perm)
        return self._order[1]

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        g, dev = self.generator, self.device
        if self.augment in ("crop", "crop_flip") and self.padding > 0:
            p = self.padding
            padded = self.fill.expand(
                B, C, H + 2 * p, W + 2 * p
            ).clone()  # (B, C, H+2p, W+2p)
            padded[:, :, p : p + H, p : p + W] = x
            top = torch.randint(0, 2 * p + 1, (B, 1), generator=g, device=dev)
            left = torch.randint(0, 2 * p + 1, (B, 1), generator=g, device=dev)
            rows = top + torch.arange(H, device=dev)  # (B, H)
            cols = left + torch.arange(W, device=dev)  # (B, W)
            b = torch.arange(B, device=dev).view(B, 1, 1)
            # Advanced indices around a slice put their dims first: (B, H, W, C).
            x = padded[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
            x = x.contiguous()  # (B, C, H, W)
        if self.augment in ("flip", "crop_flip"):
            flip = torch.rand(B, generator=g, device=dev) < 0.5
            x = torch.where(flip.view(B, 1, 1, 1), x.flip(3), x)  # (B, C, H, W)
        if self.cutout > 0:
            # DARTS utils.Cutout: a centre anywhere in the image, the square clipped.
            cy = torch.randint(0, H, (B, 1), generator=g, device=dev)
            cx = torch.randint(0, W, (B, 1), generator=g, device=dev)
            half = self.cutout // 2
            r, c = torch.arange(H, device=dev), torch.arange(W, device=dev)
            in_rows = (r >= cy - half) & (r < cy + half)  # (B, H)
            in_cols = (c >= cx - half) & (c < cx + half)  # (B, W)
            hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
            x = x.masked_fill(hole, 0.0)
        return x
