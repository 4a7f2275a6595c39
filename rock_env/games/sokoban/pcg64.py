"""numpy's ``default_rng(seed).integers(n)`` stream in plain Python, for short-lived generators.

The Sokoban generator seeds a fresh numpy generator per level (like GEM) and draws only a
handful of integers from it. Creating ``numpy.random.PCG64(seed)`` costs ~10 us when the
process is warm and up to ~100-150 us right after other work has run (numpy's seeding path
is long and falls out of the CPU's caches), which is more than the whole placement needs.
This module reproduces, with Python integers:

* ``SeedSequence(seed)``: the entropy pool (4 words) and ``generate_state(4, uint64)``
  (Melissa O'Neill's seed_seq hashing, as numpy implements it);
* ``PCG64``: the 128-bit LCG, seeded like ``pcg64_set_seed``, with the XSL-RR output;
* ``Generator.integers(n)`` for ``n <= 2**32`` (int64 default dtype): a 32-bit word (the low
  half of a 64-bit output, the high half kept for the next word) mapped to ``[0, n)`` with
  Lemire's multiply-and-reject method.

:func:`matches_numpy` compares it with numpy; callers use numpy itself if that ever fails.
"""

from __future__ import annotations

import random

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_M128 = (1 << 128) - 1

# seed_seq constants (numpy/random/bit_generator.pyx).
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_POOL_SIZE = 4

#: PCG's default 128-bit multiplier.
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def _hash_constants(init: int, mult: int, count: int) -> tuple[int, ...]:
    """The running seed_seq hash constant: ``init``, ``init*mult``, ``init*mult**2``, ... (mod 2**32)."""
    out = [init]
    for _ in range(count):
        out.append((out[-1] * mult) & _M32)
    return tuple(out)


#: mix_entropy's pool-to-pool rounds: every (source, destination) pair with source != destination.
_POOL_PAIRS = tuple((src, dst) for src in range(_POOL_SIZE) for dst in range(_POOL_SIZE) if src != dst)
#: Seeds below 2**1024 (32 words) are supported.
_MAX_WORDS = 32
MAX_SEED_BITS = 32 * _MAX_WORDS
#: Hash constants of mix_entropy; hashmix call k XORs with [k] and multiplies by [k+1].
_HASH_A = _hash_constants(_INIT_A, _MULT_A, _POOL_SIZE + len(_POOL_PAIRS) + _POOL_SIZE * (_MAX_WORDS - _POOL_SIZE))
#: Hash constants of generate_state for 8 words (4 uint64s).
_HASH_B = _hash_constants(_INIT_B, _MULT_B, 8)


def _entropy_words(seed: int) -> list[int]:
    """numpy's ``_int_to_uint32_array``: 32-bit words, least significant first ([0] for 0)."""
    if seed == 0:
        return [0]
    words = []
    while seed:
        words.append(seed & _M32)
        seed >>= 32
    return words


def seed_state(seed: int) -> tuple[int, int]:
    """``(state, inc)`` of ``numpy.random.PCG64(seed)`` for an int ``0 <= seed < 2**1024``."""
    entropy = _entropy_words(seed)
    if len(entropy) > _MAX_WORDS:
        raise ValueError(f"seed_state supports seeds below 2**{32 * _MAX_WORDS}, got one of {seed.bit_length()} bits")
    ha, ml, mr = _HASH_A, _MIX_MULT_L, _MIX_MULT_R
    # mix_entropy: hash the first words into the pool, mix the pool with itself, then fold in the rest.
    pool = []
    for k in range(_POOL_SIZE):
        v = ((entropy[k] if k < len(entropy) else 0) ^ ha[k]) * ha[k + 1] & _M32
        pool.append(v ^ (v >> 16))
    k = _POOL_SIZE
    for src, dst in _POOL_PAIRS:
        v = ((pool[src] ^ ha[k]) * ha[k + 1]) & _M32
        v = (ml * pool[dst] - mr * (v ^ (v >> 16))) & _M32
        pool[dst] = v ^ (v >> 16)
        k += 1
    for word in entropy[_POOL_SIZE:]:
        for dst in range(_POOL_SIZE):
            v = ((word ^ ha[k]) * ha[k + 1]) & _M32
            v = (ml * pool[dst] - mr * (v ^ (v >> 16))) & _M32
            pool[dst] = v ^ (v >> 16)
            k += 1
    # generate_state(4, uint64): 8 words from the pool, paired little-endian into 4 uint64s.
    hb = _HASH_B
    out = []
    for i in range(8):
        v = ((pool[i & 3] ^ hb[i]) * hb[i + 1]) & _M32
        out.append(v ^ (v >> 16))
    initstate = (out[0] | out[1] << 32) << 64 | out[2] | out[3] << 32
    inc = ((out[4] | out[5] << 32) << 65 | (out[6] | out[7] << 32) << 1 | 1) & _M128
    # pcg64_srandom_r: state 0, one step (state = inc), add initstate, one more step.
    return ((inc + initstate) * _PCG_MULT + inc) & _M128, inc


class Integers:
    """``below(n)`` draws exactly like ``numpy.random.default_rng(seed).integers(n)``."""

    __slots__ = ("_half", "_inc", "_state")

    def __init__(self, seed: int) -> None:
        self._state, self._inc = seed_state(seed)
        self._half = -1  # the kept high half of the last 64-bit output, -1 if none

    def _next32(self) -> int:
        half = self._half
        if half >= 0:
            self._half = -1
            return half
        s = (self._state * _PCG_MULT + self._inc) & _M128
        self._state = s
        x = ((s >> 64) ^ s) & _M64
        rot = s >> 122
        x = ((x >> rot) | (x << (64 - rot))) & _M64
        self._half = x >> 32
        return x & _M32

    def below(self, n: int) -> int:
        """An int in ``[0, n)`` for ``1 <= n <= 2**32``, like ``Generator.integers(n)``."""
        if n == 1:
            return 0
        m = self._next32() * n
        low = m & _M32
        if low < n:
            threshold = (_M32 - (n - 1)) % n
            while low < threshold:
                m = self._next32() * n
                low = m & _M32
        return m >> 32


def matches_numpy(seeds: int = 8, draws: int = 12) -> bool:
    """Whether :class:`Integers` reproduces numpy's ``default_rng(seed).integers(n)`` here."""
    import numpy as np

    rnd = random.Random(7)
    for i in range(seeds):
        seed = i if i < seeds // 2 else rnd.getrandbits(rnd.choice((33, 64, 140)))
        ours, ref = Integers(seed), np.random.default_rng(seed)
        for _ in range(draws):
            n = rnd.randrange(1, 70)
            if ours.below(n) != int(ref.integers(n)):
                return False
    return True
