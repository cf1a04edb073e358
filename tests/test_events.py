import threading

from kws_stream.events import SINK_QUEUE_SIZE, Detection, EventBus, Handover, SinkClosed


def det(keyword: str = "up", end: float = 1.0) -> Detection:
    return Detection(keyword, 0.91234567, end - 1.0, end, "a.wav", "micronet-l")


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.items: list[Detection] = []
        self.closed = False
        self.started = False

    def start(self) -> None:
        self.started = True

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
    live = Detection("up", 0.9, 0, 1, "mic", "micronet-l", time="2026-01-01T00:00:00.000Z", threshold=0.8)
    assert live.event()["threshold"] == 0.8
    assert Detection.from_event(live.event()) == live


def test_a_bus_starts_no_thread_until_started():
    """Issue 13.5: constructing a bus opens nothing; detections wait in its queue until start()."""
    before = threading.active_count()
    sink = ListSink()
    bus = EventBus([sink])
    bus.publish(det())
    assert threading.active_count() == before and not sink.started and sink.items == []
    with bus:
        assert sink.started
    assert [d.end for d in sink.items] == [1.0] and sink.closed
    assert threading.active_count() == before


class HandingSink(ListSink, Handover):
    """A sink with a backlog it could not deliver (as MqttSink while its broker is away)."""

    name = "same"

    def __init__(self, backlog: list[Detection]) -> None:
        super().__init__()
        self.backlog = backlog

    def undelivered(self) -> list[Detection]:
        taken, self.backlog = self.backlog, []
        return taken

    def adopt(self, detections: list[Detection]) -> None:
        self.items[:0] = detections


def test_close_hands_what_a_replaced_sink_could_not_deliver_to_its_successor():
    old = EventBus([HandingSink([det(end=1.0), det(end=2.0)])]).start()
    new_sink = HandingSink([])
    new = EventBus([new_sink])
    new.publish(det(end=3.0))  # published after the swap, before the old bus closed
    old.close(successor=new)
    new.start()
    new.close()
    assert [d.end for d in new_sink.items] == [1.0, 2.0, 3.0]


def test_only_a_successor_of_the_same_name_that_can_adopt_is_handed_anything():
    """stdout (no Handover) and a renamed sink get nothing; the backlog stays with the old
    sink, whose close() has already reported it."""
    class Plain(ListSink):
        name = "same"

    kept = HandingSink([det(end=1.0)])
    EventBus([kept]).start().close(successor=EventBus([Plain()]))
    other = HandingSink([])
    other.name = "other"
    renamed = HandingSink([det(end=2.0)])
    EventBus([renamed]).start().close(successor=EventBus([other]))
    assert ([d.end for d in kept.backlog], [d.end for d in renamed.backlog], other.items) == ([1.0], [2.0], [])
    assert not isinstance(Plain(), Handover) and isinstance(kept, Handover)


def test_bus_delivers_in_order_to_every_sink_and_closes_them():
    a, b = ListSink(), ListSink()
    bus = EventBus([a, b]).start()
    for i in range(10):
        bus.publish(det(end=float(i + 1)))
    bus.close()
    assert [d.end for d in a.items] == [float(i + 1) for i in range(10)] == [d.end for d in b.items]
    assert a.closed and b.closed


def test_a_blocked_sink_overflows_counted_without_blocking_publish():
    blocked = BlockedSink()
    bus = EventBus([blocked]).start()
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
    bus = EventBus([ClosingSink()]).start()
    bus.publish(det())
    assert bus.sink_closed.wait(5)
    bus.close()
