"""AMI ingest: events/s and CPU of callbackd's hardened AMI link vs plain panoramisk 1.4.

1. Records a real event stream: the lab Asterisk 22 (unfiltered ``lab`` account) while
   callers join and abandon queues, operators are rung and clients answer.
2. Serves that recording, repeated, from a replay server in a separate process.
3. Feeds it to (a) callbackd's AmiLink with its production event set (framing, parsing,
   name filter, bounded queue, consumer task), (b) AmiLink accepting every event, and
   (c) panoramisk's Manager with one ``*`` callback; reports events/s and client CPU.

Run as root: ``.venv/bin/python -m bench.ami_ingest [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from panoramisk.manager import Manager

from bench.background import background_call
from callbackd.ami.events import SUBSCRIBED_EVENTS
from callbackd.ami.link import AmiLink, AmiLinkConfig
from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.driver import LabDriver

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


async def record_stream(seconds: float) -> bytes:
    """Raw bytes of the events a busy lab PBX sends to an unfiltered account."""
    pbx = LabAsterisk()
    await asyncio.to_thread(pbx.start)
    try:
        account = pbx.ami_lab
        reader, writer = await asyncio.open_connection(account.host, account.port)
        await reader.readuntil(b"\r\n")
        writer.write(
            f"Action: Login\r\nActionID: rec\r\nUsername: {account.username}\r\n"
            f"Secret: {account.secret}\r\nEvents: on\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        chunks: list[bytes] = []

        async def read_all() -> None:
            while True:
                chunks.append(await reader.read(65536))

        reading = asyncio.create_task(read_all())
        driver = await LabDriver.connect(account)
        pbx.set_operator("op1", "talk")
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        n = 0
        while loop.time() < end:
            n += 1
            await driver.originate_caller(f"7916{n:07d}", "Иван Петров", wait_seconds=1)
            await driver.action(background_call(n))
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await driver.close()
        writer.close()
        data = b"".join(chunks)
        # Keep whole messages only (the recording may stop mid-message).
        return data[: data.rfind(b"\r\n\r\n") + 4]
    finally:
        await asyncio.to_thread(pbx.stop)


def count_events(stream: bytes) -> tuple[int, dict[str, int]]:
    names: dict[str, int] = {}
    total = 0
    for raw in stream.split(b"\r\n\r\n"):
        if raw.startswith(b"Event: "):
            name = raw[7 : raw.find(b"\r\n") if b"\r\n" in raw else None].decode()
            names[name] = names.get(name, 0) + 1
            total += 1
    return total, names


def _serve(stream: bytes, repeat: int, port_out: Any, ready: Any) -> None:
    """The replay server (own process, so its CPU is not the client's)."""
    server = socket.create_server(("127.0.0.1", 0))
    port_out.value = server.getsockname()[1]
    ready.set()
    while True:
        conn, _ = server.accept()
        with conn:
            conn.sendall(BANNER)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(4096)
            action_id = ""
            for line in buf.decode().split("\r\n"):
                if line.lower().startswith("actionid:"):
                    action_id = line.split(":", 1)[1].strip()
            conn.sendall(
                f"Response: Success\r\nActionID: {action_id}\r\nMessage: Authentication accepted"
                "\r\n\r\n".encode()
            )
            for _ in range(repeat):
                conn.sendall(stream)
            # Hold the connection until the client has read everything and closes.
            while conn.recv(65536):
                pass


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    cpu_seconds: float

    def line(self) -> str:
        rate = self.events / self.seconds
        return (
            f"{self.name:<44} {self.events:>9} events  {self.seconds:7.3f} s  "
            f"{rate:>10,.0f} events/s  CPU {self.cpu_seconds:6.3f} s "
            f"({self.events / max(self.cpu_seconds, 1e-9):,.0f} events per CPU-s)"
        )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    name: str, expected: int, run: Callable[[asyncio.Event, list[int]], Coroutine[Any, Any, None]]
) -> Result:
    done = asyncio.Event()
    counter = [0]
    cpu0, t0 = _cpu(), time.perf_counter()
    task = asyncio.create_task(run(done, counter))
    await asyncio.wait_for(done.wait(), timeout=600)
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return Result(name, counter[0], seconds, cpu)


def callbackd_run(port: int, expected: int, events: frozenset[str] | None):
    async def run(done: asyncio.Event, counter: list[int]) -> None:
        async def handler(_link: AmiLink, _event: Any) -> None:
            counter[0] += 1
            if counter[0] == expected:
                done.set()

        link = AmiLink(
            AmiLinkConfig("bench", "127.0.0.1", port, "bench", "bench", ping_interval=3600),
            handler=handler,
            events=events,
        )
        await link.run()

    return run


def panoramisk_run(port: int, expected: int):
    async def run(done: asyncio.Event, counter: list[int]) -> None:
        manager = Manager(
            loop=asyncio.get_running_loop(),
            host="127.0.0.1",
            port=port,
            username="bench",
            secret="bench",
            ping_delay=3600,
        )

        def callback(_manager: Any, _event: Any) -> None:
            counter[0] += 1
            if counter[0] == expected:
                done.set()

        manager.register_event("*", callback)
        manager.connect()
        try:
            await asyncio.Event().wait()
        finally:
            manager.close()

    return run


async def main_async(repeat: int, record_seconds: float) -> None:
    print(f"recording a real event stream from the lab Asterisk for {record_seconds:.0f} s ...")
    stream = await record_stream(record_seconds)
    total, names = count_events(stream)
    wanted = sum(n for name, n in names.items() if name in SUBSCRIBED_EVENTS)
    top = ", ".join(f"{k} {v}" for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:6])
    print(f"recorded {total} events ({len(stream):,} bytes), {len(names)} kinds; top: {top}")
    print(f"events callbackd subscribes to: {wanted} of {total} ({100 * wanted / total:.1f} %)")
    print(f"replaying the recording x{repeat} per client from a separate process\n")
    ctx = multiprocessing.get_context("fork")
    port, ready = ctx.Value("i", 0), ctx.Event()
    server = ctx.Process(target=_serve, args=(stream, repeat, port, ready), daemon=True)
    server.start()
    ready.wait(10)
    try:
        results = [
            await _measure(
                "panoramisk 1.4 Manager, '*' callback",
                total * repeat,
                panoramisk_run(port.value, total * repeat),
            ),
            await _measure(
                "callbackd AmiLink, every event to the consumer",
                total * repeat,
                callbackd_run(port.value, total * repeat, None),
            ),
            await _measure(
                "callbackd AmiLink, production event set",
                wanted * repeat,
                callbackd_run(port.value, wanted * repeat, SUBSCRIBED_EVENTS),
            ),
        ]
    finally:
        server.kill()
    for result in results:
        print(result.line())
    prod = results[2]
    print(
        f"\ncallbackd hardened path, production set: {total * repeat / prod.seconds:,.0f} "
        f"stream events/s framed and filtered, subscribed ones parsed and queued "
        "(target >= 40,000)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--record-seconds", type=float, default=8.0)
    args = parser.parse_args()
    asyncio.run(main_async(args.repeat, args.record_seconds))


if __name__ == "__main__":
    main()
