"""Named long-lived tasks that are restarted when they crash and stopped with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog


class Supervisor:
    """Owns every long-lived task of the daemon; nothing runs fire-and-forget."""

    def __init__(self, *, restart_initial: float = 0.5, restart_max: float = 30.0) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._restart_initial = restart_initial
        self._restart_max = restart_max
        self.restarts: dict[str, int] = {}
        self._log = structlog.get_logger("callbackd.supervisor")

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        self.restarts[name] = 0
        self._tasks[name] = asyncio.create_task(self._keep_running(name, factory), name=name)

    @property
    def running(self) -> list[str]:
        return [name for name, task in self._tasks.items() if not task.done()]

    async def _keep_running(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        delay = self._restart_initial
        while True:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a crashed component is logged and restarted
                self.restarts[name] += 1
                self._log.exception("component crashed; restarting", component=name, after=delay)
                await asyncio.sleep(delay)
                delay = min(self._restart_max, delay * 2)
                continue
            self._log.info("component finished", component=name)
            return

    async def stop(self, deadline: float) -> list[str]:
        """Cancel every task; return the names of those that did not end within the deadline."""
        for task in self._tasks.values():
            task.cancel()
        pending = [t for t in self._tasks.values() if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=deadline)
        else:
            still = set()
        stuck = sorted(t.get_name() for t in still)
        if stuck:
            self._log.error("tasks did not stop in time", tasks=stuck, deadline=deadline)
        return stuck
