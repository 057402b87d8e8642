"""Concurrent requests to one model's batched endpoint (score) answered by one scoring call.

A request joins the model's pending list. The pending requests start as a batch (one
`run_many` call in the thread pool, so one sorted, padded forward pass per 64 texts) when

  * `window` seconds have passed since the first of them arrived (a short collection window),
    and fewer than `max_running` batches of this model are running; or
  * they hold `max_texts` texts or more (a full batch: no reason to wait).

While every slot is busy, arrivals keep collecting and start together when a batch finishes: under
light load a request waits at most `window`, under heavy load batches grow by themselves. Requests
that start together while several slots are free are split into one batch per free slot, of about
as many texts each (`split`): each pool thread computes on its own share of the cores, so one
batch on one thread would leave the other cores idle.
A request that gave up (its time limit passed) is dropped from a batch that has not started, and
its answer is discarded if the batch has. One request's bad input fails that request only
(`run_many` returns its exception in its place).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Callable


class Batcher:
    """Collects the score requests of one model (see the module docstring)."""

    def __init__(self, run_many: Callable[[list], list], pool: Executor, window: float,
                 max_texts: int = 64, max_running: int = 1) -> None:
        self.run_many, self.pool = run_many, pool
        self.window, self.max_texts, self.max_running = window, max_texts, max_running
        self.pending: list[tuple[dict, asyncio.Future]] = []
        self.texts = 0       # texts in the pending requests
        self.running = 0     # batches in the pool
        self.timer: asyncio.TimerHandle | None = None
        self.batches = 0     # batches started and requests answered (for tests and benchmarks)
        self.requests = 0

    async def submit(self, params: dict) -> dict:
        """The answer to one request (params as checked by `charlm.serve.schema`)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.pending.append((params, answer))
        self.texts += len(params["texts"])
        if self.texts >= self.max_texts:
            self._start()
        elif self.timer is None and self.running < self.max_running:
            self.timer = loop.call_later(self.window, self._on_timer)
        return await answer

    def _on_timer(self) -> None:
        self.timer = None
        if self.running < self.max_running:
            self._start()

    def _start(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiting = [(p, f) for p, f in self.pending if not f.done()]
        self.pending, self.texts = [], 0
        for batch in split(waiting, self.max_running - self.running):
            self.running += 1
            self.batches += 1
            self.requests += len(batch)
            job = asyncio.wrap_future(self.pool.submit(self.run_many, [p for p, _ in batch]))
            job.add_done_callback(lambda j, b=batch: self._finished(j, b))

    def _finished(self, job: asyncio.Future, batch) -> None:
        self.running -= 1
        failed = job.exception() if not job.cancelled() else asyncio.CancelledError()
        answers = [failed] * len(batch) if failed is not None else job.result()
        for (_, future), answer in zip(batch, answers):
            if future.done():  # gave up waiting
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        if self.pending and self.timer is None:
            self._start()


def split(requests: list, parts: int) -> list[list]:
    """`requests` ((params, future) pairs, in order) in at most `parts` (at least 1) consecutive
    batches of about as many texts each."""
    parts = max(1, min(parts, len(requests)))
    total = sum(len(params["texts"]) for params, _ in requests)
    out, batch, count = [], [], 0
    for item in requests:
        batch.append(item)
        count += len(item[0]["texts"])
        if len(out) < parts - 1 and count * parts >= total * (len(out) + 1):
            out.append(batch)
            batch = []
    return out + [batch] if batch else out
