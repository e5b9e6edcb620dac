"""The change bus: synchronous delivery in subscription order, kind filters, isolation of a
failing subscriber."""

import pytest

from pcnet.app.events import ChangeBus, ChangeEvent


def test_subscribers_hear_events_in_order_synchronously():
    bus, heard = ChangeBus(), []
    bus.subscribe(lambda e: heard.append(("a", e.kind, e.id)))
    bus.subscribe(lambda e: heard.append(("b", e.kind, e.id)))
    bus.publish(ChangeEvent("printer", 7))
    assert heard == [("a", "printer", 7), ("b", "printer", 7)]


def test_kind_filter_and_unsubscribe():
    bus, heard = ChangeBus(), []
    stop = bus.subscribe(heard.append, kinds={"user"})
    bus.publish(ChangeEvent("printer", 1))
    bus.publish(ChangeEvent("user", 2, name="alice"))
    stop()
    bus.publish(ChangeEvent("user", 3))
    assert [(e.kind, e.id, e.name) for e in heard] == [("user", 2, "alice")]


def test_a_failing_subscriber_neither_raises_nor_starves_the_others(capsys):
    bus, heard = ChangeBus(), []

    def broken(event):
        raise RuntimeError("cache on fire")

    bus.subscribe(broken)
    bus.subscribe(heard.append)
    bus.publish(ChangeEvent("account", 5, local=False))
    assert [(e.kind, e.local) for e in heard] == [("account", False)]


def test_unknown_kinds_and_ops_are_refused():
    with pytest.raises(ValueError):
        ChangeEvent("printers", 1)
    with pytest.raises(ValueError):
        ChangeEvent("user", 1, op="upsert")
    with pytest.raises(ValueError):
        ChangeBus().subscribe(print, kinds={"nope"})
