import threading

import numpy as np

from kws_stream.ringbuffer import RingBuffer


def test_frames_come_out_in_order_across_the_wrap():
    ring = RingBuffer(10, 1)
    data = np.arange(37, dtype=np.int16).reshape(-1, 1)
    out = []
    for i in range(0, 37, 3):
        ring.write(data[i : i + 3])
        out.append(ring.read(0)[0])
    assert np.array_equal(np.concatenate(out), data)
    assert ring.overflowed_frames == 0


def test_overflow_drops_the_oldest_and_is_counted():
    ring = RingBuffer(8, 2)
    ring.write(np.arange(24, dtype=np.int16).reshape(12, 2))
    assert ring.overflowed_frames == 4
    block, lost = ring.read(0)
    assert np.array_equal(block, np.arange(8, 24, dtype=np.int16).reshape(8, 2)) and lost == 4


def test_reader_wakes_when_a_block_arrives():
    ring = RingBuffer(100, 1)
    got: list[tuple[np.ndarray, int]] = []
    reader = threading.Thread(target=lambda: got.append(ring.read(10)))
    reader.start()
    ring.write(np.ones((5, 1), dtype=np.int16))
    reader.join(10)
    assert not reader.is_alive() and len(got[0][0]) == 5


def test_read_times_out_empty():
    block, lost = RingBuffer(4, 1).read(0.01)
    assert len(block) == 0 and lost == 0


def test_each_read_says_what_was_lost_just_before_it():
    ring = RingBuffer(8, 1)
    ring.write(np.arange(10, dtype=np.int16).reshape(-1, 1))
    block, lost = ring.read(0)
    assert lost == 2 and block[0, 0] == 2  # frames 0 and 1 were dropped, before frame 2
    assert ring.read_end == 10  # the reader's place in the stream: after frame 9
    assert ring.read(0)[1] == 0  # reported once
    ring.write(np.arange(20, dtype=np.int16).reshape(-1, 1))
    ring.write(np.arange(3, dtype=np.int16).reshape(-1, 1))
    block, lost = ring.read(0)
    assert lost == 15 and len(block) == 8 and ring.overflowed_frames == 17
