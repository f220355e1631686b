"""Compiled id hash table: where uint64 ids sit in a list, in O(1) per lookup. lsd's ids
(block * voxels_per_block + k) are clustered, so keys are mixed with murmur3's finalizer first.
The loops are bound by random memory reads and prefetch a few iterations ahead (measured at 10M
ids: 1.4x faster lookups)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

AHEAD = 16  # prefetch distance, in loop iterations


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to load ``arr[idx]`` into cache (no bounds check, no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [args[1]],
                                       wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# the intrinsic under a plain signature: what compiled code calls it with (numba adds typingctx)
prefetch: Callable[[Any, Any], None] = _prefetch  # type: ignore[assignment]


@njit(inline="always")
def _mix(key):
    """murmur3's 64-bit finalizer: lsd's ids (block * voxels_per_block + k) defeat plain
    multiplicative hashing (4x longer lookups at 10M ids)."""
    key ^= key >> np.uint64(33)
    key *= np.uint64(0xFF51AFD7ED558CCD)
    key ^= key >> np.uint64(33)
    key *= np.uint64(0xC4CEB9FE1A85EC53)
    key ^= key >> np.uint64(33)
    return key


@njit(cache=True, nogil=True)
def hash_build(ids):
    """Open-addressing table over ``ids`` (uint64, unique): ``table[2h] = id``, ``table[2h+1] =
    index + 1`` (0 marks an empty slot). Returns (table, bits); the table has 2**bits slots."""
    n = ids.size
    bits = 4
    # load factor between 1/3 and 2/3 keeps probe runs short without doubling the memory
    while (1 << bits) * 2 < n * 3:
        bits += 1
    table = np.zeros(2 << bits, np.uint64)
    mask = np.uint64((1 << bits) - 1)
    shift = np.uint64(64 - bits)
    one = np.uint64(1)
    for i in range(n):
        if i + AHEAD < n:
            prefetch(table, 2 * (_mix(ids[i + AHEAD]) >> shift))
        key = ids[i]
        h = _mix(key) >> shift
        while table[2 * h + 1] != 0:
            h = (h + one) & mask
        table[2 * h] = key
        table[2 * h + 1] = np.uint64(i + 1)
    return table, bits


@njit(cache=True, nogil=True)
def hash_lookup(table, bits, keys, out):
    """``out[i]`` = index of ``keys[i]`` in the table, or -1 when it is not there."""
    mask = np.uint64((1 << bits) - 1)
    shift = np.uint64(64 - bits)
    one = np.uint64(1)
    m = keys.size
    for i in range(m):
        if i + AHEAD < m:
            prefetch(table, 2 * (_mix(keys[i + AHEAD]) >> shift))
        key = keys[i]
        h = _mix(key) >> shift
        found = -1
        while True:
            slot = table[2 * h + 1]
            if slot == 0:
                break
            if table[2 * h] == key:
                found = np.int64(slot) - 1
                break
            h = (h + one) & mask
        out[i] = found
