"""Background traffic for the benchmarks: short calls that load the lab Asterisk."""

from __future__ import annotations


def background_call(sequence: int) -> dict[str, str]:
    """Originate headers for one background call: a lab client that answers, waits 1 s and
    hangs up (``Local/7926NNNNNNN@lab-clients``); ``sequence`` makes each number distinct."""
    return {
        "Action": "Originate",
        "Channel": f"Local/7926{sequence % 10**7:07d}@lab-clients",
        "Application": "Wait",
        "Data": "1",
        "Async": "true",
    }
