"""The 15 ImageNet-C corruptions as batched torch operations on the images' device.

Hendrycks & Dietterich, "Benchmarking neural network robustness to common
corruptions and perturbations", ICLR 2019 (reference [37] of paper 000, whose
§4.4 / Fig. 5 evaluates STS teachers on ImageNet-C). The 15 types are
re-derived from the paper's descriptions and the authors' release
(hendrycks/robustness, ``ImageNet-C/create_c/make_imagenet_c.py`` and
``make_cifar_c.py``), whose parameter tables are used as published:

* the **CIFAR-10-C** table for images whose larger side is at most 84 px,
* the **ImageNet-C** table from 85 px up.

84 is the geometric mean of 32 and 224 (84.7): a side in between takes the table
whose native size is nearer on a log scale (digits, MNIST, CIFAR, Tiny-ImageNet
-> CIFAR-10-C; STL-10's 96 px and anything ImageNet-like -> ImageNet-C). Lengths
in pixels (blur radii, shuffle distances) are used as published and not
rescaled to the actual side, as the release and ``imagecorruptions`` do; the
elastic transform's lengths are fractions of the side in both tables
(``IMSIZE * f`` for CIFAR, ``244 * f`` at 224 px for ImageNet).

Every random draw comes from one ``torch.Generator`` on the images' device, so a
seed reproduces a batch exactly on the same device. Each image gets its own
draws (noise, angles, crops) with no per-image Python, except the glass-blur
pixel walk (sequential by definition, run once per batch over all its images at
once) and frost crops from user-given photographs.

Re-derived where the release calls a tool we cannot use, and two things worth knowing:

* motion blur (ImageMagick ``MotionBlurImage``): a one-sided Gaussian of
  ``2 * radius + 1`` taps along the angle, tap i reading the pixel
  ``ceil(i sin a - 0.5)`` rows and ``ceil(i cos a - 0.5)`` columns away, edge
  pixels repeated outside the image (ImageMagick's default virtual pixels);
* JPEG (libjpeg via Pillow): JFIF YCbCr in libjpeg's fixed point, 4:2:0
  chroma with its edge padding and rounding, 8x8 DCT, the IJG tables scaled by
  quality (Annex K of ITU-T T.81), its "fancy" triangular chroma upsampling. The
  DCTs here are exact where libjpeg's are 13-bit fixed point, so a coefficient at
  a rounding edge can land one step apart: on average within 0.6 grey levels of
  Pillow's (tests/evaluate/test_corruption.py);
* pixelate (Pillow's BOX resize down, then up): the BOX weights, rounding
  after each pass, and nearest-pixel enlargement (what BOX does when enlarging);
* glass blur: the release's pixel "swap" writes through a numpy view, so it
  copies (see :func:`_glass_sources`); reproduced, as the published sets have it;
* frost: the release blends a random crop of one of five frost photographs
  shipped as files. Given ``frost_images=`` (a folder of such pictures) crops
  are drawn from them (resized by 0.2 for the CIFAR table, as the release
  does). By default five procedural sheets of twice the image's side stand in,
  drawn afresh per batch, each image a random crop of a random sheet: crystal
  needles (sparse points smeared along three directions 60 degrees apart) over
  a plasma fractal, sheet k scaled to the per-channel mean and standard
  deviation of photograph k (``FROST_STATS``, measured from the files).

Against the ``imagecorruptions`` package (ImageNet-C parameters) the
deterministic types agree to within 0.1 grey level on average (JPEG 0.75) and
the random ones in the distribution of their per-picture statistics; its
elastic transform is another parametrisation, so that one has no reference.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)
TABLES = ("cifar", "imagenet")
SMALL_MAX = 84  # larger side <= 84 px: CIFAR-10-C table; round(sqrt(32 * 224)) = 85 and up: ImageNet-C


def _zooms(*ranges):
    # np.arange as the release calls it: its float end points (1.06 included, 1.16 not) are part of the table
    return tuple(tuple(np.arange(*r).tolist()) for r in ranges)


# Parameter tables of the release, severity 1..5 (make_cifar_c.py / make_imagenet_c.py).
PARAMS = {
    "gaussian_noise": {"cifar": (0.04, 0.06, 0.08, 0.09, 0.10), "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38)},
    "shot_noise": {"cifar": (500, 250, 100, 75, 50), "imagenet": (60, 25, 12, 5, 3)},
    "impulse_noise": {"cifar": (0.01, 0.02, 0.03, 0.05, 0.07), "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27)},
    # (disk radius, anti-alias sigma)
    "defocus_blur": {"cifar": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
                     "imagenet": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))},
    # (sigma, max shuffle distance, iterations)
    "glass_blur": {"cifar": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
                   "imagenet": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))},
    # (radius, sigma)
    "motion_blur": {"cifar": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
                    "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))},
    "zoom_blur": {"cifar": _zooms((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),
                  "imagenet": _zooms((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03))},
    # (flake mean, flake std, zoom, threshold, blur radius, blur sigma, image weight)
    "snow": {"cifar": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                       (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
             "imagenet": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                          (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))},
    # (image weight, frost weight)
    "frost": {"cifar": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
              "imagenet": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))},
    # (fog weight, plasma wibble decay)
    "fog": {"cifar": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
            "imagenet": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))},
    "brightness": {"cifar": (0.05, 0.1, 0.15, 0.2, 0.3), "imagenet": (0.1, 0.2, 0.3, 0.4, 0.5)},
    "contrast": {"cifar": (0.75, 0.5, 0.4, 0.3, 0.15), "imagenet": (0.4, 0.3, 0.2, 0.1, 0.05)},
    # (displacement scale alpha, displacement smoothness sigma, affine jitter), as fractions of the unit length
    "elastic_transform": {"cifar": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
                          "imagenet": ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))},
    "pixelate": {"cifar": (0.95, 0.9, 0.85, 0.75, 0.65), "imagenet": (0.6, 0.5, 0.4, 0.3, 0.25)},
    "jpeg_compression": {"cifar": (80, 65, 58, 50, 40), "imagenet": (25, 18, 15, 10, 7)},
}
# The frost photographs are resized by this factor before cropping (make_cifar_c.py: 0.2; ImageNet-C: none).
FROST_SCALE = {"cifar": 0.2, "imagenet": 1.0}
# Per-channel RGB mean and std (0..1) of frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg, the five
# photographs the release draws from (np.random.randint(5)); measured from the files shipped with ImageNet-C.
FROST_STATS = (
    ((0.305, 0.585, 0.650), (0.106, 0.065, 0.060)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.540, 0.599, 0.648), (0.112, 0.112, 0.117)),
    ((0.441, 0.484, 0.528), (0.174, 0.170, 0.163)),
)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as cv2's RGB2GRAY and JFIF use


def table_for(side: int) -> str:
    """The parameter table for images whose larger side is ``side`` pixels (see the module docstring)."""
    return "cifar" if side <= SMALL_MAX else "imagenet"


def check_name(name) -> str:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; the 15 are: {', '.join(CORRUPTIONS)}")
    return name


def check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity {severity!r} is outside the range 1..5")
    return int(severity)


# ---------------------------------------------------------------- helpers


def _fold(idx: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Indices outside 0..n-1 mapped back in: ``nearest`` (edge repeated), ``reflect101``
    (d c b | a b c d | c b a: OpenCV's default border) or ``reflect`` (c b a | a b c d | d c b: scipy's)."""
    if mode == "nearest" or n == 1:
        return idx.clamp(0, n - 1)
    period = 2 * n - 2 if mode == "reflect101" else 2 * n
    m = idx.remainder(period)
    return torch.where(m >= n, period - (mode == "reflect") - m, m)


def _pad(x: torch.Tensor, dim: int, pad: int, mode: str) -> torch.Tensor:
    """``x`` padded by ``pad`` on both sides of ``dim``; any pad, even wider than the image."""
    n = x.shape[dim]
    return x.index_select(dim, _fold(torch.arange(-pad, n + pad, device=x.device), n, mode))


def _filter_matrix(n: int, kernel: torch.Tensor, mode: str, device) -> torch.Tensor:
    """(n, n) matrix M with ``M @ signal`` = the signal padded by ``mode`` and correlated with the odd
    ``kernel``: the border is folded into M, so a kernel wider than the image costs no more."""
    r = len(kernel) // 2
    out = torch.arange(n, device=device)[:, None].expand(n, len(kernel))
    src = _fold(out + torch.arange(-r, r + 1, device=device)[None], n, mode)
    m = torch.zeros(n, n, dtype=torch.float64, device=device)
    m.index_put_((out.reshape(-1), src.reshape(-1)), kernel.to(device, torch.float64).repeat(n), accumulate=True)
    return m


def _sep(x: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
    """``rows @ x @ cols.T`` for every plane of (..., H, W), with (h', H) and (w', W) matrices (None: identity)."""
    if cols is not None:
        x = x @ cols.T.to(x.dtype)  # PyTorch folds this into one (N H, W) x (W, w') product
    if rows is not None:
        x = rows.to(x.dtype) @ x
    return x


def _filter(x: torch.Tensor, k_rows: torch.Tensor, k_cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Separable correlation of every channel of (..., H, W) with odd 1-D kernels (rows: along H)."""
    h, w = x.shape[-2:]
    return _sep(x, _filter_matrix(h, k_rows, mode, x.device), _filter_matrix(w, k_cols, mode, x.device))


@functools.lru_cache(maxsize=64)
def _gauss_matrix(n: int, sigma: float, mode: str, truncate: float, device) -> torch.Tensor:
    return _filter_matrix(n, _gauss_kernel(sigma, truncate), mode, device).float()


def _gauss_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised."""
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def _gaussian(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian per channel (its defaults: edge mode ``nearest``, truncate 4)."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    return _sep(x, _gauss_matrix(h, sigma, mode, truncate, x.device), _gauss_matrix(w, sigma, mode, truncate, x.device))


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB, or the image itself when it has one channel."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _uniform(shape, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device) * (high - low) + low


def _motion(x: torch.Tensor, radius: float, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur (see the module docstring). x (B, C, H, W), angle (B,) degrees."""
    b, _, h, w = x.shape
    width = 2 * math.ceil(radius) + 1
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    k = (k / k.sum()).tolist()
    # Sorted by angle, the images that shift tap t by the same (dy, dx) are consecutive: each run
    # is one slice of the edge-padded batch, with no per-pixel index arithmetic.
    order = torch.argsort(angle)
    theta = torch.deg2rad(angle[order].double().cpu())
    dy = torch.ceil(i[:, None] * torch.sin(theta)[None] - 0.5).long()  # (taps, B)
    dx = torch.ceil(i[:, None] * torch.cos(theta)[None] - 0.5).long()
    top, left = max(0, -int(dy.min())), max(0, -int(dx.min()))
    padded = F.pad(x[order], (left, max(0, int(dx.max())), top, max(0, int(dy.max()))), mode="replicate")
    out = torch.zeros_like(x)
    for t in range(width):
        change = ((dy[t, 1:] != dy[t, :-1]) | (dx[t, 1:] != dx[t, :-1])).nonzero().flatten().add(1).tolist()
        for start, end in zip([0, *change], [*change, b]):
            oy, ox = top + int(dy[t, start]), left + int(dx[t, start])
            out[start:end].add_(padded[start:end, :, oy : oy + h, ox : ox + w], alpha=k[t])
    result = torch.empty_like(out)
    result[order] = out
    return result


@functools.lru_cache(maxsize=256)
def _zoom_matrix(n: int, zoom: float, device) -> torch.Tensor:
    """(n, n) matrix of the release's ``clipped_zoom`` along one axis: the central
    ``ceil(n / zoom)`` pixels enlarged by ``zoom`` (``scipy.ndimage.zoom``, order 1: output
    length ``round(m * zoom)``, end pixels aligned), centre-cropped back to n."""
    m = math.ceil(n / zoom)
    top = (n - m) // 2
    size = round(m * zoom)  # Python's round, as scipy computes the output shape
    trim = (size - n) // 2
    j = torch.arange(trim, trim + n, dtype=torch.float64)
    src = top + j * ((m - 1) / (size - 1) if size > 1 else 0.0)
    i0 = src.floor().clamp(0, n - 1)
    frac = src - i0
    i0 = i0.long()
    out = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    out.index_put_((rows, i0), 1 - frac, accumulate=True)
    out.index_put_((rows, (i0 + 1).clamp(max=n - 1)), frac, accumulate=True)
    return out.float().to(device)


def _clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """The release's ``clipped_zoom`` of (..., H, W), both axes."""
    h, w = x.shape[-2:]
    return _sep(x, _zoom_matrix(h, zoom, x.device), _zoom_matrix(w, zoom, x.device))


def _plasma(batch: int, size: int, decay: float, g: torch.Generator, device) -> torch.Tensor:
    """Diamond-square height maps (B, size, size) in [0, 1], ``size`` a power of two.

    The release's ``plasma_fractal``: on a torus, each square's centre and each
    diamond's centre is the mean of its four corners plus uniform noise in
    ``+-wibble**2`` (wibble 100, divided by ``decay`` at each halving of the step).
    """
    m = torch.zeros(batch, size, size, device=device)  # float32: ~1e-7 of the map's range
    step, wibble = size, 100.0

    def noisy_mean(total):
        return total / 4 + wibble * _uniform(total.shape, -wibble, wibble, g, device)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        total = corners + corners.roll(-1, 1)
        total = total + total.roll(-1, 2)
        m[:, half::step, half::step] = noisy_mean(total)
        centres = m[:, half::step, half::step]
        corners = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = noisy_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        m[:, half::step, 0::step] = noisy_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step //= 2
        wibble /= decay
    low = m.amin(dim=(1, 2), keepdim=True)
    m = m - low
    return m / m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _standardize(t: torch.Tensor) -> torch.Tensor:
    mean = t.mean(dim=(1, 2, 3), keepdim=True)
    return (t - mean) / t.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)


# ---------------------------------------------------------------- the 15 corruptions
# Each maps float (B, C, H, W) in [0, 1] and the severity's parameters to float (clipped later).


def gaussian_noise(x, c, g, **_):
    return x + c * torch.randn(x.shape, generator=g, device=x.device)


def shot_noise(x, c, g, **_):
    return torch.poisson(x * c, generator=g) / c


def impulse_noise(x, c, g, **_):
    # skimage random_noise(mode="s&p"): each value (each channel on its own) flips with
    # probability c, to 1 or 0 with equal odds
    flip = torch.rand(x.shape, generator=g, device=x.device) < c
    salt = torch.rand(x.shape, generator=g, device=x.device) < 0.5
    return torch.where(flip, salt.to(x.dtype), x)


def _disk(radius: float, alias_blur: float, device) -> torch.Tensor:
    """The release's defocus kernel: a disk on a grid of half-width max(8, radius), normalised,
    then smoothed by OpenCV's Gaussian (3x3, or 5x5 above radius 8; border reflect101)."""
    half = 8 if radius <= 8 else int(radius)
    t = torch.arange(-half, half + 1, dtype=torch.float64, device=device)
    disk = ((t[:, None] ** 2 + t[None] ** 2) <= radius**2).double()
    disk /= disk.sum()
    size = 3 if radius <= 8 else 5
    s = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(s**2) / (2 * alias_blur**2))
    k = (k / k.sum()).to(device)
    kernel = _filter(disk[None, None], k, k, "reflect101")[0, 0]
    # the grid is 17x17 even for a radius of 0.3: drop its all-zero border rows and columns (same result)
    keep = int((kernel.abs().sum(0) > 0).nonzero().min())
    keep = min(keep, int((kernel.abs().sum(1) > 0).nonzero().min()))
    return kernel[keep : kernel.shape[0] - keep, keep : kernel.shape[1] - keep].float()


def defocus_blur(x, p, g, **_):
    kernel = _disk(p[0], p[1], x.device)
    r = kernel.shape[0] // 2
    b, c, h, w = x.shape
    y = _pad(_pad(x.reshape(1, b * c, h, w), 2, r, "reflect101"), 3, r, "reflect101")
    # every plane its own group: PyTorch's depthwise path, ~5x faster on CPU than one-channel conv
    weight = kernel.view(1, 1, *kernel.shape).expand(b * c, 1, *kernel.shape)
    return F.conv2d(y, weight, groups=b * c).view(b, c, h, w)


def _glass_sources(batch: int, h: int, w: int, delta: int, iterations: int, g: torch.Generator, device) -> torch.Tensor:
    """Where each pixel comes from after the release's local pixel shuffle, (B, H * W).

    The release walks (h, w) from (H - delta, W - delta) down to (delta + 1, delta + 1),
    row by row, with dx, dy uniform in -delta..delta-1, and writes
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` (h' = h + dy, w' = w + dx). On an
    (H, W, 3) array ``x[h, w]`` is a view, so this is no swap: pixel (h, w) takes the
    value of (h', w') and (h', w') keeps it (a pixel can be copied several times, another
    lost). ImageNet-C and CIFAR-10-C were made so, and so is this. The walk is sequential
    (a later step can copy an already copied pixel); it runs once for the whole batch.
    """
    hs = np.arange(h - delta, delta, -1)
    ws = np.arange(w - delta, delta, -1)
    offsets = torch.randint(-delta, delta, (iterations, len(hs), len(ws), 2, batch), generator=g, device=device)
    offsets = offsets.cpu().numpy()
    pos = (hs[:, None] * w + ws[None, :]).reshape(-1)  # step -> flat position
    other = ((hs[None, :, None, None] + offsets[:, :, :, 1]) * w + (ws[None, None, :, None] + offsets[:, :, :, 0]))
    other = other.reshape(iterations, -1, batch)
    source = np.repeat(np.arange(h * w)[:, None], batch, axis=1)  # (position, image): original pixel there
    images = np.arange(batch)
    for it in range(iterations):
        for p, q in zip(pos, other[it]):
            source[p] = source[q, images]
    return torch.from_numpy(source.T.copy()).to(device)


def glass_blur(x, p, g, **_):
    sigma, delta, iterations = p
    x = torch.floor(_gaussian(x, sigma) * 255) / 255  # the release stores the first blur as uint8
    b, c, h, w = x.shape
    perm = _glass_sources(b, h, w, delta, iterations, g, x.device)
    x = x.flatten(2).gather(2, perm[:, None, :].expand(b, c, h * w)).view(b, c, h, w)
    return _gaussian(x, sigma)


def motion_blur(x, p, g, **_):
    angle = _uniform(x.shape[0], -45.0, 45.0, g, x.device)
    return _motion(x, p[0], p[1], angle)


def zoom_blur(x, zooms, g, **_):
    out = x.clone()
    for z in zooms:
        out += _clipped_zoom(x, z)
    return out / (len(zooms) + 1)


def snow(x, p, g, **_):
    loc, scale, zoom, threshold, radius, sigma, weight = p
    b, _, h, w = x.shape
    flakes = loc + scale * torch.randn((b, 1, h, w), generator=g, device=x.device)
    flakes = _clipped_zoom(flakes, zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
    flakes = torch.floor(flakes.clamp(0, 1) * 255) / 255  # the release passes the layer through a uint8 PNG
    flakes = _motion(flakes, radius, sigma, _uniform(b, -135.0, -45.0, g, x.device))
    flakes = torch.round(flakes * 255) / 255
    x = weight * x + (1 - weight) * torch.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + flakes + flakes.flip(2, 3)


_frost_cache: dict = {}


def _frost_photos(folder, device) -> list[torch.Tensor]:
    """Float (3, h, w) pictures of a folder (png/jpg), sorted by name, cached per device."""
    from PIL import Image

    key = (str(folder), str(device))
    if key not in _frost_cache:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise ValueError(f"frost_images={str(folder)!r} holds no .png/.jpg pictures")
        photos = []
        for f in files:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
            photos.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(device))
        _frost_cache[key] = photos
    return _frost_cache[key]


def _photo_sheets(folder, h: int, w: int, scale: float, device) -> list[torch.Tensor]:
    sheets = []
    for photo in _frost_photos(folder, device):
        ph, pw = photo.shape[-2:]
        # the release's 0.2 (CIFAR table); a picture smaller than the image is enlarged to 1.1 times it
        s = max(scale, 1.1 * h / ph if ph * scale < h else 0, 1.1 * w / pw if pw * scale < w else 0)
        if s != 1:
            size = (max(h, round(ph * s)), max(w, round(pw * s)))
            photo = F.interpolate(photo[None], size=size, mode="bilinear", align_corners=False)[0]
        sheets.append(photo)
    return sheets


def _procedural_sheets(h: int, w: int, scale: float, g: torch.Generator, device) -> list[torch.Tensor]:
    """Five frost sheets of twice the image's size, sheet k with the colour statistics of photograph k."""
    sh, sw = 2 * h, 2 * w
    n = len(FROST_STATS)
    radius = max(1, round(18 * scale))  # needle length: ~18 px in 224-px ImageNet crops, 5x less in CIFAR's
    points = torch.rand((n, 1, sh, sw), generator=g, device=device)
    seeds = (torch.rand((n, 1, sh, sw), generator=g, device=device) < 0.03) * points
    base = _uniform(n, 0.0, 180.0, g, device)
    needles = sum(_motion(seeds, radius, radius / 2, base + 60 * k) for k in range(3))
    cloud = _plasma(n, _next_pow2(max(sh, sw)), 2.0, g, device)[:, None, :sh, :sw]
    texture = _standardize(_standardize(needles) + 0.5 * _standardize(cloud))
    stats = torch.tensor(FROST_STATS, device=device)  # (5, 2, 3)
    sheets = (stats[:, 0, :, None, None] + stats[:, 1, :, None, None] * texture).clamp(0, 1)
    return list(sheets)


def _crops(sheets: list[torch.Tensor], b: int, h: int, w: int, g: torch.Generator, device) -> torch.Tensor:
    """(B, 3, h, w): each image a random h x w crop of a randomly chosen sheet (3, >= h, >= w)."""
    pick = torch.randint(len(sheets), (b,), generator=g, device=device)
    corner = torch.rand((b, 2), generator=g, device=device)
    out = torch.empty(b, 3, h, w, device=device)
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    for k, sheet in enumerate(sheets):
        idx = (pick == k).nonzero().flatten()
        top = (corner[idx, 0] * (sheet.shape[1] - h + 1)).long().clamp(max=sheet.shape[1] - h)
        left = (corner[idx, 1] * (sheet.shape[2] - w + 1)).long().clamp(max=sheet.shape[2] - w)
        out[idx] = sheet[:, top[:, None, None] + rows[None, :, None], left[:, None, None] + cols[None, None, :]].transpose(0, 1)
    return out


def frost(x, p, g, table="imagenet", frost_images=None, **_):
    b, c, h, w = x.shape
    scale = FROST_SCALE[table]
    if frost_images is not None:
        sheets = _photo_sheets(frost_images, h, w, scale, x.device)
    else:
        sheets = _procedural_sheets(h, w, scale, g, x.device)
    layer = _crops(sheets, b, h, w, g, x.device)
    if c == 1:
        layer = _gray(layer)
    return p[0] * x + p[1] * layer


def fog(x, p, g, **_):
    weight, decay = p
    b, _, h, w = x.shape
    haze = _plasma(b, _next_pow2(max(h, w)), decay, g, x.device)[:, None, :h, :w]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + weight * haze) * peak / (peak + weight)


def brightness(x, c, g, **_):
    # V of HSV raised by c: H and S fixed, so every channel scales with V (a black pixel has S = 0)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(max=1.0)
    return torch.where(v > 0, x * (v_new / v.clamp_min(1e-12)), v_new.expand_as(x))


def contrast(x, c, g, **_):
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


def elastic_transform(x, p, g, table="imagenet", **_):
    b, _, h, w = x.shape
    unit = max(h, w) * (244 / 224 if table == "imagenet" else 1)  # the release's IMSIZE / its 244
    alpha, sigma, jitter = (v * unit for v in p)
    # 1. a random affine map: three points around the centre moved by up to `jitter` pixels
    cx, cy, s = w // 2, h // 2, min(h, w) // 3
    src = torch.tensor([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=torch.float64, device=x.device)
    dst = src + _uniform((b, 3, 2), -jitter, jitter, g, x.device).double()
    return _elastic(x, src, dst, alpha, sigma, g)


def _elastic(x, src, dst, alpha, sigma, g, fields=None):
    """Affine warp taking points ``src`` (3, 2) to ``dst`` (B, 3, 2) (OpenCV warpAffine: bilinear,
    border reflect101), then a displacement of every pixel by ``alpha`` times a Gaussian-smoothed
    (``sigma``, truncate 3, reflect) uniform field (scipy map_coordinates order 1, reflect)."""
    b, _, h, w = x.shape
    dev = x.device
    ones = torch.ones(3, 1, dtype=torch.float64, device=dev)
    forward = torch.linalg.solve(torch.cat([src, ones], 1), dst).transpose(1, 2)  # (B, 2, 3): dst = A src + t
    inv = torch.linalg.inv(forward[:, :, :2]).float().view(b, 2, 2, 1, 1)
    yy = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    # source of output pixel (x, y): inverse @ ((x, y) - t), then grid_sample's [-1, 1] (corners aligned)
    ux = xx - forward[:, 0, 2].float().view(b, 1, 1)
    uy = yy - forward[:, 1, 2].float().view(b, 1, 1)
    sx = inv[:, 0, 0] * ux + inv[:, 0, 1] * uy
    sy = inv[:, 1, 0] * ux + inv[:, 1, 1] * uy
    grid = torch.stack([sx * (2 / (w - 1)) - 1, sy * (2 / (h - 1)) - 1], -1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    # 2. the smooth random displacement field
    if fields is None:
        fields = _uniform((b, 2, h, w), -1.0, 1.0, g, dev)
    fields = _gaussian(fields, sigma, "reflect", truncate=3.0)
    dx, dy = (fields * alpha).unbind(1)
    grid = torch.stack([(xx + dx + 0.5) * (2 / w) - 1, (yy + dy + 0.5) * (2 / h) - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _pil_box_weights(n_in: int, n_out: int) -> torch.Tensor:
    """Pillow's BOX resampling weights (n_out, n_in) for shrinking (its precompute_coeffs)."""
    scale = n_in / n_out
    support = 0.5 * scale
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    for j in range(n_out):
        centre = (j + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        for i in range(lo, hi):
            t = (i - centre + 0.5) / scale
            weights[j, i] = 1.0 if -0.5 < t <= 0.5 else 0.0
    return weights / weights.sum(1, keepdim=True)


def _nearest_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in) 0/1 matrix picking input ``floor((j + 0.5) n_in / n_out)`` for output j."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out).floor().long()
    return F.one_hot(src, n_in).double()


def pixelate(x, c, g, **_):
    h, w = x.shape[-2:]
    small_h, small_w = max(1, int(h * c)), max(1, int(w * c))
    q = torch.round(x * 255)  # Pillow resizes 8-bit pictures, rounding after each pass
    q = torch.floor(_sep(q, None, _pil_box_weights(w, small_w).to(x.device)) + 0.5)
    q = torch.floor(_sep(q, _pil_box_weights(h, small_h).to(x.device), None) + 0.5)
    return _sep(q, _nearest_matrix(h, small_h).to(x.device), _nearest_matrix(w, small_w).to(x.device)) / 255


# JPEG: Annex K tables of ITU-T T.81 and the IJG quality scaling (libjpeg jcparam.c).
_LUMA_Q = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
           14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA_Q = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
             47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32


def _quant_table(base, quality: int, device) -> torch.Tensor:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    t = (torch.tensor(base, dtype=torch.float64) * scale + 50).div(100).floor().clamp(1, 255)  # baseline: <= 255
    return t.view(8, 8).to(device)


def _dct_matrix(device) -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None] + 1) * n[:, None] * math.pi / 16) * 0.5
    d[0] /= math.sqrt(2)
    return d.to(device)  # orthonormal DCT-II: coefficients = D block D^T


def _fix(v: float) -> int:
    return int(v * 65536 + 0.5)  # libjpeg's 16-bit fixed-point constants (jccolor.c, jdcolor.c)


def _jpeg_plane(plane: torch.Tensor, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Encode and decode one 0..255 plane (N, h, w), h and w multiples of 8: DCT, quantise, invert.

    The 2-D DCT of an 8x8 block is ``kron(D, D)`` applied to its 64 values: one matrix product for all blocks.
    """
    n, h, w = plane.shape
    blocks = (plane - 128).view(n, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(-1, 64)
    dct = torch.kron(d, d)
    q = q.reshape(64)
    coef = blocks @ dct.T / q
    coef = (coef.abs() + 0.5).floor_().copysign_(coef)  # libjpeg rounds halves away from zero
    rec = (torch.round((coef * q) @ dct) + 128).clamp(0, 255)
    return rec.view(n, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(n, h, w)


def _pad_to(plane: torch.Tensor, multiple: int) -> torch.Tensor:
    """(N, h, w) with the last row and column repeated up to multiples of ``multiple`` (libjpeg's edge expansion)."""
    h, w = plane.shape[-2:]
    return _pad_end(plane, -h % multiple, -w % multiple)


def _pad_end(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, h, w) with its last row repeated ``rows`` times and its last column ``cols`` times."""
    if not rows and not cols:
        return x
    return F.pad(x[:, None], (0, cols, 0, rows), mode="replicate")[:, 0]


def _upsample_fancy(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """libjpeg's h2v2 "fancy" upsampling: 3/4 nearer + 1/4 farther sample per axis, its rounding."""
    up = torch.cat([c[:, :1], c[:, :-1]], 1)
    down = torch.cat([c[:, 1:], c[:, -1:]], 1)
    rows = torch.stack([3 * c + up, 3 * c + down], 2).flatten(1, 2)  # (N, 2h', w'), 4x scale
    left = torch.cat([rows[:, :, :1], rows[:, :, :-1]], 2)
    right = torch.cat([rows[:, :, 1:], rows[:, :, -1:]], 2)
    out = torch.stack([torch.floor((3 * rows + left + 8) / 16), torch.floor((3 * rows + right + 7) / 16)], 3).flatten(2, 3)
    return out[:, :h, :w]


def jpeg_compression(x, quality, g, **_):
    c, h, w = x.shape[1:]
    dev = x.device
    d = _dct_matrix(dev)
    v = torch.round(x.double() * 255)
    luma_q = _quant_table(_LUMA_Q, quality, dev)
    if c == 1:
        return (_jpeg_plane(_pad_to(v[:, 0], 8), luma_q, d)[:, None, :h, :w] / 255).float()
    r, gr, bl = v.unbind(1)
    one, half = 65536, 32768
    y = torch.floor((_fix(0.299) * r + _fix(0.587) * gr + _fix(0.114) * bl + half) / one)
    cb = torch.floor((-_fix(0.16874) * r - _fix(0.33126) * gr + half * bl + 128 * one + half - 1) / one)
    cr = torch.floor((half * r - _fix(0.41869) * gr - _fix(0.08131) * bl + 128 * one + half - 1) / one)
    y = _jpeg_plane(_pad_to(y, 8), luma_q, d)[:, :h, :w]
    # 4:2:0 as libjpeg does it: columns repeated to whole 16-pixel units and rows to an even count,
    # 2x2 averages with its alternating bias 1, 2, chroma rows repeated to whole blocks; decoded
    # chroma is upsampled from its real (h/2, w/2) part
    chroma = []
    for plane in (cb, cr):
        p = _pad_end(plane, h % 2, -w % 16)
        total = p[:, 0::2, 0::2] + p[:, 0::2, 1::2] + p[:, 1::2, 0::2] + p[:, 1::2, 1::2]
        bias = 1 + torch.arange(total.shape[2], device=dev) % 2
        small = _pad_end(torch.floor((total + bias) / 4), -total.shape[1] % 8, 0)
        small = _jpeg_plane(small, _quant_table(_CHROMA_Q, quality, dev), d)
        chroma.append(_upsample_fancy(small[:, : (h + 1) // 2, : (w + 1) // 2], h, w) - 128)
    cb, cr = chroma
    rgb = torch.stack([y + torch.floor((_fix(1.402) * cr + half) / one),
                       y + torch.floor((-_fix(0.34414) * cb - _fix(0.71414) * cr + half) / one),
                       y + torch.floor((_fix(1.772) * cb + half) / one)], 1)
    return (rgb.clamp(0, 255) / 255).float()


_OPS = {name: globals()[name] for name in CORRUPTIONS}


def params(name: str, severity: int, table: str):
    """The published parameters of ``name`` at ``severity`` in ``table`` ("cifar" | "imagenet")."""
    if table not in TABLES:
        raise ValueError(f"parameter table {table!r} is not one of {', '.join(TABLES)}")
    return PARAMS[check_name(name)][table][check_severity(severity) - 1]


@torch.no_grad()
def corrupt(images: torch.Tensor, name: str, severity: int, *, generator: torch.Generator | None = None,
            seed: int = 0, table: str | None = None, frost_images=None) -> torch.Tensor:
    """One ImageNet-C corruption at one severity, for a whole batch on its device.

    Args:
        images: (B, C, H, W) uint8, or float in [0, 1]; C = 1 or 3; H, W >= 8.
        name: one of :data:`CORRUPTIONS`.
        severity: 1..5.
        generator: a ``torch.Generator`` on the images' device; default one seeded with ``seed``.
        seed: seeds the default generator.
        table: ``"cifar"`` or ``"imagenet"`` parameters; default :func:`table_for` of max(H, W).
        frost_images: a folder of frost pictures (the release's frost1.png ... frost5.jpg)
            to crop from; default a procedural texture (see the module docstring).

    Returns:
        (B, C, H, W) uint8: values in 0..255 are truncated as the release's ``np.uint8`` does.
    """
    check_name(name)
    check_severity(severity)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor with C = 1 or 3; got {got}")
    if min(images.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8x8 pixels; got {tuple(images.shape[-2:])}")
    table = table_for(max(images.shape[-2:])) if table is None else table
    p = params(name, severity, table)
    if generator is None:
        generator = torch.Generator(device=images.device).manual_seed(int(seed))
    if images.dtype == torch.uint8:
        x = images.float() / 255
    elif images.is_floating_point():
        x = images.float().clamp(0, 1)
    else:
        raise ValueError(f"images must be uint8 or floating point; got {images.dtype}")
    if images.shape[0] == 0:
        return torch.zeros(images.shape, dtype=torch.uint8, device=images.device)
    out = _OPS[name](x, p, generator, table=table, frost_images=frost_images)
    # + 1e-3: float32 error must not drop an exact level (e.g. 1.0 * 255 = 254.99998) below it
    return torch.floor(out.clamp(0, 1) * 255 + 1e-3).to(torch.uint8)
