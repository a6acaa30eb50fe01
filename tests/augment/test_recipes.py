"""Every recipe: contract (shape, dtype, range), per-sample randomness, seeding, options."""

import pytest
import torch

from stsmooth import augment

RANDOM = [n for n in augment.names() if n != "eval"]
CASES = [(1, 8), (3, 32)]


def _opts(name, channels):
    # mean_teacher scales its noise by the dataset std, which must match the channels
    return {"std": "digits"} if name == "mean_teacher" and channels == 1 else {}


def _batch(b, c, s, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, s, s), generator=g, dtype=torch.uint8)


def test_names_are_the_contract():
    expected = {"byol1", "byol2", "moco", "fixmatch_weak", "fixmatch_strong", "mean_teacher", "eval"}
    assert set(augment.names()) == expected


@pytest.mark.parametrize("c,s", CASES)
@pytest.mark.parametrize("name", augment.names())
def test_shape_dtype_range(name, c, s):
    aug = augment.build(name, s, **_opts(name, c))
    x = _batch(16, c, s)
    for inp in (x, x.float() / 255, x.double() / 255):
        y = aug(inp)
        assert y.shape == (16, c, s, s) and y.dtype == torch.float32
        assert y.min() >= 0 and y.max() <= 1 and torch.isfinite(y).all()


@pytest.mark.parametrize("name", augment.names())
def test_other_input_sizes_are_resized(name):
    y = augment.build(name, 24)(_batch(4, 3, 40)[..., :36])  # 40x36 in, 24x24 out
    assert y.shape == (4, 3, 24, 24)


@pytest.mark.parametrize("c,s", CASES)
@pytest.mark.parametrize("name", RANDOM)
def test_random_per_sample(name, c, s):
    aug = augment.build(name, s, **_opts(name, c))
    x = _batch(1, c, s).expand(8, -1, -1, -1)  # the same image 8 times
    torch.manual_seed(0)
    y = aug(x)
    distinct = {tuple(v.flatten().tolist()) for v in (y * 1e4).round()}
    assert len(distinct) >= 6, f"{name}: only {len(distinct)} distinct outputs of 8"


@pytest.mark.parametrize("name", augment.names())
def test_reproducible_from_seed(name):
    aug = augment.build(name, 32)
    x = _batch(16, 3, 32)
    torch.manual_seed(123)
    a = aug(x)
    torch.manual_seed(123)
    b = aug(x)
    torch.manual_seed(124)
    c = aug(x)
    assert torch.equal(a, b)
    assert torch.equal(a, c) == (name == "eval")


def test_eval_is_identity_at_size_and_centre_crops_otherwise():
    x = _batch(2, 3, 32)
    assert torch.equal(augment.build("eval", 32)(x), x.float() / 255)
    wide = torch.zeros(1, 1, 8, 16, dtype=torch.uint8)
    wide[..., 4:12] = 255  # white centre square
    assert torch.equal(augment.build("eval", 8)(wide), torch.ones(1, 1, 8, 8))
    y = augment.build("eval", 224, crop_fraction=0.875)(_batch(1, 3, 300))
    assert y.shape == (1, 3, 224, 224)


# options that turn every random step off except the flip (identity transform otherwise)
NO_CROP = {
    "byol1": {"crop_scale": (1.0, 1.0), "ratio": (1.0, 1.0), "color": False, "blur": False},
    "byol2": {"crop_scale": (1.0, 1.0), "ratio": (1.0, 1.0), "color": False, "blur": False, "solarize_p": 0.0},
    "moco": {"crop_scale": (1.0, 1.0), "ratio": (1.0, 1.0), "color": False, "blur": False},
    "fixmatch_weak": {"translate": 0.0},
    "fixmatch_strong": {"translate": 0.0, "num_ops": 0, "cutout": 0.0},
    "mean_teacher": {"shift": 0, "noise": 0.0},
}


@pytest.mark.parametrize("name", RANDOM)
def test_flip_option(name):
    x = torch.linspace(0, 1, 8).expand(64, 1, 8, 8).contiguous()  # left-right asymmetric ramp
    torch.manual_seed(0)
    kept = augment.build(name, 8, flip=False, **NO_CROP[name])(x)
    torch.testing.assert_close(kept, x, atol=1e-5, rtol=0)
    flipped = augment.build(name, 8, flip=True, **NO_CROP[name])(x)
    is_flipped = (flipped - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    is_kept = (flipped - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (is_flipped | is_kept).all() and 16 < is_flipped.sum() < 48


def test_solarize_only_in_byol2():
    x = torch.full((200, 3, 16, 16), 0.9)  # solarisation maps 0.9 -> 0.1; nothing else moves a constant
    torch.manual_seed(0)
    for name in ("byol1", "byol2", "moco"):
        y = augment.build(name, 16, color=False)(x)
        solarized = (y - 0.1).abs().amax(dim=(1, 2, 3)) < 1e-4
        assert (((y - 0.9).abs().amax(dim=(1, 2, 3)) < 1e-4) | solarized).all()
        if name == "byol2":
            assert 0.1 < solarized.float().mean() < 0.3  # p = 0.2
        else:
            assert not solarized.any()


def test_single_channel_views_skip_colour_only_ops():
    x = _batch(32, 1, 8)
    y = augment.build("byol1", 8, flip=False, blur=False, crop_scale=(1.0, 1.0), ratio=(1.0, 1.0))(x)
    assert y.shape == (32, 1, 8, 8)
    assert not torch.equal(y, x.float() / 255)  # brightness/contrast jitter still runs


def test_mean_teacher_noise_is_scaled_by_std():
    x = torch.full((64, 3, 16, 16), 0.5)
    torch.manual_seed(0)
    y = augment.build("mean_teacher", 16, shift=0, flip=False, noise=0.15, std=(0.1, 0.2, 0.3))(x)
    measured = (y - 0.5).std(dim=(0, 2, 3))
    torch.testing.assert_close(measured, torch.tensor([0.015, 0.03, 0.045]), rtol=0.05, atol=0)
    with pytest.raises(ValueError, match="channel"):
        augment.build("mean_teacher", 8)(_batch(2, 1, 8))  # cifar10's 3 stds for a 1-channel batch


def test_fixmatch_weak_translates_by_whole_pixels():
    x = torch.arange(64.0).view(1, 1, 8, 8).expand(32, 1, 8, 8) / 63
    y = augment.build("fixmatch_weak", 8, flip=False)(x)  # 12.5% of 8 = 1 px
    padded = torch.nn.functional.pad(x[:1], (1, 1, 1, 1), mode="reflect")
    shifts = torch.stack([padded[0, :, i : i + 8, j : j + 8] for i in range(3) for j in range(3)])
    match = ((y[:, None] - shifts[None]).abs().amax(dim=(2, 3, 4)) < 1e-6).any(dim=1)
    assert match.all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: augment.build("simclr", 32), "simclr"),
        (lambda: augment.build("byol1", 1), "1"),
        (lambda: augment.build("byol1", 32.0), "32.0"),
        (lambda: augment.build("eval", 32, flip=False), "flip"),
        (lambda: augment.build("byol1", 32, crop_scale=(0.5, 0.1)), "crop_scale"),
        (lambda: augment.build("byol2", 32, blur_p=1.5), "blur_p"),
        (lambda: augment.build("fixmatch_weak", 32)(torch.zeros(2, 4, 32, 32)), "got 4"),
        (lambda: augment.build("fixmatch_weak", 32)(torch.zeros(3, 32, 32)), "shape"),
        (lambda: augment.build("fixmatch_weak", 32)(torch.zeros(2, 3, 32, 32, dtype=torch.int64)), "int64"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_options_lists_effective_defaults():
    assert augment.options("moco")["crop_scale"] == (0.2, 1.0)
    assert augment.options("byol2")["solarize_p"] == 0.2
    assert augment.options("byol1")["blur_p"] == 1.0


def test_empty_batch():
    assert augment.build("fixmatch_strong", 32)(_batch(0, 3, 32)).shape == (0, 3, 32, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", augment.names())
def test_runs_on_cuda(name):
    x = _batch(16, 3, 32).cuda()
    torch.manual_seed(0)
    a = augment.build(name, 32)(x)
    torch.manual_seed(0)
    b = augment.build(name, 32)(x)
    assert a.device.type == "cuda" and a.shape == (16, 3, 32, 32) and torch.equal(a, b)


@pytest.mark.parametrize("recipe", ["byol_sts_cifar10", "moco_sts_cifar10", "fixmatch_cifar10", "mean_teacher_cifar10",
                                    "byol_sts_imagenet"])
def test_every_view_runs_in_float32_inside_bf16_autocast(recipe):
    """``train_step`` runs the method (views included) under bf16 autocast on CUDA (``amp=true``):
    a view must not let autocast turn its convolutions (blur) into bf16. It failed on an H200 with
    "Index put requires the source and destination dtypes match" in the blur of BYOL's view 2;
    CPU autocast lowers the same convolutions, so this reproduces it here."""
    from stsmooth.methods import METHODS
    from stsmooth.training import builder, config

    cfg = config.load(recipe, [])
    meta = {"in_channels": 3, "num_classes": 10, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    _, _, augment = builder.build_model(cfg, METHODS[cfg.method], meta, torch.device("cpu"))
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    for name, view in augment.items():
        torch.manual_seed(0)
        plain = view(x)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = view(x)
        assert inside.dtype == torch.float32, name
        torch.testing.assert_close(inside, plain, rtol=0, atol=0, msg=name)  # autocast changes nothing
