"""Image folders (ImageNet layout) streamed from disk through DataLoader workers.

Layout: ``<root>/<class>/<image>`` with PNG/JPEG (also BMP/WebP) images,
classes sorted by folder name, optionally split as ``<root>/train/<class>/...``
and ``<root>/val/<class>/...`` (ImageNet's layout, paper 000 §4.4 and paper 003
§5). Images are decoded by Pillow in worker processes and resized to a fixed
size there, so that batches can be stacked and augmented on the device like
the in-memory sets.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stsmooth.data.imageset import ImageSet
from stsmooth.errors import StsmoothError
from stsmooth.data.loader import epoch_order

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_ALIASES = {"test": "val", "val": "test"}


def _resolve(root: Path, split: str | None) -> Path:
    """The folder of ``split``: ``root/split`` if present, else ``root`` when it has no split folders."""
    if not root.is_dir():
        raise FileNotFoundError(f"folder: {root} is not a directory (expected <root>/<class>/<image>)")
    if split is None:
        return root
    for name in (split, _ALIASES.get(split)):
        if name and (root / name).is_dir():
            return root / name
    present = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    if not present and split == "train":
        return root
    raise FileNotFoundError(f"folder: no split folder {split!r} in {root} (found: {', '.join(present) or 'no train/val/test folders'})")


def scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and ``(path, label)`` samples of an ImageFolder-layout folder.

    Raises:
        ValueError: no class folders, or a class folder with no image (naming it).
    """
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"folder: {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    samples = []
    for label, name in enumerate(classes):
        files = sorted(
            str(p) for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"folder: class folder {folder / name} has no images ({', '.join(EXTENSIONS)})")
        samples.extend((f, label) for f in files)
    return classes, samples


def decode(path: str, size=None, mode: str = "RGB") -> torch.Tensor:
    """Decodes one image to uint8 (C, H, W), optionally resized.

    Args:
        path: image file.
        size: None (keep), int S (shorter side to S, then centre crop S×S) or
            (H, W) (resize to exactly H×W).
        mode: Pillow mode, "RGB" (C=3) or "L" (C=1).

    Raises:
        ValueError: the file cannot be decoded (naming it).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            if isinstance(size, int):
                w, h = img.size
                scale = size / min(w, h)
                target = (max(size, round(w * scale)), max(size, round(h * scale)))
            elif size is not None:
                target = (int(size[1]), int(size[0]))
            if size is not None and img.format == "JPEG":
                img.draft(mode, target)  # let libjpeg decode at a reduced scale (>= target)
            img = img.convert(mode)
            if size is not None:
                img = img.resize(target, Image.BILINEAR, reducing_gap=None)
                if isinstance(size, int):
                    left, top = (img.width - size) // 2, (img.height - size) // 2
                    img = img.crop((left, top, left + size, top + size))
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"folder: cannot read image {path} ({type(e).__name__}: {e})") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


#: Pillow modes of single-channel images (bilevel, 8/16/32-bit gray, float, gray + alpha)
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def probe(paths, sizes: bool = True, gray: bool = True, max_sizes: int = 4) -> tuple[dict, bool]:
    """Image sizes and whether all images are grayscale, from the file headers only.

    Pillow's ``Image.open`` reads the header and decodes nothing, so this is cheap
    even for many files. The scan stops as soon as the answers are known: after
    ``max_sizes`` distinct sizes, and at the first colour image.

    Args:
        paths: image files.
        sizes: collect the distinct sizes.
        gray: check whether every image is single-channel (:data:`GRAY_MODES`).
        max_sizes: stop collecting sizes after this many distinct ones.

    Returns:
        ({(width, height): first path of that size}, all_gray); all_gray is False
        when ``gray`` is False or a colour image was found.

    Raises:
        ValueError: a file that Pillow cannot identify (naming it).
    """
    from PIL import Image

    found: dict[tuple[int, int], str] = {}
    all_gray = gray
    for path in paths:
        if (not sizes or len(found) >= max_sizes) and not all_gray:
            break
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except (OSError, ValueError, SyntaxError) as e:
            raise ValueError(f"folder: cannot read image {path} ({type(e).__name__}: {e})") from None
        if sizes and len(found) < max_sizes:
            found.setdefault(size, str(path))
        all_gray = all_gray and mode in GRAY_MODES
    return found, all_gray


def _valid_size(size) -> bool:
    if size is None or (isinstance(size, int) and not isinstance(size, bool)):
        return size is None or size > 0
    return isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)


class FolderSet(Dataset):
    """An ImageFolder-layout dataset read from disk on demand.

    Args:
        root: dataset folder.
        split: None (``root`` itself), or "train"/"val"/"test" (``root/split``;
            "test" and "val" stand in for each other; "train" falls back to
            ``root`` when it has no split folders).
        size: None, int S (shorter side S then centre crop S×S) or (H, W).
        mode: "RGB" or "L".
        skip_bad_images: a :class:`FolderLoader` drops (and counts) images that cannot be
            decoded instead of stopping with an error naming the file.

    Items are ``(image uint8 (C, H, W), label int)``.
    """

    def __init__(self, root, split: str | None = None, size=None, mode: str = "RGB", skip_bad_images: bool = False):
        if mode not in ("RGB", "L"):
            raise ValueError(f"folder: mode {mode!r}; allowed: RGB, L")
        if not _valid_size(size):
            raise ValueError(f"folder: size {size!r}; allowed: None, a positive int, or (H, W) of positive ints")
        self.root = _resolve(Path(root), split)
        self.size, self.mode = size, mode
        self.skip_bad_images = bool(skip_bad_images)
        self.classes, self.samples = scan(self.root)
        self.labels = torch.tensor([s[1] for s in self.samples], dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return decode(path, self.size, self.mode), label

    def subset(self, idx) -> FolderSet:
        """The same folder restricted to samples ``idx`` (int list/array/tensor), same classes."""
        t = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx).to(torch.int64).flatten()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= len(self)):
            raise ValueError(f"folder: subset index out of range for {len(self)} images: min {int(t.min())}, max {int(t.max())}")
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in t.tolist()]
        part.labels = self.labels[t]
        return part

    def reformat(self, size=None, mode: str = "RGB") -> FolderSet:
        """The same samples decoded at ``size`` in Pillow ``mode`` (a copy; the folder is not scanned again)."""
        if mode not in ("RGB", "L"):
            raise ValueError(f"folder: mode {mode!r}; allowed: RGB, L")
        if not _valid_size(size):
            raise ValueError(f"folder: size {size!r}; allowed: None, a positive int, or (H, W) of positive ints")
        part = copy.copy(self)
        part.size, part.mode = size, mode
        return part

    def to_imageset(self) -> ImageSet:
        """Decodes every image into one in-memory ImageSet (needs a fixed ``size`` or equal sizes)."""
        images = _stack([decode(p, self.size, self.mode) for p, _ in self.samples], [p for p, _ in self.samples])
        return ImageSet(images, self.labels.clone(), list(self.classes))


def _stack(images: list[torch.Tensor], paths=None) -> torch.Tensor:
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        where = f" (e.g. {paths[0]})" if paths else ""
        raise ValueError(f"folder: images have different sizes {sorted(shapes)[:3]}{where}; pass size=S or size=(H, W)")
    return torch.stack(images)


class _Guarded(Dataset):
    """Items ``(image or None, label, error or "")``: a worker reports an undecodable file, it does not raise.

    An exception inside a DataLoader worker reaches the main process as a worker
    traceback; the loader turns the error into one line (or skips the image) instead.
    """

    def __init__(self, data: FolderSet):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        try:
            image, label = self.data[i]
        except ValueError as err:
            return None, self.data.samples[i][1], str(err)
        return image, label, ""


def _collate(batch):
    good = [b for b in batch if b[0] is not None]
    images = _stack([b[0] for b in good]) if good else None
    return images, torch.tensor([b[1] for b in good], dtype=torch.int64), [b[2] for b in batch if b[0] is None]


class _EpochSampler(Sampler):
    """Holds the order parameters; the DataLoader asks it for indices at each iteration start.

    It does not point back to the FolderLoader: a reference cycle through the
    DataLoader iterator makes worker shutdown wait for its timeout at collection.
    """

    def __init__(self, n: int, seed: int, shuffle: bool, drop_last: bool, rank: int, world_size: int):
        self.n, self.seed, self.shuffle, self.drop_last, self.rank, self.world_size = n, seed, shuffle, drop_last, rank, world_size
        self.epoch = 0
        self.num_samples = len(self.order())

    def order(self) -> torch.Tensor:
        return epoch_order(self.n, self.seed, self.epoch, self.shuffle, self.drop_last, self.rank, self.world_size)

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.num_samples


def cores_per_rank() -> int:
    """The CPU cores this process may use, shared among the ranks of this machine (at least 1).

    ``LOCAL_WORLD_SIZE`` is set by torchrun; the affinity mask is what a cluster's
    scheduler granted (``os.cpu_count`` would count the whole machine).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))


class FolderLoader:
    """Same interface as :class:`DeviceLoader`, for a :class:`FolderSet` on disk.

    Args:
        data: a FolderSet, or a folder path (then ``split``, ``size``, ``mode``
            build the FolderSet).
        batch_size, shuffle, drop_last, seed, device, rank, world_size: as in
            DeviceLoader; the order is the same pure function of ``(seed, epoch)``.
        num_workers: decoding processes (default: :func:`cores_per_rank`).
        size: fixed image size (required to stack batches of varying images).

    Yields ``(images uint8 (B, C, H, W), labels int64 (B,))`` on ``device``.
    """

    def __init__(self, data, batch_size: int, shuffle: bool = True, drop_last: bool = True, seed: int = 0, device="cpu", *,
                 num_workers: int | None = None, size=None, split: str | None = None, mode: str = "RGB", rank: int = 0, world_size: int = 1):
        if isinstance(data, FolderSet):
            if size is not None or split is not None:
                raise ValueError("FolderLoader: size/split belong to the FolderSet when one is passed; set them there")
            self.dataset = data
        else:
            self.dataset = FolderSet(data, split=split, size=size, mode=mode)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        self.batch_size, self.drop_last = batch_size, drop_last
        self.device = torch.device(device)
        self._sampler = _EpochSampler(len(self.dataset), int(seed), shuffle, drop_last, int(rank), int(world_size))
        self.num_samples = self._sampler.num_samples
        if len(self) == 0:
            raise ValueError(f"batch_size {batch_size} with drop_last=True gives no batch from {self.num_samples} images per rank")
        workers = cores_per_rank() if num_workers is None else int(num_workers)
        self.skipped: set[str] = set()  # undecodable images dropped so far (dataset.skip_bad_images)
        self._loader = DataLoader(
            _Guarded(self.dataset), batch_size=batch_size, sampler=self._sampler, drop_last=drop_last, num_workers=workers,
            collate_fn=_collate, pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
        )

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    @property
    def epoch(self) -> int:
        return self._sampler.epoch

    @property
    def seed(self) -> int:
        return self._sampler.seed

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next iteration follows."""
        self._sampler.epoch = int(epoch)

    def order(self) -> torch.Tensor:
        """Indices of the current epoch (int64, CPU)."""
        return self._sampler.order()

    def __len__(self) -> int:
        return self.num_samples // self.batch_size if self.drop_last else -(-self.num_samples // self.batch_size)

    def __iter__(self):
        for images, labels, bad in self._loader:
            if bad:
                if not self.dataset.skip_bad_images:
                    raise StsmoothError(f"{bad[0]}; fix or remove the file, or set data.skip_bad_images=true "
                                        f"to skip unreadable images")
                new = [b for b in bad if b not in self.skipped]
                self.skipped.update(bad)
                for message in new:
                    print(f"stsmooth: skipped {len(self.skipped)} unreadable image(s) so far: {message}",
                          file=sys.stderr)
                if images is None:
                    raise StsmoothError(f"every image of a batch is unreadable (e.g. {bad[0]}); check the folder")
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
