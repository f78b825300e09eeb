"""The server's masked-input path holds no vector-sized copy (issue 15, m = 10^8).

A decoded MaskedInput's vector is a view of the received message, ``unpack(copy=False)``
keeps it a view where the width allows, and the unmasking folds masks straight out of
the accumulator. Counted with tracemalloc, so a copy brought back fails here.
"""

from __future__ import annotations

import copy
import os
import pickle
import tracemalloc

import numpy as np
import pytest

from bench.decode import second_receive
from secagg import messages as msgs
from secagg.config import SessionConfig
from secagg.crypto.prg import StreamCipher, mask_dtype
from secagg.measure import simulate
from secagg.packing import pack, unpack
from secagg.rounds import Round, decode_client
from secagg.sim import random_schedule
from secagg.simclients import SeededInputs
from secagg.unmask import RangeJob, mask_range

DIM = 1 << 18  # 1 MiB per vector at 32 bits: far above every other allocation here
R = 1 << 32


def _vectors(nbytes: int) -> float:
    return nbytes / (DIM * mask_dtype(R).itemsize)


def test_decoded_masked_vector_is_a_view_of_the_message() -> None:
    vec = np.arange(DIM, dtype=np.uint32)
    data = msgs.MaskedInput(3, 32, DIM, pack(vec, 32)).encode()
    msg = decode_client(data, Round.MASKED_INPUT)
    assert isinstance(msg, msgs.MaskedInput)
    assert isinstance(msg.packed, memoryview) and msg.packed.readonly
    assert msg.packed.obj is data  # no copy of the vector
    assert msg == msgs.MaskedInput(3, 32, DIM, pack(vec, 32))
    assert msgs.decode(msg.encode()) == msg  # encodes back to the same bytes
    assert hash(msg) == hash(msgs.MaskedInput(3, 32, DIM, pack(vec, 32)))
    for twin in (pickle.loads(pickle.dumps(msg)), copy.deepcopy(msg)):
        assert twin == msg and isinstance(twin.packed, bytes)
    view = unpack(msg.packed, 32, DIM, np.uint32, copy=False)
    assert np.shares_memory(view, np.frombuffer(data, dtype=np.uint8))
    assert not view.flags.writeable and np.array_equal(view, vec)
    owned = unpack(msg.packed, 32, DIM, np.uint32)  # the default still copies
    assert owned.flags.writeable and not np.shares_memory(owned, view)
    widened = unpack(msg.packed, 32, DIM, np.uint64, copy=False)  # another dtype: a copy
    assert widened.dtype == np.uint64 and np.array_equal(widened, vec)


def test_server_takes_a_masked_input_without_a_vector_copy() -> None:
    overhead, server = second_receive(DIM)  # round 2 reached directly: only decoding counts
    assert overhead < 0.1  # was 2.0: the bytes copy and the astype copy
    assert server.expected() == {3, 4, 5}


@pytest.mark.parametrize("threads", [1, 2])
def test_whole_session_peak_in_vectors(threads: int) -> None:
    """The replayed server peaks at the accumulator plus one scratch vector per thread
    and one partial per extra thread (was four vectors with one thread, seven with two)."""
    config = SessionConfig.create(range(1, 7), DIM, R, min_cohort=5)
    schedule = random_schedule(config.cohort, 0.2, Round.MASKED_INPUT, np.random.default_rng(1))
    report = simulate(config, SeededInputs(1, DIM, R), schedule, measure_memory=True,
                      measure_floor_time=False, threads=threads)
    assert report.exact
    peak = report.peak_server_mb * 2**20
    assert _vectors(peak) < 2 * threads + 0.5


def test_a_range_job_holds_two_vectors() -> None:
    """A worker's range job folds every mask into one partial with its sign: the partial
    and a scratch buffer (was three: a plus, a minus and the scratch)."""
    seeds = tuple((u, os.urandom(32)) for u in (1, 2))
    pairs = tuple((3, w, os.urandom(32)) for w in (1, 2))  # one of each sign
    job = RangeJob(os.urandom(32), R, StreamCipher.AES128_CTR, 0, DIM, seeds, pairs)
    tracemalloc.start()
    try:
        partial = mask_range(job)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert partial.shape == (DIM,)
    assert 1.9 < _vectors(peak) < 2.5
