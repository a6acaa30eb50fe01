import pytest
import torch

from stsmooth.data.imageset import ImageSet
from stsmooth.data.loader import DeviceLoader, epoch_order, order_seed


def _indexed(n=50):
    """Images whose pixels encode their index, labels = index % 10."""
    idx = torch.arange(n)
    images = torch.stack([idx % 256, idx // 256], 1).to(torch.uint8).view(n, 2, 1, 1)
    return ImageSet(images, idx % 10, [str(i) for i in range(10)])


def _ids(batch_images):
    return (batch_images[:, 0, 0, 0].long() + 256 * batch_images[:, 1, 0, 0].long()).tolist()


def _epoch(loader):
    return [(_ids(x), y.tolist()) for x, y in loader]


def test_batches_shapes_and_coverage():
    s = _indexed(53)
    loader = DeviceLoader(s, batch_size=8, drop_last=False, seed=3)
    batches = list(loader)
    assert len(loader) == len(batches) == 7 and [len(y) for _, y in batches][-1] == 5
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (8, 2, 1, 1) and y.dtype == torch.int64
    seen = sum((_ids(x) for x, _ in batches), [])
    assert sorted(seen) == list(range(53))  # every image exactly once
    assert all(yy == [i % 10 for i in ids] for ids, yy in _epoch(loader))  # labels follow their images
    dropped = DeviceLoader(s, batch_size=8, seed=3)
    assert len(dropped) == 6 and len(set(sum((_ids(x) for x, _ in dropped), []))) == 48


def test_order_is_pure_function_of_seed_and_epoch():
    s = _indexed()
    a, b = DeviceLoader(s, 10, seed=1), DeviceLoader(s, 10, seed=1)
    a.set_epoch(4)
    _epoch(a)  # history does not matter
    b.set_epoch(4)
    assert _epoch(a) == _epoch(b)
    a.set_epoch(5)
    assert _epoch(a) != _epoch(b)
    c = DeviceLoader(s, 10, seed=2)
    c.set_epoch(4)
    assert _epoch(c) != _epoch(b)
    # the permutation is the documented generator draw
    g = torch.Generator().manual_seed(order_seed(1, 4))
    assert sum((ids for ids, _ in _epoch(b)), []) == torch.randperm(50, generator=g).tolist()
    assert order_seed(0, 1) != order_seed(1, 0)


def test_no_shuffle_and_inputs():
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1)
    loader = DeviceLoader(images, 5, shuffle=False, drop_last=False)
    assert [x.flatten().tolist() for x, _ in loader] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert all((y == -1).all() for _, y in loader)  # bare images are unlabeled
    pair = DeviceLoader((images, torch.arange(12) % 3), 4, shuffle=False)
    assert next(iter(pair))[1].tolist() == [0, 1, 2, 0]


def test_sharding_is_disjoint():
    n, world = 50, 3
    shards = [epoch_order(n, seed=7, epoch=2, rank=r, world_size=world) for r in range(world)]
    assert all(len(s) == 16 for s in shards)
    flat = torch.cat(shards)
    assert len(set(flat.tolist())) == 48
    padded = [epoch_order(n, seed=7, epoch=2, drop_last=False, rank=r, world_size=world) for r in range(world)]
    assert all(len(s) == 17 for s in padded) and set(torch.cat(padded).tolist()) == set(range(n))
    loaders = [DeviceLoader(_indexed(n), 4, seed=7, rank=r, world_size=world) for r in range(world)]
    for ld, shard in zip(loaders, shards):
        ld.set_epoch(2)
        assert sum((ids for ids, _ in _epoch(ld)), []) == shard[:16].tolist()
    with pytest.raises(ValueError, match="rank 3 is not in 0..2"):
        epoch_order(n, rank=3, world_size=3)


def test_errors():
    s = _indexed(10)
    with pytest.raises(ValueError, match="gives no batch from 10 images"):
        DeviceLoader(s, 11)
    with pytest.raises(ValueError, match="uint8 tensor"):
        DeviceLoader(torch.zeros(4, 1, 2, 2), 2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        DeviceLoader(s, 0)
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        DeviceLoader((s.images, torch.zeros(3)), 2)
    with pytest.raises(ValueError, match="must be >= 0"):
        order_seed(-1, 0)


def test_torch_gather_path_matches_numpy_path():
    """The accelerator path (index_select on device) yields the same batches as the CPU NumPy path."""
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 3, 5, 7), dtype=torch.uint8, generator=rng)  # 105-byte rows: no wide view
    for data in ((images, torch.arange(37) % 4), _indexed(40)):
        a = DeviceLoader(data, 6, drop_last=False, seed=9)
        b = DeviceLoader(data, 6, drop_last=False, seed=9)
        b._cpu = None  # force the torch index_select path used on CUDA
        a.set_epoch(3), b.set_epoch(3)
        pairs = list(zip(a, b))
        assert len(pairs) == len(a) and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in pairs)
        src = data[0] if isinstance(data, tuple) else data.images
        assert torch.equal(torch.cat([pa[0] for pa, _ in pairs]), src[a.order()])


def test_loader_for_picks_the_loader_of_the_set(tmp_path):
    import numpy as np
    from PIL import Image

    from stsmooth.data.folder import FolderLoader, FolderSet
    from stsmooth.data.registry import loader_for

    s = _indexed(10)
    direct = DeviceLoader(s, 3, seed=2, drop_last=False, rank=1, world_size=2)
    via = loader_for(s, 3, seed=2, drop_last=False, rank=1, world_size=2)
    assert isinstance(via, DeviceLoader) and [torch.equal(a[0], b[0]) for a, b in zip(via, direct)] == [True] * 2
    for i in range(4):
        (tmp_path / "c").mkdir(exist_ok=True)
        Image.fromarray(np.full((2, 2), i, dtype=np.uint8)).save(tmp_path / "c" / f"{i}.png")
    folder = loader_for(FolderSet(tmp_path, mode="L"), 2, shuffle=False, num_workers=0)
    assert isinstance(folder, FolderLoader)
    assert [b[0][:, 0, 0, 0].tolist() for b in folder] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="ImageSet or a FolderSet; got list"):
        loader_for([1, 2], 2)
