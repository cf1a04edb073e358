import threading

from kws_stream.events import SINK_QUEUE_SIZE, Detection, EventBus, SinkClosed


def det(keyword: str = "up", end: float = 1.0) -> Detection:
    return Detection(keyword, 0.91234567, end - 1.0, end, "a.wav", "micronet-l")


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.items: list[Detection] = []
        self.closed = False

    def handle(self, detection: Detection) -> None:
        self.items.append(detection)

    def close(self) -> None:
        self.closed = True


class BlockedSink(ListSink):
    name = "blocked"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.busy = threading.Event()

    def handle(self, detection: Detection) -> None:
        self.busy.set()
        self.release.wait(10)
        super().handle(detection)


class ClosingSink(ListSink):
    name = "closing"

    def handle(self, detection: Detection) -> None:
        raise SinkClosed("gone")


def test_event_schema_round_trip():
    d = det()
    data = d.event()
    assert data == {"keyword": "up", "score": 0.9123, "start": 0.0, "end": 1.0,
                    "source": "a.wav", "model": "micronet-l"}
    live = Detection("up", 0.9, 0, 1, "mic", "micronet-l", time="2026-01-01T00:00:00.000Z")
    assert Detection.from_event(live.event()) == live


def test_bus_delivers_in_order_to_every_sink_and_closes_them():
    a, b = ListSink(), ListSink()
    bus = EventBus([a, b])
    for i in range(10):
        bus.publish(det(end=float(i + 1)))
    bus.close()
    assert [d.end for d in a.items] == [float(i + 1) for i in range(10)] == [d.end for d in b.items]
    assert a.closed and b.closed


def test_a_blocked_sink_overflows_counted_without_blocking_publish():
    blocked = BlockedSink()
    bus = EventBus([blocked])
    bus.publish(det())
    assert blocked.busy.wait(5)  # the worker holds one detection, the queue is empty
    extra = 5
    for _ in range(SINK_QUEUE_SIZE + extra):  # returns at once although the sink is stuck
        bus.publish(det())
    assert bus.dropped == extra
    blocked.release.set()
    bus.close()
    assert len(blocked.items) == SINK_QUEUE_SIZE + 1


def test_a_closed_sink_sets_the_flag():
    bus = EventBus([ClosingSink()])
    bus.publish(det())
    assert bus.sink_closed.wait(5)
    bus.close()
