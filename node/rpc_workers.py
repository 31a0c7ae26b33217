"""The JSON-RPC worker threads: a fixed pool that serves request bodies in batches, off every trio loop.

Why not `trio.to_thread.run_sync` per request: a thread hand-off releases and
re-takes the GIL twice per request (the worker waking, then its result waking
the loop), and under load each re-take waits for a busy thread's switch
interval. A worker here takes every body queued when it wakes (up to
`MAX_BATCH`), serves them one after another, and wakes each waiting loop once
per batch, so a flood costs a few hand-offs per batch instead of two per
request, and the consensus loop competes with fewer wake-ups for the GIL.

The pool never blocks a loop: `run` queues the body and waits on a trio Event,
shielded from cancellation so that admission counts stay exact and shutdown
waits for work already taken (`stop` then joins the threads, before the node
closes its database).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

MAX_BATCH = 32  # bodies one worker takes per wake-up; the rest stay queued for the others


class RPCWorkers:
    """`count` threads running `handle(*args)` for coroutines on any trio loop."""

    def __init__(self, count: int, handle: Callable[..., Any], name: str = "magicoin-rpc") -> None:
        self.handle = handle
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
                         for index in range(count)]
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                for thread in self._threads:
                    thread.start()

    def stop(self) -> None:
        """Finish the queued work, then end the threads (blocking: call it from a thread or after the loops)."""
        with self._lock:
            if not self._started:
                return
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    async def run(self, *args: Any) -> Any:
        """`handle(*args)` in a worker; its result, or its exception raised here."""
        self.start()
        done = trio.Event()
        slot: list[tuple[bool, Any]] = []  # (raised, result or exception)
        self._jobs.put((args, trio.lowlevel.current_trio_token(), slot, done))
        with trio.CancelScope(shield=True):
            await done.wait()
        raised, value = slot[0]
        if raised:
            raise value
        return value

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            wakeups: dict[trio.lowlevel.TrioToken, list[trio.Event]] = {}
            for args, token, slot, done in batch:
                slot.append(self._call(args))
                wakeups.setdefault(token, []).append(done)
            for token, events in wakeups.items():
                try:
                    token.run_sync_soon(set_all, events)
                except trio.RunFinishedError:
                    pass  # the loop is gone, and its waiting tasks with it

    def _call(self, args: tuple) -> tuple[bool, Any]:
        try:
            return False, self.handle(*args)
        except Exception as error:  # noqa: BLE001 - handed to the waiting task, which raises it
            return True, error

    def _take_batch(self) -> list:
        job = self._jobs.get()
        if job is None:
            return []
        batch = [job]
        while len(batch) < MAX_BATCH:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # another thread's stop signal, or ours for the next round
                break
            batch.append(job)
        return batch


def set_all(events: list[trio.Event]) -> None:
    for event in events:
        event.set()
