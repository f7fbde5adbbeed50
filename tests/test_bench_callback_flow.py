"""The pure parts of bench/callback_flow.py: percentiles and how AMI events pair into calls."""

from __future__ import annotations

import statistics

import pytest

from bench.callback_flow import FlowEvents, distribution, percentile, throughput_figures

OP = "callbackd-0b9c5a52-8d3e-4c1f-9a57-2f0e6d1c4b88"
OTHER_OP = "callbackd-7f1d2c3b-4a5e-4f60-8b71-9c8d7e6f5a40"


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 25) == 2.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile([7.0], 99) == 7.0


def test_percentile_agrees_with_statistics_inclusive_quantiles() -> None:
    values = [float((i * 37) % 101) / 10 for i in range(50)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (1, 50, 90, 99):
        assert percentile(values, q) == pytest.approx(cuts[q - 1])


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_distribution_of_nothing_is_empty_not_zero() -> None:
    assert distribution([]) == {"min": None, "p50": None, "p99": None, "max": None, "n": 0}
    assert distribution([1.0, 3.0]) == {"min": 1.0, "p50": 2.0, "p99": 2.98, "max": 3.0, "n": 2}


def _event(name: str, stamp: float, uniqueid: str, **headers: str) -> dict[str, str]:
    return {"event": name, "timestamp": f"{stamp:.6f}", "uniqueid": uniqueid, **headers}


def _one_callback(flow: FlowEvents, op: str, t0: float) -> None:
    """The events of one operator-first callback, as the lab PBX sends them (Local channels)."""
    events = [
        _event("Newchannel", t0, op, linkedid=op, channel="Local/op1@lab-operators-0001;1"),
        _event("Newchannel", t0, f"{op};2", linkedid=op, channel="Local/op1@lab-operators-0001;2"),
        _event("Newstate", t0 + 0.01, f"{op};2", linkedid=op, channelstate="6"),
        _event("Newstate", t0 + 0.02, op, linkedid=op, channelstate="6"),
        _event("UserEvent", t0 + 0.03, op, userevent="CallbackdAttempt", stage="operator_answered"),
        _event("DTMFBegin", t0 + 0.62, f"{op};2", digit="1", direction="Sent"),
        _event("DTMFBegin", t0 + 0.63, op, digit="1", direction="Received"),
        _event("Newstate", t0 + 1.0, op, channelstate="6"),  # a repeated Up changes nothing
        _event("Newchannel", t0 + 1.22, "1765000000.12", linkedid=op, channel="Local/79@c-1;1"),
        _event("Newchannel", t0 + 1.22, "1765000000.13", linkedid=op, channel="Local/79@c-1;2"),
        _event("Hangup", t0 + 3.5, "1765000000.12", linkedid=op),
        _event("Hangup", t0 + 3.52, f"{op};2", linkedid=op),
        _event("Hangup", t0 + 3.52, op, linkedid=op),
    ]
    for event in events:
        flow.feed(event)


def test_pairs_answer_key_client_channel_and_hangup_of_one_callback() -> None:
    flow = FlowEvents()
    _one_callback(flow, OP, 100.0)
    (call,) = flow.in_order()
    assert call.uniqueid == OP
    assert call.answered == pytest.approx(100.02)  # the ;1 half's Up, not the ;2 half's
    assert call.answered_event == pytest.approx(100.03)
    assert call.first_key == pytest.approx(100.62)
    assert call.client_channel == "Local/79@c-1;1"
    assert call.to_client == pytest.approx(1.20)
    assert call.up_seconds == pytest.approx(3.50)


def test_interleaved_callbacks_keep_their_own_events() -> None:
    flow = FlowEvents()
    _one_callback(flow, OP, 100.0)
    _one_callback(flow, OTHER_OP, 100.5)
    first, second = flow.in_order()
    assert (first.uniqueid, second.uniqueid) == (OP, OTHER_OP)
    assert second.to_client == pytest.approx(1.20)
    assert second.hungup == pytest.approx(104.02)


def test_ignores_channels_it_did_not_see_created_and_other_originates() -> None:
    flow = FlowEvents()
    # A call already up before the phase began: no Newchannel seen, so not followed.
    assert flow.feed(_event("Newstate", 1.0, OP, channelstate="6")) is None
    assert flow.feed(_event("Hangup", 2.0, OP)) is None
    # callbackd's probe and client-first channels are not operator-first callbacks.
    assert flow.feed(_event("Newchannel", 3.0, "callbackd-probe-00ff", linkedid="x")) is None
    assert flow.feed(_event("Newchannel", 3.0, f"{OP}-client", linkedid=f"{OP}-client")) is None
    assert flow.in_order() == []


def test_a_call_that_never_reached_the_client_has_no_latency() -> None:
    flow = FlowEvents()
    flow.feed(_event("Newchannel", 10.0, OP, linkedid=OP))
    flow.feed(_event("Newstate", 10.1, OP, channelstate="6"))
    flow.feed(_event("Hangup", 20.1, OP))  # declined
    (call,) = flow.in_order()
    assert call.to_client is None
    assert call.up_seconds == pytest.approx(10.0)


def test_throughput_figures_sum_operator_time_over_completed_callbacks() -> None:
    flow = FlowEvents()
    _one_callback(flow, OP, 100.0)  # up 3.5 s, 1.2 s of it before the client
    _one_callback(flow, OTHER_OP, 101.0)
    declined = "callbackd-11111111-2222-4333-8444-555555555555"
    flow.feed(_event("Newchannel", 102.0, declined, linkedid=declined))
    flow.feed(_event("Newstate", 102.0, declined, channelstate="6"))
    flow.feed(_event("Hangup", 105.0, declined))  # 3 s up, no client
    figures = throughput_figures(
        flow.in_order(), [104.0, 106.0], requests=3, first_contact=1, attempts=3
    )
    assert figures["completed"] == 2
    assert figures["seconds"] == 6.0  # first operator channel (100.0) -> last completion
    assert figures["per_minute"] == 20.0
    assert figures["operator_calls"] == 3
    assert figures["operator_seconds_per_callback"] == pytest.approx((3.5 + 3.5 + 3.0) / 2)
    assert figures["before_client_seconds_per_callback"] == pytest.approx(1.2)
    assert figures["first_contact_success"] == pytest.approx(1 / 3, abs=1e-3)
    assert figures["attempts_per_completed"] == 1.5


def test_throughput_figures_with_nothing_completed() -> None:
    figures = throughput_figures([], [], requests=5, first_contact=0, attempts=0)
    assert figures["per_minute"] is None
    assert figures["operator_seconds_per_callback"] is None
    assert figures["first_contact_success"] == 0.0
