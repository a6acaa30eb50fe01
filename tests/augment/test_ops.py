"""The batched ops against PIL's reference formulas, and the per-sample dispatcher."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from stsmooth.augment import color, geometry, randaugment
from stsmooth.augment.dispatch import apply_per_sample


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a[:8] //= 3  # a skewed histogram, so equalize has work to do
    return a


def _ours(a):
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255


def _pil(img):
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


F = torch.tensor([0.3])
# (ours, PIL, tolerance in 8-bit levels): PIL rounds to uint8 at every step
CASES = {
    "equalize": (lambda x: randaugment.equalize(x), ImageOps.equalize, 0),
    "posterize": (lambda x: randaugment.posterize(x, torch.tensor([5.0])), lambda i: ImageOps.posterize(i, 5), 0),
    "solarize": (lambda x: color.solarize(x, torch.tensor([100 / 255])), lambda i: ImageOps.solarize(i, 100), 0.01),
    "autocontrast": (randaugment.autocontrast, ImageOps.autocontrast, 1.0),
    "sharpness": (lambda x: randaugment.sharpness(x, F), lambda i: ImageEnhance.Sharpness(i).enhance(0.3), 1.5),
    "color": (lambda x: color.adjust_saturation(x, F), lambda i: ImageEnhance.Color(i).enhance(0.3), 1.5),
    "contrast": (lambda x: color.adjust_contrast(x, F), lambda i: ImageEnhance.Contrast(i).enhance(0.3), 1.5),
    "brightness": (lambda x: color.adjust_brightness(x, F), lambda i: ImageEnhance.Brightness(i).enhance(0.3), 1.0),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_pil(name, image):
    ours, pil, levels = CASES[name]
    diff = (ours(_ours(image)) - _pil(pil(Image.fromarray(image)))).abs().max() * 255
    assert diff <= levels + 1e-3, f"{name}: {diff:.2f} levels from PIL"


def test_equalize_leaves_constant_images_alone():
    x = torch.full((2, 3, 8, 8), 100 / 255)
    torch.testing.assert_close(randaugment.equalize(x), x)


def test_hue_matches_a_rotation_of_the_colour_wheel():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = color.adjust_hue(red, torch.tensor([1 / 3, -1 / 3]))  # a third of a turn: red -> green / blue
    torch.testing.assert_close(out[:, :, 0, 0], torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(randaugment.OPS))
def test_every_randaugment_op_keeps_shape_and_range(name, channels):
    op = randaugment.OPS[name]
    x = torch.rand(6, channels, 8, 8)
    y = x if op is None else op(x, torch.linspace(0, 1, 6))
    assert y.shape == x.shape and y.dtype == x.dtype and 0 <= y.min() and y.max() <= 1


def test_apply_per_sample_equals_a_loop():
    x = torch.rand(20, 3, 5, 5)
    choice = torch.randint(0, 3, (20,))
    params = torch.rand(20)
    ops = [None, lambda im, p: im * p.view(-1, 1, 1, 1), lambda im, p: 1 - im]
    out = apply_per_sample(x, choice, ops, params)
    for i in range(20):
        expected = x[i] if choice[i] == 0 else ops[choice[i]](x[i : i + 1], params[i : i + 1])[0]
        torch.testing.assert_close(out[i], expected)


def test_apply_per_sample_refuses_choices_off_the_host():
    with pytest.raises(ValueError, match="choice must be a CPU tensor.*meta"):
        apply_per_sample(torch.rand(2, 1, 3, 3), torch.zeros(2, dtype=torch.long, device="meta"), [None], torch.rand(2))


SYNCS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy")


@pytest.mark.parametrize("augment", ["rand_augment", "color_jitter"])
def test_per_sample_dispatch_reads_no_tensor_back(augment, monkeypatch):
    # the calls that would wait for a GPU (as tests/training/test_no_sync.py counts them)
    calls = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self_, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self_, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    fn = randaugment.rand_augment if augment == "rand_augment" else color.color_jitter
    torch.manual_seed(0)
    y = fn(torch.rand(64, 3, 8, 8))
    assert calls == []
    assert y.shape == (64, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment", ["rand_augment", "color_jitter", "gaussian_blur"])
def test_per_sample_dispatch_never_synchronises_cuda(augment):
    fn = {"rand_augment": randaugment.rand_augment, "color_jitter": color.color_jitter,
          "gaussian_blur": lambda x: color.random_gaussian_blur(x, 0.5)}[augment]
    x = torch.rand(64, 3, 8, 8, device="cuda")
    fn(x)  # warm-up: first-call allocations are not the step's
    torch.cuda.set_sync_debug_mode("error")  # any stream/device sync raises
    try:
        y = fn(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert y.device.type == "cuda" and y.shape == x.shape


@pytest.mark.parametrize("augment", ["rand_augment", "color_jitter", "gaussian_blur"])
def test_per_sample_augmentations_are_a_function_of_the_seed(augment):
    fn = {"rand_augment": randaugment.rand_augment, "color_jitter": color.color_jitter,
          "gaussian_blur": lambda x: color.random_gaussian_blur(x, 0.5)}[augment]
    x = torch.rand(64, 3, 8, 8)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(fn(x))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_rand_augment_gives_each_image_its_own_ops():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16).expand(32, -1, -1, -1)
    y = randaugment.rand_augment(x, num_ops=2)
    assert len({tuple((v * 1e4).round().flatten().tolist()) for v in y}) > 20


def test_cutout_square_size_and_fill():
    torch.manual_seed(0)
    y = randaugment.cutout(torch.zeros(256, 1, 32, 32), max_fraction=0.5, fill=0.5)
    area = (y == 0.5).float().mean(dim=(1, 2, 3))
    assert area.max() <= 0.25 + 1e-6  # at most a 16x16 square of 32x32
    assert 0.02 < area.mean() < 0.1  # side ~ U(0, 16), often clipped at the border
    assert ((y == 0) | (y == 0.5)).all()


def test_random_resized_crop_boxes_stay_inside_and_cover_scale():
    torch.manual_seed(0)
    # a ramp in x: the crop's mean width is readable from the output's range
    x = torch.linspace(0, 1, 64).expand(512, 1, 64, 64).contiguous()
    y = geometry.random_resized_crop(x, 16, scale=(0.08, 1.0))
    width = y[..., 0, -1] - y[..., 0, 0]  # ~ crop width / image width
    assert (width > 0).all() and width.max() <= 1
    assert width.min() < 0.3 and width.max() > 0.9
    full = geometry.random_resized_crop(x[:4], 64, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(full, x[:4], atol=1e-5, rtol=0)


def test_colour_jitter_off_and_grayscale_on_one_channel():
    x = torch.rand(8, 1, 8, 8)
    assert torch.equal(color.color_jitter(x, p=0.0), x)
    assert torch.equal(color.random_grayscale(x, p=1.0), x)
    assert torch.equal(color.color_jitter(x, 0.0, 0.0, 0.4, 0.1, p=1.0), x)  # saturation/hue: no-ops at C = 1
    rgb = torch.rand(8, 3, 8, 8)
    gray = color.random_grayscale(rgb, p=1.0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_blur_kernel_is_odd_and_about_ten_percent():
    assert [color.blur_kernel_size(s) for s in (8, 32, 96, 224)] == [3, 3, 9, 23]


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_gaussian_blur_reads_nothing_back_from_the_batch_device(p):
    # on the meta device any read of a value (nonzero, item, a check of sigma) raises: the draws
    # that set shapes or that kornia checks must come from the host, as on a GPU they would stall
    torch.manual_seed(0)
    y = color.random_gaussian_blur(torch.empty(8, 3, 8, 8, device="meta"), p)
    assert y.device.type == "meta" and y.shape == (8, 3, 8, 8)
