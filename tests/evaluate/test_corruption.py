"""ImageNet-C corruptions (Hendrycks & Dietterich 2019) and the corruption evaluation (000 §4.4, Fig. 5)."""

import colorsys
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from stsmooth.data.imageset import ImageSet
from stsmooth.evaluate import corruption_ops as ops
from stsmooth.evaluate.corruption import (
    CORRUPTIONS,
    check_precomputed,
    compare,
    corrupt,
    corruption,
    imagenet_c_set,
    read_cifar_c,
    write_outputs,
)


def scenes(n, size, seed=0, channels=3):
    """Smooth colour fields with three sharp-edged ellipses and a little noise: image-like test pictures."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, channels, 4, 4, generator=g), size=(size, size),
                                        mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    for _ in range(3):
        c = torch.rand(n, 2, 1, 1, generator=g) * size
        r = (0.1 + 0.25 * torch.rand(n, 2, 1, 1, generator=g)) * size
        inside = ((yy - c[:, 0]) / r[:, 0]) ** 2 + ((xx - c[:, 1]) / r[:, 1]) ** 2 < 1
        x = torch.where(inside[:, None], torch.rand(n, channels, 1, 1, generator=g), x)
    x = x + 0.03 * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


# ---------------------------------------------------------------- bad input


def test_unknown_corruption_lists_the_15():
    with pytest.raises(ValueError) as err:
        corrupt(scenes(1, 8), "rain", 1)
    message = str(err.value)
    assert "'rain'" in message and all(name in message for name in CORRUPTIONS) and "\n" not in message


@pytest.mark.parametrize("severity", [0, 6, 2.5, True])
def test_severity_outside_1_to_5_names_the_range(severity):
    with pytest.raises(ValueError, match=r"severity .* outside the range 1\.\.5"):
        corrupt(scenes(1, 8), "fog", severity)


def test_parameter_table_by_size():
    # CIFAR-10-C's values up to 84 px (geometric mean of 32 and 224 is 84.7), ImageNet-C's from 85 px
    assert [ops.table_for(s) for s in (8, 28, 32, 84, 85, 96, 224, 512)] == ["cifar"] * 4 + ["imagenet"] * 4
    assert ops.params("gaussian_noise", 5, "cifar") == 0.10 and ops.params("gaussian_noise", 5, "imagenet") == 0.38
    with pytest.raises(ValueError, match="parameter table 'tiny'"):
        ops.params("fog", 1, "tiny")


# ---------------------------------------------------------------- the operations, re-derived


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_is_a_pure_function_of_the_seed(name):
    x = scenes(3, 16, channels=3)
    a, b = corrupt(x, name, 3, seed=5), corrupt(x, name, 3, seed=5)
    assert a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)  # every type at severity 3 changes these pictures
    assert torch.equal(corrupt(x.float() / 255, name, 3, seed=5), a)  # float input in [0, 1] is the same picture
    deterministic = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"}
    assert torch.equal(corrupt(x, name, 3, seed=6), a) == (name in deterministic)


@pytest.mark.parametrize("name", ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"])
def test_grey_images_match_the_grey_rgb_picture(name):
    # the release works on RGB; a grey picture has R = G = B, and a 1-channel image must get the same values
    grey = scenes(2, 24, channels=1)
    assert torch.equal(corrupt(grey, name, 4), corrupt(grey.expand(-1, 3, -1, -1), name, 4)[:, :1])


def test_contrast_by_hand():
    x = scenes(2, 8)
    c = ops.params("contrast", 2, "cifar")
    f = x.double() / 255
    mean = f.mean(dim=(2, 3), keepdim=True)
    expected = torch.floor(((f - mean) * c + mean).clamp(0, 1) * 255 + 1e-3).to(torch.uint8)
    assert torch.equal(corrupt(x, "contrast", 2), expected)


def test_brightness_is_v_plus_c_in_hsv():
    x = scenes(1, 8)
    c = ops.params("brightness", 5, "cifar")
    expected = torch.empty_like(x)
    for i in range(8):
        for j in range(8):
            h, s, v = colorsys.rgb_to_hsv(*(x[0, :, i, j].double() / 255).tolist())
            rgb = colorsys.hsv_to_rgb(h, s, min(1.0, v + c))
            expected[0, :, i, j] = torch.tensor([math.floor(min(1, max(0, t)) * 255 + 1e-3) for t in rgb])
    assert (corrupt(x, "brightness", 5).int() - expected.int()).abs().max() <= 1  # float32 vs float64 at a level edge


def _pil(x, fn):
    out = []
    for im in x:
        a = im.permute(1, 2, 0).numpy()
        pil = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
        arr = np.asarray(fn(pil))
        out.append(torch.from_numpy((arr[..., None] if arr.ndim == 2 else arr).copy()).permute(2, 0, 1))
    return torch.stack(out)


@pytest.mark.parametrize("size, table", [(28, "cifar"), (37, "cifar"), (64, "imagenet")])
def test_pixelate_is_pillows_box_resize_down_and_up(size, table):
    x = scenes(4, size)
    for s in (1, 3, 5):
        c = ops.params("pixelate", s, table)
        small = (int(size * c), int(size * c))
        ref = _pil(x, lambda im, small=small: im.resize(small, Image.BOX).resize((size, size), Image.BOX))
        assert torch.equal(corrupt(x, "pixelate", s, table=table), ref)


@pytest.mark.parametrize("size, channels", [(28, 1), (28, 3), (40, 3)])
def test_jpeg_matches_pillow(size, channels):
    # Tolerance: libjpeg's DCTs are 13-bit fixed point (jfdctint/jidctint), ours exact, so a
    # coefficient within ~1/Q of a rounding edge can quantise one step apart and shift its 8x8
    # block. Measured over these sizes and all 10 qualities: mean |difference| <= 0.6 levels,
    # >= 89% of values within 1 level (the fewest at quality 80 on noisy pictures). A missing
    # colour conversion, chroma subsampling or quantisation table is off by several levels on
    # average; a chroma average rounded up instead of libjpeg's alternating 1, 2 bias fails too.
    x = scenes(4, size, channels=channels)
    for table in ("cifar", "imagenet"):
        for s in (1, 3, 5):
            q = ops.params("jpeg_compression", s, table)

            def roundtrip(im, q=q):
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=q)
                return Image.open(io.BytesIO(buf.getvalue()))

            d = (corrupt(x, "jpeg_compression", s, table=table).float() - _pil(x, roundtrip).float()).abs()
            assert d.mean() <= 0.75 and (d <= 1).float().mean() >= 0.85, (table, q, d.mean())


def test_gaussian_shot_and_impulse_noise_statistics():
    grey = torch.full((40, 3, 32, 32), 128, dtype=torch.uint8)  # 122,880 values, 128/255 = 0.502
    n = grey.numel()
    c = ops.params("gaussian_noise", 5, "cifar")
    d = corrupt(grey, "gaussian_noise", 5).double() / 255 - 128 / 255
    # floor shifts the mean by -0.5 level and adds 1/12 level^2 of variance (uniform rounding)
    assert abs(d.mean() + 0.5 / 255) < 4 * c / math.sqrt(n)
    assert abs(d.var() - c**2 - 1 / 12 / 255**2) < 4 * c**2 * math.sqrt(2 / n)
    lam = ops.params("shot_noise", 5, "cifar")  # Poisson(x c) / c: mean x, variance x / c
    v = corrupt(grey, "shot_noise", 5).double() / 255
    x = 128 / 255
    assert abs(v.mean() + 0.5 / 255 - x) < 4 * math.sqrt(x / lam / n) + 0.5 / 255
    assert abs(v.var() / (x / lam) - 1) < 0.03
    p = ops.params("impulse_noise", 5, "cifar")  # each value flips with probability p, to 0 or 255 alike
    v = corrupt(grey, "impulse_noise", 5)
    flipped = (v != 128).double().mean()
    assert abs(flipped - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert abs((v == 255).double().mean() / flipped - 0.5) < 0.03


def test_defocus_and_zoom_keep_a_flat_picture_and_defocus_is_the_disk():
    flat = torch.full((1, 3, 20, 20), 77, dtype=torch.uint8)
    for s in (1, 5):
        assert torch.equal(corrupt(flat, "defocus_blur", s), flat) and torch.equal(corrupt(flat, "zoom_blur", s), flat)
    # radius 3 (ImageNet-C severity 1): the disk x^2 + y^2 <= 9 has 29 points, smoothed by a 3x3
    # Gaussian of sigma 0.1 (centre weight 1 - 2 exp(-50), i.e. 1 in float)
    kernel = ops._disk(3, 0.1, "cpu")
    r = kernel.shape[0] // 2
    t = torch.arange(-r, r + 1).float()
    disk = ((t[:, None] ** 2 + t[None] ** 2) <= 9).float()
    assert r <= 4 and torch.allclose(kernel, disk / 29, atol=1e-7)


def test_motion_blur_smears_a_point_along_the_angle():
    x = torch.zeros(2, 1, 21, 21)
    x[:, :, 10, 10] = 1.0
    out = ops._motion(x, 3, 2.0, torch.tensor([0.0, 90.0]))
    k = torch.exp(-torch.arange(7.0) ** 2 / 8)
    k = k / k.sum()
    # tap i reads i pixels along the angle, so the point reappears i pixels against it
    assert torch.allclose(out[0, 0, 10, 4:11].flip(0), k, atol=1e-6) and torch.allclose(out[1, 0, 4:11, 10].flip(0), k, atol=1e-6)
    assert math.isclose(float(out.sum()), 2.0, rel_tol=1e-6)


def test_glass_blur_walk_is_the_releases_loop():
    # The release: for h, w from the bottom-right, x[h, w] takes x[h + dy, w + dx] (on an RGB array the
    # "swap" writes through a view, so (h + dy, w + dx) keeps its value); re-run here literally.
    b, h, w, delta, iterations = 3, 9, 10, 2, 2
    g = torch.Generator().manual_seed(1)
    src = ops._glass_sources(b, h, w, delta, iterations, g, "cpu")
    draws = torch.randint(-delta, delta, (iterations, h - 2 * delta, w - 2 * delta, 2, b),
                          generator=torch.Generator().manual_seed(1)).numpy()
    for image in range(b):
        x = np.arange(h * w).reshape(h, w, 1).repeat(3, axis=2)
        for it in range(iterations):
            for i, hh in enumerate(range(h - delta, delta, -1)):
                for j, ww in enumerate(range(w - delta, delta, -1)):
                    dx, dy = draws[it, i, j, :, image]
                    x[hh, ww], x[hh + dy, ww + dx] = x[hh + dy, ww + dx], x[hh, ww]
        assert np.array_equal(src[image].numpy(), x[..., 0].reshape(-1))


def test_elastic_matches_scipy_affine_then_displacement():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64).float()
    src = torch.tensor([[13.0, 13.0], [13.0, 3.0], [3.0, 3.0]], dtype=torch.float64)
    dst = src + torch.tensor([[[0.7, -0.4], [0.2, 0.5], [-0.3, 0.1]]], dtype=torch.float64)
    fields = torch.rand(1, 2, 16, 16) * 2 - 1
    out = ops._elastic(x, src, dst, 1.5, 2.0, None, fields=fields)
    # scipy: output (r, c) reads input at inverse-affine(c, r); OpenCV reflect101 is scipy's "mirror"
    a = np.linalg.solve(np.c_[src.numpy(), np.ones(3)], dst[0].numpy()).T  # dst = A src + t, points (x, y)
    inv = np.linalg.inv(a[:, :2])
    rc_matrix = inv[::-1, ::-1]  # (x, y) -> (row, col) order
    rc_offset = -(inv @ a[:, 2])[::-1]
    warped = ndimage.affine_transform(x[0, 0].double().numpy(), rc_matrix, rc_offset, order=1, mode="mirror")
    dx, dy = (ndimage.gaussian_filter(f.double().numpy(), 2.0, mode="reflect", truncate=3.0) * 1.5 for f in fields[0])
    rr, cc = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    ref = ndimage.map_coordinates(warped, [rr + dy, cc + dx], order=1, mode="reflect")
    assert np.abs(out[0, 0].double().numpy() - ref).max() < 1e-4


def test_fog_plasma_and_flat_black():
    g = torch.Generator().manual_seed(0)
    m = ops._plasma(3, 32, 2.0, g, "cpu")
    assert m.shape == (3, 32, 32) and torch.allclose(m.amin(dim=(1, 2)), torch.zeros(3))
    assert torch.allclose(m.amax(dim=(1, 2)), torch.ones(3))
    black = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    assert torch.equal(corrupt(black, "fog", 5), black)  # x * max / (max + c) with max = 0


def test_frost_from_a_photo_folder_and_procedural_frost(tmp_path):
    Image.new("RGB", (64, 48), (200, 100, 50)).save(tmp_path / "frost1.png")
    x = scenes(3, 16)
    a, b = ops.params("frost", 4, "cifar")
    expected = torch.floor((a * x.double() / 255 + b * torch.tensor([200, 100, 50]).view(1, 3, 1, 1) / 255).clamp(0, 1)
                           * 255 + 1e-3).to(torch.uint8)
    assert torch.equal(corrupt(x, "frost", 4, frost_images=tmp_path), expected)
    # procedural frost on black pictures: only the frost layer, on average the five photographs' mean colour
    layer = corrupt(torch.zeros(400, 3, 16, 16, dtype=torch.uint8), "frost", 1, table="imagenet").double() / 255
    a, b = ops.params("frost", 1, "imagenet")
    photo_mean = torch.tensor([m for m, _ in ops.FROST_STATS], dtype=torch.float64).mean(0)
    assert torch.allclose(layer.mean(dim=(0, 2, 3)) / b, photo_mean, atol=0.03)


# ---------------------------------------------------------------- against imagecorruptions (reference)

_DETERMINISTIC_TOL = {"defocus_blur": 0.1, "zoom_blur": 0.1, "brightness": 0.1, "contrast": 0.1, "pixelate": 0.0,
                      "jpeg_compression": 0.75}


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "elastic_transform"])
def test_against_imagecorruptions(name, monkeypatch):
    """imagecorruptions (Apache-2.0, ImageNet-C parameters) as the reference, where installed.

    Deterministic types: mean |pixel difference| within _DETERMINISTIC_TOL levels (float
    rounding; JPEG: see test_jpeg_matches_pillow). Random types, per picture: mean |corrupted -
    clean|, mean and std of the corrupted picture; the paired differences (same clean picture)
    must average within 4 standard errors + 0.5 level (uint8 truncation, kernel rounding) of 0.
    Frost is compared as a distribution of the photographs' crops, also in photo mode.
    elastic_transform is left out: imagecorruptions replaced ImageNet-C's (affine + displacement,
    published table) with its own parametrisation, so there is no common reference.
    """
    ic = pytest.importorskip("imagecorruptions")
    import imagecorruptions.corruptions as icc
    import skimage.filters

    monkeypatch.setattr(np, "float_", np.float64, raising=False)  # removed in numpy 2 (fog)

    def gaussian(*args, multichannel=None, **kwargs):  # skimage >= 0.19 renamed it (glass blur)
        return skimage.filters.gaussian(*args, channel_axis=-1 if multichannel else None, **kwargs)

    monkeypatch.setattr(icc, "gaussian", gaussian)
    # the reference's glass blur is a Python loop per picture: 32 px keeps it quick; 64 px elsewhere so
    # that its motion blur (which drops taps that leave the picture) keeps all 41
    size = 32 if name == "glass_blur" else 64
    x = scenes(16, size, seed=1)
    np.random.seed(0)
    for s in range(1, 6):
        mine = corrupt(x, name, s, seed=s, table="imagenet").double()
        ref = torch.stack([torch.from_numpy(ic.corrupt(im.permute(1, 2, 0).numpy(), corruption_name=name, severity=s))
                           .permute(2, 0, 1) for im in x]).double()
        if name in _DETERMINISTIC_TOL:
            assert (mine - ref).abs().mean() <= _DETERMINISTIC_TOL[name], s
            continue
        clean = x.double()

        def stats(y, clean=clean):
            return torch.stack([(y - clean).abs().mean((1, 2, 3)), y.mean((1, 2, 3)), y.std((1, 2, 3))], 1)

        d = stats(mine) - stats(ref)
        assert ((d.mean(0)).abs() <= 4 * d.std(0) / math.sqrt(len(x)) + 0.5).all(), (s, d.mean(0), d.std(0))


# ---------------------------------------------------------------- precomputed sets


def _cifar_c(root, names, n=4, classes=3, size=8, labels=None):
    """A CIFAR-10-C layout: <name>.npy (5 n, size, size, 3), severity s images all of value 10 s + name index."""
    for k, name in enumerate(names):
        arr = np.concatenate([np.full((n, size, size, 3), 10 * s + k, np.uint8) for s in range(1, 6)])
        np.save(root / f"{name}.npy", arr)
    labels = np.arange(n) % classes if labels is None else np.asarray(labels)
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))


def test_read_cifar_c_layout(tmp_path):
    _cifar_c(tmp_path, ["fog", "snow"])
    cell = read_cifar_c(tmp_path, "snow", 3, num_classes=3)
    assert cell.images.shape == (4, 3, 8, 8) and bool((cell.images == 31).all())
    assert cell.labels.tolist() == [0, 1, 2, 0]
    assert check_precomputed(tmp_path, ["fog", "snow"]) == "npy"


def test_precomputed_missing_cells_name_the_first_missing_path(tmp_path):
    _cifar_c(tmp_path, ["gaussian_noise", "fog"])
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "shot_noise.npy")):
        check_precomputed(tmp_path, ["gaussian_noise", "shot_noise", "impulse_noise", "fog"])
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "labels.npy")):
        read_cifar_c(tmp_path, "fog", 1)
    folders = tmp_path / "imagenet_c"
    for s in (1, 2, 4):
        (folders / "fog" / str(s) / "n01").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=str(folders / "fog" / "3")):
        check_precomputed(folders, ["fog"])


def test_labels_that_do_not_match_the_class_count_name_both(tmp_path):
    _cifar_c(tmp_path, ["fog"], n=100, classes=100)
    with pytest.raises(ValueError, match=r"has 100 classes but the checkpoint's model has 10"):
        read_cifar_c(tmp_path, "fog", 2, num_classes=10)
    for c in ("a", "b", "c"):
        (tmp_path / "inc" / "fog" / "1" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "inc" / "fog" / "1" / c / "0.png")
    with pytest.raises(ValueError, match=r"3 class folders\) has 3 classes but the checkpoint's model has 10"):
        imagenet_c_set(tmp_path / "inc", "fog", 1, num_classes=10)
    with pytest.raises(ValueError, match="the test set has 2 classes but the checkpoint's model has 10"):
        corruption({"m": _threshold(0)}, _dark_and_bright(), corruptions=["fog"], num_classes=10)


# ---------------------------------------------------------------- the evaluation


def _threshold(level):
    """Two classes by mean brightness: class 1 when the mean value exceeds ``level`` (0..255)."""
    def predict(x):
        m = x.float().mean(dim=(1, 2, 3)) * (1 if x.dtype == torch.uint8 else 255) - level
        return torch.stack([-m, m], 1)
    return predict


def _dark_and_bright(n=6):
    images = torch.cat([torch.full((n, 1, 8, 8), 40), torch.full((n, 1, 8, 8), 200)]).to(torch.uint8)
    return ImageSet(images, torch.tensor([0] * n + [1] * n), ["dark", "bright"])


def test_corruption_top1_by_hand():
    # 8 px -> CIFAR-10-C table. brightness adds c = .05 .1 .15 .2 .3 to V: dark 40 -> 52.75, 65.5,
    # 78.25, 91, 116.5 (bright stay > 200). Contrast keeps a flat picture. At threshold 100 only
    # brightness 5 fails, on the dark half; at threshold 60 brightness 2..5 fail on it.
    test = _dark_and_bright()
    res = corruption({"A": _threshold(100), "B": _threshold(60)}, test, corruptions=["brightness", "contrast"],
                     batch_size=5)
    assert res["clean"] == {"A": 100.0, "B": 100.0} and res["table"] == "cifar" and res["images"] == 12
    assert res["top1"]["A"] == {"brightness": {"1": 100.0, "2": 100.0, "3": 100.0, "4": 100.0, "5": 50.0},
                                "contrast": {str(s): 100.0 for s in range(1, 6)}}
    assert list(res["top1"]["B"]["brightness"].values()) == [100.0, 50.0, 50.0, 50.0, 50.0]
    assert res["mean"]["A"] == 95.0 and res["per_severity"]["A"]["5"] == 75.0
    assert res["per_corruption"]["B"]["brightness"] == 60.0
    # A against baseline B on brightness: differences 0 50 50 50 0; errors 0 0 0 0 50 vs 0 50 50 50 50
    cmp = compare(res, res, "A", "B")
    assert cmp["difference"]["brightness"] == {"1": 0.0, "2": 50.0, "3": 50.0, "4": 50.0, "5": 0.0}
    assert cmp["mean_difference"] == 15.0 and cmp["per_severity_difference"]["2"] == 25.0
    assert math.isnan(cmp["mCE"])  # contrast: no baseline error, CE undefined
    only = corruption({"A": _threshold(100), "B": _threshold(60)}, test, corruptions=["brightness"])
    cmp = compare(only, only, "A", "B")
    assert cmp["mCE"] == 25.0 and cmp["relative_mCE"] == 25.0  # 50 / 200, clean errors 0


def test_generated_cells_do_not_depend_on_which_others_are_evaluated():
    seen = {}

    def recorder(tag):
        def predict(x):
            seen.setdefault(tag, []).append(x.clone())
            return torch.zeros(len(x), 2)
        return predict

    test = ImageSet(scenes(10, 12, channels=1), torch.zeros(10, dtype=torch.long), ["a", "b"])
    corruption({"r": recorder("one")}, test, corruptions=["fog"], severities=[3], batch_size=4, seed=7)
    corruption({"r": recorder("two")}, test, corruptions=["snow", "fog"], severities=[1, 3], batch_size=4, seed=7)
    corruption({"r": recorder("seed")}, test, corruptions=["fog"], severities=[3], batch_size=4, seed=8)
    fog_one = seen["one"][1::2]  # per batch: clean, fog 3
    fog_two = seen["two"][4::5]  # per batch: clean, snow 1, snow 3, fog 1, fog 3
    assert all(torch.equal(a, b) for a, b in zip(fog_one, fog_two)) and len(fog_one) == 3
    assert not torch.equal(seen["seed"][1], fog_one[0])


def test_corruption_on_precomputed_sets(tmp_path):
    # CIFAR-C layout: severity s pictures have value 10 s (+ 0 for fog), all labelled 1: threshold 25
    # calls them class 1 from s = 3 on; the clean (black) pictures are class 0 for it
    _cifar_c(tmp_path, ["fog"], n=4, labels=[1, 1, 1, 1])
    test = ImageSet(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), ["0", "1"])
    res = corruption({"m": _threshold(25)}, test, source=tmp_path, corruptions=["fog"], num_classes=2)
    assert list(res["top1"]["m"]["fog"].values()) == [0.0, 0.0, 100.0, 100.0, 100.0] and res["clean"]["m"] == 50.0
    assert res["source"] == str(tmp_path) and res["seed"] is None
    with pytest.raises(ValueError, match="has 2 classes but the checkpoint's model has 5"):
        corruption({"m": _threshold(25)}, test, source=tmp_path, corruptions=["fog"], num_classes=5)
    # ImageNet-C layout: <corruption>/<severity>/<class>/<image>, 10 px pictures resized to the model's 8
    root = tmp_path / "imagenet_c"
    for s in range(1, 6):
        for label, value in (("a_dark", 20), ("b_bright", 30 + 40 * s)):
            folder = root / "snow" / str(s) / label
            folder.mkdir(parents=True)
            Image.new("L", (10, 10), value).save(folder / "0.png")
    test = ImageSet(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])
    res = corruption({"m": _threshold(100)}, test, source=root, corruptions=["snow"], size=8, num_classes=2)
    assert list(res["top1"]["m"]["snow"].values()) == [50.0, 100.0, 100.0, 100.0, 100.0]  # bright: 70 110 150 ...


def test_outputs_json_markdown_and_heatmaps(tmp_path):
    test = _dark_and_bright()
    res = corruption({"teacher": _threshold(100)}, test, corruptions=["brightness", "contrast"], severities=[1, 5])
    base = corruption({"teacher": _threshold(60)}, test, corruptions=["brightness", "contrast"], severities=[1, 5])
    cmp = {"teacher": compare(res, base, "teacher")}
    paths = write_outputs(res, tmp_path, cmp, base, title="t")
    record = json.loads(paths["json"].read_text())
    assert record["results"]["top1"]["teacher"]["brightness"] == {"1": 100.0, "5": 50.0}
    assert record["comparison"]["teacher"]["difference"]["brightness"] == {"1": 0.0, "5": 0.0}
    assert record["comparison"]["teacher"]["mCE"] is None  # contrast: no baseline error, written as null
    md = paths["md"].read_text()
    assert "| corruption | 1 | 5 | mean |" in md and "| brightness | 100.00 | 50.00 | 75.00 |" in md
    assert "| **mean** | 100.00 | 75.00 | 87.50 |" in md
    for key in ("png", "baseline_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_eval_corruption(tmp_path, capsys):
    from stsmooth.cli import main

    run = tmp_path / "run"
    tiny = ["progress=false", "model.options.width=4", "byol.projector_hidden=16", "byol.projector_out=8",
            "byol.predictor_hidden=16", "optim.batch_size=32", "optim.steps_per_epoch=1", "optim.epochs=1",
            "optim.warmup_epochs=0", "eval.probe_size=16", f"out={run}"]
    assert main(["train", "byol_digits", *tiny]) == 0
    ckpt = str(run / "checkpoints" / "last.pt")
    capsys.readouterr()
    assert main(["eval", "corruption", ckpt, "protocol=knn", "corruptions=fog,pixelate", "severities=1,5",
                 f"baseline={ckpt}", "--out", str(tmp_path / "c")]) == 0
    record = json.loads((tmp_path / "c" / "corruption.json").read_text())
    assert set(record["results"]["top1"]) == {"teacher", "student"}
    assert record["results"]["top1"]["teacher"]["fog"].keys() == {"1", "5"}
    assert record["comparison"]["student"]["mean_difference"] == 0.0  # the baseline is the same checkpoint
    assert "| pixelate |" in capsys.readouterr().out
    assert (tmp_path / "c" / "corruption_vs_baseline.png").is_file()
    # bad input: one line, status 2
    assert main(["eval", "corruption", ckpt, "corruptions=fog,rain"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown corruption 'rain'" in err and "jpeg_compression" in err and "\n" not in err
    assert main(["eval", "corruption", ckpt, "severities=0"]) == 2
    assert "outside the range 1..5" in capsys.readouterr().err
    assert main(["eval", "corruption", ckpt, f"source={tmp_path / 'nowhere'}"]) == 2
    assert "is not a folder" in capsys.readouterr().err
