"""Counter-based draws (issue 12 item 1): re-derived in plain Python integers."""

import numpy as np
import pytest
import torch

from stsmooth.core import draws

M32 = 0xFFFFFFFF


def py_hash(key, c):
    """H of the module docstring, on Python ints."""
    x = (c + key[0]) & M32
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & M32
    x ^= key[1]
    x ^= x >> 15
    x = (x * 0x735A2D97) & M32
    return x ^ (x >> 15)


def py_word(seed, step, stream, c):
    """The docstring's word: byte c % 4 of H(ka, c // 4), then the top 24 bits of H(kb, c)."""
    ka, kb = draws.step_keys(seed, step, stream)
    byte = py_hash(ka, c // 4).to_bytes(4, "little")[c % 4]
    return byte * 2**24 + py_hash(kb, c) // 256


def py_mix64(z):
    M = (1 << 64) - 1
    z &= M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def test_step_key_is_the_documented_splitmix_chain():
    seed, step, stream = 12345, 7, 3
    z = py_mix64(seed ^ py_mix64(step + 0x9E3779B97F4A7C15 * (py_mix64(stream) | 1)))
    z2 = py_mix64(z ^ 0xD6E8FEB86659FD93)
    assert draws.step_keys(seed, step, stream) == ((z & M32, z >> 32), (z2 & M32, z2 >> 32))


@pytest.mark.parametrize("seed,step,stream", [(0, 0, 0), (1, 5, 2), (2**63 + 11, 123456, 99), (-7, 3, 1)])
def test_unit_bits_match_python_integers(seed, step, stream):
    counters = [0, 1, 2, 3, 1000, 65535, 65536, 2**31 - 1, 123456789]
    got = draws.unit_bits(seed, step, stream, torch.tensor(counters)).tolist()
    assert got == [py_word(seed, step, stream, c) for c in counters]
    keys = draws.step_keys(seed, step, stream)
    assert got == [draws.word(keys, c) for c in counters]
    assert draws.hash_(torch.tensor(counters, dtype=torch.int32), keys[1]).tolist() == [
        py_hash(keys[1], c) - (2**32 if py_hash(keys[1], c) >= 2**31 else 0) for c in counters]


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
    # ties (the top byte equals the threshold's) occur, so the refinement is exercised
    assert ((words >> 24) == draws.keep_threshold(0.3) >> 24).sum() > 5


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
        draws.step_keys(0, -1, 0)


def test_numpy_hash_equals_torch_hash():
    import numpy as np

    keys = draws.step_keys(8, 3, 2)
    c = np.arange(10_000, dtype=np.uint32)
    got = draws.hash_np_(np.empty_like(c), keys[0], np.empty_like(c), 2**30, c)
    want = draws.hash_(torch.arange(10_000, dtype=torch.int32) + 2**30, keys[0])
    assert np.array_equal(got.view(np.int32), want.numpy())
    assert got[5] == py_hash(keys[0], 2**30 + 5)


def test_step_keys_many_equals_step_keys_per_stream():
    """The vectorised keys (the fused kernel's per-update table) are step_keys' integers, wrap-around included."""
    streams = [0, 1, 2, 57, 10**6, 2**40]
    for seed in (0, 7, 2**63 + 5, -3):
        for step in (0, 1, 12345, 2**40):
            got = draws.step_keys_many(seed, step, streams)
            assert got.dtype == np.uint32 and got.shape == (len(streams), 4)
            for row, stream in zip(got, streams):
                (a0, a1), (b0, b1) = draws.step_keys(seed, step, stream)
                assert [int(v) for v in row] == [a0, a1, b0, b1], (seed, step, stream)


def test_step_keys_many_refuses_negative_streams():
    with pytest.raises(ValueError, match="must be >= 0"):
        draws.step_keys_many(0, 1, [3, -1])
