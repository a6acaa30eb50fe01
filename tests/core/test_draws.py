"""Counter-based draws (issue 12 item 1): re-derived in plain Python integers."""

import pytest
import torch

from stsmooth.core import draws

M32 = 0xFFFFFFFF


def py_word(seed, step, stream, c):
    """The module docstring's recipe, on Python ints (unsigned 32-bit words)."""
    k0, k1 = draws.step_key(seed, step, stream)
    x = (c + k0) & M32
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & M32
    x ^= k1
    x ^= x >> 15
    x = (x * 0x735A2D97) & M32
    x ^= x >> 15
    return x ^ 0x80000000


def py_mix64(z):
    M = (1 << 64) - 1
    z &= M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def test_step_key_is_the_documented_splitmix_chain():
    seed, step, stream = 12345, 7, 3
    z = py_mix64(seed ^ py_mix64(step + 0x9E3779B97F4A7C15 * (py_mix64(stream) | 1)))
    assert draws.step_key(seed, step, stream) == (z & M32, z >> 32)


@pytest.mark.parametrize("seed,step,stream", [(0, 0, 0), (1, 5, 2), (2**63 + 11, 123456, 99), (-7, 3, 1)])
def test_unit_bits_match_python_integers(seed, step, stream):
    counters = [0, 1, 2, 3, 1000, 65535, 65536, 2**31 - 1, 123456789]
    got = draws.unit_bits(seed, step, stream, torch.tensor(counters)).tolist()
    assert got == [py_word(seed, step, stream, c) for c in counters]
    key = draws.step_key(seed, step, stream)
    assert got == [draws.word(key, c) for c in counters]


def test_draws_are_a_function_of_the_unit_only():
    # a shard of the counters gets exactly the words of the full range at those counters
    full = draws.unit_bits(3, 9, 4, torch.arange(1000))
    shard = draws.unit_bits(3, 9, 4, torch.arange(512, 1000))
    assert torch.equal(full[512:], shard)
    # and other steps / streams / seeds give other words
    assert not torch.equal(full, draws.unit_bits(3, 10, 4, torch.arange(1000)))
    assert not torch.equal(full, draws.unit_bits(3, 9, 5, torch.arange(1000)))
    assert not torch.equal(full, draws.unit_bits(4, 9, 4, torch.arange(1000)))


def test_keep_threshold_resolution():
    assert draws.keep_threshold(0.0) == 0
    assert draws.keep_threshold(1.0) == 2**32
    assert draws.keep_threshold(0.5) == 2**31
    assert draws.keep_threshold(0.999) == int(0.999 * 2**32) == 4290672328
    # P(keep) = threshold / 2**32 is within 2**-32 of p
    for p in (0.999, 0.7, 0.123456789):
        assert abs(draws.keep_threshold(p) / 2**32 - p) < 2**-32
    with pytest.raises(ValueError, match="preserve_prob=1.5"):
        draws.keep_threshold(1.5)


def test_moves_compares_unsigned_words_with_the_threshold():
    c = torch.arange(5000)
    words = draws.unit_bits(1, 2, 0, c)
    for p in (0.0, 0.3, 0.5, 0.999, 1.0):
        want = words >= draws.keep_threshold(p)
        assert torch.equal(draws.moves(1, 2, 0, c, p), want)
        assert torch.equal(draws.keep(1, 2, 0, c, p), ~want)
    # words above 2**31 exist, so the signed-compare trick is exercised
    assert (words >= 2**31).any() and (words < 2**31).any()


def test_law_is_bernoulli_p_including_p_0999():
    c = torch.arange(2_000_000)
    for p in (0.5, 0.999):
        kept = draws.keep(5, 1, 0, c, p).double().mean().item()
        sd = (p * (1 - p) / c.numel()) ** 0.5
        assert abs(kept - p) < 5 * sd, (p, kept)
    # uniform words: each of the 32 bits is set half of the time
    w = draws.unit_bits(5, 1, 0, c)
    for b in range(32):
        frac = ((w >> b) & 1).double().mean().item()
        assert abs(frac - 0.5) < 5 * (0.25 / c.numel()) ** 0.5, b


def test_consecutive_steps_are_uncorrelated():
    c = torch.arange(1_000_000)
    a = draws.unit_uniforms(9, 0, 1, c)
    b = draws.unit_uniforms(9, 1, 1, c)
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(r) < 5 / c.numel() ** 0.5
    assert ((a >= 0) & (a < 1)).all()


def test_bad_counters():
    with pytest.raises(ValueError, match="integer tensor"):
        draws.unit_bits(0, 0, 0, torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*31\)"):
        draws.unit_bits(0, 0, 0, torch.tensor([2**31]))
    with pytest.raises(ValueError, match="step=-1"):
        draws.step_key(0, -1, 0)
