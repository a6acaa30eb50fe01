"""inference_copy: BatchNorm folded into the preceding convolution, channels-last weights.

Folding is exact in real arithmetic, so in float64 the folded and unfolded networks
agree to ~1e-12; in float32 they differ by rounding only. Bound used below: each
output is a chain of 4 convolutions with at most 9 * 32 = 288 products per sum; the
fold moves one multiplication per weight (W * s instead of (W x) * s), and
channels-last changes the summation order, each costing at most ~K * 2^-24 relative
per layer (K = terms per sum), so 4 * 288 * 6e-8 ~ 7e-5 of the output's scale in the
worst case; rtol 1e-4 of the largest output covers it (typical errors are ~1e-6).
"""

import pytest
import torch
from torch import nn

from stsmooth.data.imageset import ImageSet, to_float
from stsmooth.evaluate.corruption import CORRUPTIONS, corruption
from stsmooth.evaluate.features import _conv_bn_pairs, inference_copy
from stsmooth.models import fmnist_cnn
from stsmooth.models.encoder import Encoder


def _random_statistics(net, seed=0):
    """BN running statistics and affine parameters far from the identity (fresh ones fold to ~no-ops)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(0.2 + 2 * torch.rand(c, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.4 * torch.rand(c, generator=g) - 0.2)
    return net


def test_fold_of_one_conv_and_bn_by_hand():
    # 1x1 conv, weight 2, bias 1; BN mean 3, var 4 - eps, gamma 5, beta 6:
    # y = ((2x + 1) - 3) / 2 * 5 + 6 = 5x + 1
    net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[0].bias.fill_(1.0)
        net[1].running_mean.fill_(3.0)
        net[1].running_var.fill_(4.0 - net[1].eps)
        net[1].weight.fill_(5.0)
        net[1].bias.fill_(6.0)
    net.train()
    fast = inference_copy(net)
    assert isinstance(fast[1], nn.Identity) and not fast.training
    assert fast[0].weight.item() == 5.0 and fast[0].bias.item() == 1.0
    x = torch.tensor([[[[-1.0, 0.0], [0.5, 2.0]]]])
    assert torch.equal(fast(x), torch.tensor([[[[0.0, 1.0], [3.5, 11.0]]]]))
    # the original is untouched: still training, BN still there
    assert net.training and isinstance(net[1], nn.BatchNorm2d) and net[0].weight.item() == 2.0


def test_folded_fmnist_cnn_matches_the_plain_forward():
    net = _random_statistics(fmnist_cnn(num_classes=10, width=8)).eval()
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    fast = inference_copy(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fast.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref64, out64 = net.double()(x.double()), inference_copy(net.double(), channels_last=False)(x.double())
        net.float()
        ref, out = net(x), fast(x)
    assert torch.allclose(out64, ref64, rtol=0, atol=1e-10 * ref64.abs().max().item())  # the fold is exact
    assert torch.allclose(out, ref, rtol=0, atol=1e-4 * ref.abs().max().item())  # float32: rounding only
    assert not torch.equal(inference_copy(net, channels_last=False).conv1.weight, net.conv1.weight)


def test_untraceable_wrapper_is_folded_inside_and_keeps_its_methods():
    # Encoder.features converts uint8 with a dtype check, which torch.fx cannot trace
    enc = Encoder(_random_statistics(fmnist_cnn(width=4)), nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8)))
    pairs = _conv_bn_pairs(enc.eval())
    assert pairs == [(f"backbone.conv{i}", f"backbone.bn{i}") for i in range(1, 5)]  # Linear + BN1d: not a conv
    fast = inference_copy(enc)
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(fast.features(x), enc.features(x), atol=1e-5)
    assert isinstance(fast.projector[1], nn.BatchNorm1d)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the conv's output is needed unnormalised too: folding would be wrong


def test_a_conv_output_used_elsewhere_is_not_folded():
    net = _random_statistics(_Residual()).eval()
    assert _conv_bn_pairs(net) == []
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        assert torch.allclose(inference_copy(net)(x), net(x), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="model must be an nn.Module; got str"):
        inference_copy("net")


def test_corruption_top1_with_inference_copies_equals_the_plain_forward():
    # every corruption at severity 3, 200 pictures, a tiny untrained net with a linear head;
    # labels = the plain net's clean predictions, so every cell's top-1 is a non-trivial count
    torch.manual_seed(0)
    net = _random_statistics(fmnist_cnn(width=4)).eval()
    g = torch.Generator().manual_seed(2)  # smooth random pictures: pooled features of pure noise barely differ
    images = nn.functional.interpolate(torch.rand(200, 1, 5, 5, generator=g), size=(28, 28), mode="bilinear")
    images = (images * 255).round().to(torch.uint8)
    head = nn.Linear(16, 10)
    with torch.no_grad():  # a head on standardised features, so the clean predictions spread over the classes
        f = net(images.float() / 255)
        head.weight.div_(f.std(0) + 1e-3)
        head.bias.copy_(-head.weight @ f.mean(0))
        labels = head(f).argmax(1)
    test = ImageSet(images, labels, [str(k) for k in range(10)])
    fast = inference_copy(net)
    plain = corruption({"n": lambda x: head(net(to_float(x)))}, test, severities=[3], batch_size=64)
    quick = corruption({"n": lambda x: head(fast(to_float(x)))}, test, severities=[3], batch_size=64)
    assert plain["clean"]["n"] == 100.0 and len(set(labels.tolist())) > 1
    assert quick["clean"] == plain["clean"] and quick["top1"] == plain["top1"]
    cells = [plain["top1"]["n"][c]["3"] for c in CORRUPTIONS]
    assert len(cells) == 15 and min(cells) < 100.0  # corruptions do change predictions
