import numpy as np
import pytest
import torch

from stsmooth.data.imageset import ImageSet


def _set(n=6):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return ImageSet(images, torch.arange(n) % 3, ["a", "b", "c"])


def test_fields_and_len():
    s = _set()
    assert len(s) == 6 and s.num_classes == 3
    assert s.labels.dtype == torch.int64
    assert "6 images 3x2x2" in repr(s)


@pytest.mark.parametrize("idx", [[4, 1], np.array([4, 1]), torch.tensor([4, 1])])
def test_subset_by_index(idx):
    sub = _set().subset(idx)
    assert sub.images[:, 0, 0, 0].tolist() == [4, 1]
    assert sub.labels.tolist() == [1, 1]
    assert sub.classes == ["a", "b", "c"]


def test_subset_by_mask_and_errors():
    s = _set()
    mask = torch.tensor([True, False, True, False, False, True])
    assert s.subset(mask).images[:, 0, 0, 0].tolist() == [0, 2, 5]
    with pytest.raises(ValueError, match="boolean mask"):
        s.subset(torch.tensor([True]))
    with pytest.raises(ValueError, match="out of range"):
        s.subset([6])
    with pytest.raises(ValueError, match="integer or bool"):
        s.subset(torch.tensor([0.5]))


def test_to_and_unlabeled():
    s = _set()
    assert s.to("cpu") is s
    u = s.unlabeled()
    assert (u.labels == -1).all() and u.num_classes == 3 and torch.equal(u.images, s.images)


def test_validation_errors():
    with pytest.raises(ValueError, match="uint8 tensor"):
        ImageSet(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="uint8 tensor"):
        ImageSet(torch.zeros(2, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="integer tensor"):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2), ["a"])
    with pytest.raises(ValueError, match="labels span 0..2 but there are 2 classes"):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"])
    with pytest.raises(ValueError, match="labels span -2"):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([-2, 0]), ["a", "b"])
    # -1 (unlabeled) is allowed even without classes
    assert ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([-1, -1]), []).num_classes == 0


def test_to_float_is_the_one_uint8_conversion():
    from stsmooth.data.imageset import to_float

    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = to_float(x)
    assert out.dtype == torch.float32 and out.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert x.flatten().tolist() == [0, 51, 255]  # the input is not touched
    f = torch.rand(2, 1, 3, 3)
    assert to_float(f) is f  # float32 in [0, 1] passes as it is (the models' augmented inputs)
    noisy = torch.tensor([-0.5, 1.5], dtype=torch.float64)
    assert to_float(noisy).dtype == torch.float32 and to_float(noisy).tolist() == [-0.5, 1.5]  # cast, not clamped
