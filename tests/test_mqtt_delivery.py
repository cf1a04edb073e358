"""The MQTT sink's delivery state (`mqtt_delivery.Delivery`) on its own: no broker, no paho,
no threads. The network's side is played by the test: message ids as paho numbers them,
acknowledgements as the broker sends them. tests/test_mqtt.py runs the same rules end to end
against a real mosquitto."""

from __future__ import annotations

import random

import pytest

from kws_stream.events import Detection
from kws_stream.mqtt_delivery import Delivery

MESSAGES = 2  # each detection is two MQTT messages (its own topic and Hermes)


def det(end: float) -> Detection:
    return Detection("up", 0.9, end - 1.0, end, "mic:test", "micronet-l", threshold=0.7)


def ends(detections: list[Detection]) -> list[float]:
    return [d.end for d in detections]


class Network:
    """Numbers messages as paho does (1, 2, 3...) and remembers which are unacknowledged."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.next_mid = 1
        self.unacked: list[int] = []
        self.sent: list[Detection] = []  # in the order they were handed to the client

    def send_all(self) -> list[float]:
        """Send what the delivery lets through now; the ends sent."""
        out = []
        while (d := self.delivery.take()) is not None:
            mids = list(range(self.next_mid, self.next_mid + MESSAGES))
            self.next_mid += MESSAGES
            self.delivery.sent(mids)
            self.unacked += mids
            self.sent.append(d)
            out.append(d.end)
        return out

    def ack(self, count: int | None = None) -> None:
        """The broker acknowledges the oldest `count` messages (all by default)."""
        count = len(self.unacked) if count is None else count
        for mid in self.unacked[:count]:
            self.delivery.acknowledged(mid)
        del self.unacked[:count]


def test_detections_go_out_in_order_and_count_as_published_when_every_message_is_acknowledged() -> None:
    d = Delivery(queue_size=10)
    net = Network(d)
    for end in (1.0, 2.0, 3.0):
        assert d.add(det(end)) == 0
    d.connection_up()
    assert net.send_all() == [1.0, 2.0, 3.0]
    assert (d.queued, d.published, d.in_flight_messages) == (3, 0, 6)
    net.ack(1)  # one message of the first detection: not yet published
    assert (d.queued, d.published) == (3, 0)
    net.ack(1)
    assert (d.queued, d.published) == (2, 1)
    net.ack()
    assert (d.queued, d.published, d.in_flight_messages) == (0, 3, 0)


def test_nothing_is_taken_while_disconnected_and_the_backlog_goes_out_in_order_after_connecting() -> None:
    d = Delivery(queue_size=10)
    net = Network(d)
    for end in (1.0, 2.0):
        d.add(det(end))
    assert net.send_all() == []  # never connected yet
    d.connection_up()
    assert net.send_all() == [1.0, 2.0]
    d.connection_down()
    d.add(det(3.0))
    assert net.send_all() == []
    assert d.queued == 3


def test_at_most_window_messages_are_unacknowledged() -> None:
    d = Delivery(queue_size=10, window=4)  # two detections
    net = Network(d)
    for end in (1.0, 2.0, 3.0, 4.0):
        d.add(det(end))
    d.connection_up()
    assert net.send_all() == [1.0, 2.0]
    assert net.send_all() == []
    net.ack(1)  # 3 unacknowledged: room for one message, but a detection needs the window below 4
    assert net.send_all() == [3.0]
    net.ack()
    assert net.send_all() == [4.0]


def test_one_detection_is_sent_at_a_time() -> None:
    d = Delivery(queue_size=10)
    d.add(det(1.0))
    d.add(det(2.0))
    d.connection_up()
    assert d.take() == det(1.0)
    assert d.take() is None  # until sent() or deferred()
    assert d.queued == 2  # the one being sent still counts
    d.sent([1, 2])
    assert d.take() == det(2.0)


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    d = Delivery(queue_size=3)
    net = Network(d)
    assert [d.add(det(float(i))) for i in range(1, 6)] == [0, 0, 0, 1, 1]
    assert (d.dropped, d.queued) == (2, 3)
    d.connection_up()
    assert net.send_all() == [3.0, 4.0, 5.0]


def test_after_a_reconnect_nothing_new_goes_out_before_what_was_in_flight_is_acknowledged() -> None:
    """QoS >= 1: the client resends what was in flight when the connection broke; a newer
    detection sent before those are acknowledged could reach the broker first."""
    d = Delivery(queue_size=10, window=20)
    net = Network(d)
    d.add(det(1.0))
    d.connection_up()
    assert net.send_all() == [1.0]
    assert d.connection_down() == 0  # nothing lost: the client keeps it
    d.add(det(2.0))
    d.connection_up()
    assert net.send_all() == []  # detection 1 is being resent by the client
    net.ack(1)
    assert net.send_all() == []
    net.ack()
    assert (d.published, net.send_all()) == (1, [2.0])


def test_at_qos_0_a_disconnect_loses_what_was_in_flight_and_counts_it() -> None:
    d = Delivery(queue_size=10, at_most_once=True)
    net = Network(d)
    for end in (1.0, 2.0):
        d.add(det(end))
    d.connection_up()
    assert net.send_all() == [1.0, 2.0]
    net.ack()  # QoS 0: "acknowledged" when written to the socket
    d.add(det(3.0))
    assert net.send_all() == [3.0]
    assert d.connection_down() == 1
    assert (d.lost, d.queued, d.in_flight_messages) == (1, 0, 0)
    d.add(det(4.0))
    d.connection_up()
    assert net.send_all() == [4.0]  # no resync: nothing will be resent
    d.acknowledged(5)  # a late report for the lost detection's message changes nothing
    assert (d.published, d.lost) == (2, 1)


def test_a_failed_send_puts_the_detection_back_first_and_waits_for_the_connection() -> None:
    d = Delivery(queue_size=10, at_most_once=True)
    net = Network(d)
    d.add(det(1.0))
    d.add(det(2.0))
    d.connection_up()
    assert d.take() == det(1.0)
    d.deferred()  # paho refused it: the connection is gone
    assert (d.queued, d.take()) == (2, None)
    d.connection_up()
    assert net.send_all() == [1.0, 2.0]


def test_acknowledgements_out_of_order_publish_each_detection_once() -> None:
    d = Delivery(queue_size=10)
    for end in (1.0, 2.0):
        d.add(det(end))
    d.connection_up()
    d.take()
    d.sent([1, 2])
    d.take()
    d.sent([3, 4])
    for mid in (4, 3, 3, 99):  # a repeated and an unknown id are ignored
        d.acknowledged(mid)
    assert (d.published, ends(d.backlog())) == (1, [1.0])
    d.acknowledged(2)
    d.acknowledged(1)
    assert (d.published, d.queued) == (2, 0)


def test_hand_over_gives_the_backlog_oldest_first_once() -> None:
    d = Delivery(queue_size=10)
    net = Network(d)
    for end in (1.0, 2.0, 3.0, 4.0, 5.0):
        d.add(det(end))
    d.connection_up()
    d.take()
    d.sent([1, 2])  # 1 in flight and then acknowledged
    d.take()
    d.sent([3, 4])  # 2 in flight
    d.take()  # 3 being sent; 4 and 5 pending
    d.acknowledged(1)
    d.acknowledged(2)
    assert ends(d.backlog()) == [2.0, 3.0, 4.0, 5.0]
    assert ends(d.hand_over()) == [2.0, 3.0, 4.0, 5.0]
    assert (d.queued, d.handed_over, d.published, d.hand_over()) == (0, 4, 1, [])
    d.acknowledged(3)  # what the old client still reports is no longer counted here
    assert d.published == 1
    assert net.send_all() == []


def test_adopted_detections_go_ahead_of_the_own_and_the_bound_still_holds() -> None:
    d = Delivery(queue_size=4)
    net = Network(d)
    d.add(det(4.0))
    d.add(det(5.0))
    assert d.adopt([det(1.0), det(2.0), det(3.0)]) == 1  # 5 > 4: the oldest goes
    assert d.dropped == 1
    d.connection_up()
    assert net.send_all() == [2.0, 3.0, 4.0, 5.0]


def test_a_reload_hands_everything_over_without_loss_or_duplicates() -> None:
    """The old sink's broker went away with detections in flight and queued; the new sink
    (after a reload) adopts them and publishes each exactly once, in order, after its own
    were queued behind them."""
    old = Delivery(queue_size=10)
    old_net = Network(old)
    for end in (1.0, 2.0, 3.0):
        old.add(det(end))
    old.connection_up()
    assert old_net.send_all() == [1.0, 2.0, 3.0]
    old_net.ack(2)  # 1 published; 2 and 3 in flight
    old.connection_down()
    old.add(det(4.0))
    new = Delivery(queue_size=10)
    new_net = Network(new)
    new.add(det(5.0))  # published to the new bus before the old one closed
    new.adopt(old.hand_over())
    new.connection_up()
    assert new_net.send_all() == [2.0, 3.0, 4.0, 5.0]
    new_net.ack()
    published = ends(old_net.sent[:old.published]) + ends(new_net.sent)
    assert published == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (old.published + new.published, old.queued, new.queued) == (5, 0, 0)


@pytest.mark.parametrize("qos0", [False, True], ids=["qos1", "qos0"])
def test_a_random_run_keeps_order_and_accounts_for_every_detection(qos0: bool) -> None:
    """2000 random steps (add, connect, disconnect, send, acknowledge, a failed send):
    every detection is published, dropped, lost or still queued, and detections reach the
    client in the order they were added, each once."""
    rng = random.Random(21)
    d = Delivery(queue_size=8, window=6, at_most_once=qos0)
    net = Network(d)
    added = 0
    for _ in range(2000):
        step = rng.random()
        if step < 0.35:
            added += 1
            d.add(det(float(added)))
        elif step < 0.45:
            d.connection_up()
        elif step < 0.5:
            d.connection_down()
            if qos0:
                net.unacked.clear()  # the client discarded them
        elif step < 0.75:
            net.send_all()
        elif step < 0.97:
            net.ack(rng.randint(1, 3))
        elif d.take() is not None:
            d.deferred()
        assert d.published + d.dropped + d.lost + d.queued == added
        assert d.in_flight_messages <= 6 + MESSAGES - 1  # a detection is taken below the window
    sent = ends(net.sent)
    assert sent == sorted(set(sent))  # in order, none twice
    assert d.published > 100 and d.dropped > 0 and (d.lost > 0) == qos0


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Delivery(queue_size=0)
    d = Delivery(queue_size=1)
    with pytest.raises(RuntimeError, match="no detection was taken"):
        d.sent([1])
    d.add(det(1.0))
    d.connection_up()
    d.take()
    with pytest.raises(ValueError, match="at least one message"):
        d.sent([])
