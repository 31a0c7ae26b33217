"""The inference worker: a trio service that serves jobs on one local model instance.

llama.cpp runs in worker threads (`trio.to_thread.run_sync`) and a
`trio.CapacityLimiter(1)` per model instance makes jobs take turns on the
instance's single context; the tasks waiting on it are the worker's queue.
Tokens stream out through a trio memory channel as they are decoded: the
decoding thread posts each token onto the trio loop with
`TrioToken.run_sync_soon` and goes straight on to the next one, never waiting
for the loop (a busy node must not slow decoding down). The channel holds a
whole job's tokens (at most `max_tokens`), so posting can never block; the
consumer reads at its own pace. A job is cancelled by leaving its stream early
or by its deadline; the decoding thread checks for cancellation
(`trio.from_thread.check_cancelled`) after every token.

    async with trio.open_nursery() as nursery:
        worker = Worker()                          # embedded default model
        await nursery.start(worker.run)            # loads, measures capacity
        async with worker.generate(job, timeout=30) as stream:
            async for piece in stream:             # StreamedToken(token, text, index)
                print(piece.text, end="")
        stream.output                              # JobOutput(tokens, text, finish_reason, ...)

`complete(job)` returns the JobOutput directly; `verify` and `annotate` run the
verifier and annotator on the same instance, under the same limiter.
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, NamedTuple, Sequence

import trio

from inference.annotator import Annotation, Annotator
from inference.engine import LocalModel
from inference.exceptions import (
    InferenceError,
    JobCancelled,
    JobDeadlineExceeded,
    UnsupportedModel,
    WorkerError,
    WorkerNotRunning,
    WorkerQueueFull,
)
from inference.jobs import JobOutput, JobSpec, get_prompt_tokens, make_job_output, validate_job_spec
from inference.engine import load_model
from inference.verifier import VerificationResult, Verifier

# The fixed job the worker times at start-up to declare its capacity.
CAPACITY_PROBE_CHAT = (("user", "Write a short paragraph about the history of bread."),)
CAPACITY_PROBE_TOKENS = 48

logger = logging.getLogger("inference.worker")


class StreamedToken(NamedTuple):
    token: int
    text: str  # the text this token completes ("" while a UTF-8 character is still split)
    index: int


class WorkerStatistics(NamedTuple):
    model_sha256: bytes
    capacity_tokens_per_second: int  # declared capacity, measured at start-up
    queue_depth: int  # jobs waiting for the model instance
    jobs_running: int
    jobs_served: int
    jobs_failed: int  # errors, deadlines and cancellations
    tokens_served: int
    busy_seconds: float  # wall time the model instance spent computing


class _Request:
    def __init__(
        self,
        job: JobSpec,
        channel: tuple[trio.MemorySendChannel, trio.MemoryReceiveChannel],
        timeout: float | None,
        deadline: float,
    ) -> None:
        self.job = job
        self.send, self.receive = channel
        self.trio_token = trio.lowlevel.current_trio_token()
        self.timeout = timeout
        self.deadline = deadline
        self.cancel_scope = trio.CancelScope(deadline=deadline)
        self.tokens: list[int] = []
        self.prompt_tokens: list[int] = []
        self.output: JobOutput | None = None
        self.error: InferenceError | None = None
        self.done = trio.Event()


class JobStream:
    """The consumer's side of one job: an async iterator of StreamedToken, then `output`."""

    def __init__(self, request: _Request, receive: trio.MemoryReceiveChannel) -> None:
        self._request = request
        self._receive = receive

    def __aiter__(self) -> "JobStream":
        return self

    async def __anext__(self) -> StreamedToken:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            await self._request.done.wait()
            if self._request.error is not None:
                raise self._request.error
            raise StopAsyncIteration

    def take_ready(self) -> list[StreamedToken]:
        """The tokens already decoded and not read yet, without waiting (to batch them)."""
        pieces = []
        while True:
            try:
                pieces.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return pieces

    @property
    def output(self) -> JobOutput:
        """The finished output; only valid once the stream is exhausted."""
        if self._request.output is None:
            raise RuntimeError("the job has not finished; iterate the stream to its end first")
        return self._request.output

    @property
    def prompt_tokens(self) -> int:
        return len(self._request.prompt_tokens)


class Worker:
    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        n_threads: int | None = None,
        model: LocalModel | None = None,
        max_queue: int = 256,
        default_timeout: float | None = None,
        measure_capacity: bool = True,
        declared_capacity: int | None = None,
    ) -> None:
        self._model_path = model_path
        self._n_threads = n_threads
        self._model = model
        self._max_queue = max_queue
        self._default_timeout = default_timeout
        self._measure_capacity = measure_capacity
        self._limiter = trio.CapacityLimiter(1)
        self._nursery: trio.Nursery | None = None
        self._verifier: Verifier | None = None
        self._annotator: Annotator | None = None
        if declared_capacity is not None and declared_capacity < 1:
            raise ValueError(f"declared capacity must be >= 1 token/s, got {declared_capacity}")
        # The operator's figure wins over the probe: start-up load is not service load.
        self._declared_capacity = declared_capacity
        self.capacity_tokens_per_second = declared_capacity or 0
        self._jobs_running = 0
        self._jobs_served = 0
        self._jobs_failed = 0
        self._tokens_served = 0
        self._busy_seconds = 0.0

    # --- service ---------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        owns_model = self._model is None
        if owns_model:
            self._model = await trio.to_thread.run_sync(
                lambda: load_model(self._model_path, n_threads=self._n_threads)
            )
        try:
            self._verifier = Verifier(self._model)
            self._annotator = Annotator(self._model)
            if self._measure_capacity and self._declared_capacity is None:
                self.capacity_tokens_per_second = await self._measure_capacity_tps()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            if owns_model and self._model is not None:
                # Jobs' threads have finished: the nursery waited for them.
                self._model.close()
                self._model = None

    @property
    def model(self) -> LocalModel:
        if self._model is None:
            raise WorkerNotRunning()
        return self._model

    @property
    def model_sha256(self) -> bytes:
        return self.model.sha256

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            model_sha256=self._model.sha256 if self._model is not None else b"",
            capacity_tokens_per_second=self.capacity_tokens_per_second,
            queue_depth=self._limiter.statistics().tasks_waiting,
            jobs_running=self._jobs_running,
            jobs_served=self._jobs_served,
            jobs_failed=self._jobs_failed,
            tokens_served=self._tokens_served,
            busy_seconds=self._busy_seconds,
        )

    # --- jobs ------------------------------------------------------------------

    @asynccontextmanager
    async def generate(self, job: JobSpec, *, timeout: float | None = None) -> AsyncIterator[JobStream]:
        """Start a job and stream its tokens; leaving the block early cancels it."""
        request = self._submit(job, timeout)
        receive = request.receive
        try:
            async with receive:
                yield JobStream(request, receive)
        finally:
            if not request.done.is_set():
                request.cancel_scope.cancel()

    async def complete(self, job: JobSpec, *, timeout: float | None = None) -> JobOutput:
        async with self.generate(job, timeout=timeout) as stream:
            async for _ in stream:
                pass
        return stream.output

    async def verify(self, job: JobSpec, output_tokens: Sequence[int]) -> VerificationResult:
        """Score a claimed output on this instance (an attester's work); never raises on bad input."""
        verifier = self._require_running()._verifier
        return await self._run_on_model(lambda: verifier.evaluate(job, output_tokens))

    async def annotate(self, content: str, labels: Sequence[str]) -> Annotation:
        annotator = self._require_running()._annotator
        return await self._run_on_model(lambda: annotator.annotate(content, labels))

    # --- internals ---------------------------------------------------------------

    def _require_running(self) -> "Worker":
        if self._nursery is None or self._model is None:
            raise WorkerNotRunning()
        return self

    def _submit(self, job: JobSpec, timeout: float | None) -> _Request:
        self._require_running()
        if job.model_sha256 != self._model.sha256:
            raise UnsupportedModel(job.model_sha256, (self._model.sha256,))
        validate_job_spec(job)
        waiting = self._limiter.statistics().tasks_waiting
        if waiting >= self._max_queue:
            raise WorkerQueueFull(waiting, self._max_queue)
        timeout = timeout if timeout is not None else self._default_timeout
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        # Room for every token the job can produce: the decoding thread never waits to hand one over.
        request = _Request(job, trio.open_memory_channel(job.max_tokens), timeout, deadline)
        self._nursery.start_soon(self._serve, request)
        return request

    async def _serve(self, request: _Request) -> None:
        self._jobs_running += 1
        try:
            async with request.send:
                with request.cancel_scope:
                    request.output = await trio.to_thread.run_sync(self._run_job, request, limiter=self._limiter)
                if request.output is None:
                    request.error = self._make_interruption_error(request)
            self._jobs_served += request.error is None
        except InferenceError as error:
            request.error = error
        except Exception as error:  # noqa: BLE001 - one job's failure must not stop the service
            request.error = WorkerError(f"job failed inside the worker: {error!r}")
        finally:
            self._jobs_running -= 1
            self._jobs_failed += request.error is not None
            request.done.set()

    def _make_interruption_error(self, request: _Request) -> InferenceError:
        partial = None
        if request.prompt_tokens:
            partial = make_job_output(self._model, request.prompt_tokens, request.tokens, request.job.max_tokens)
        if trio.current_time() >= request.deadline:
            return JobDeadlineExceeded(request.timeout, len(request.tokens), partial)
        return JobCancelled(len(request.tokens))

    def _run_job(self, request: _Request) -> JobOutput:
        """Runs in a worker thread holding the instance's limiter."""
        model = self._model
        started = time.perf_counter()
        try:
            request.prompt_tokens = get_prompt_tokens(model, request.job)
            decoder = model.make_text_decoder()
            for index, token in enumerate(model.iter_greedy(request.prompt_tokens, request.job.max_tokens)):
                request.tokens.append(token)
                self._tokens_served += 1
                text = "" if model.is_end_of_generation(token) else decoder.decode(model.get_token_bytes(token))
                request.trio_token.run_sync_soon(self._deliver, request, StreamedToken(token, text, index))
                # Raises Cancelled when the job's scope was cancelled (deadline, or the
                # consumer left): the thread stops before decoding another token.
                trio.from_thread.check_cancelled()
            return make_job_output(model, request.prompt_tokens, request.tokens, request.job.max_tokens)
        finally:
            self._busy_seconds += time.perf_counter() - started

    @staticmethod
    def _deliver(request: _Request, piece: StreamedToken) -> None:
        """Runs on the trio loop (posted by the decoding thread); must never raise, or the run would crash."""
        try:
            request.send.send_nowait(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the consumer left; the thread sees the cancellation after this token
        except trio.WouldBlock:
            # Cannot happen: the buffer holds max_tokens and the decoder stops there.
            logger.error("job stream overflow at token %d of %d", piece.index, request.job.max_tokens)
            request.cancel_scope.cancel()

    async def _run_on_model(self, fn):
        def timed():
            # Busy time counts compute only, not the wait for the limiter.
            started = time.perf_counter()
            try:
                return fn()
            finally:
                self._busy_seconds += time.perf_counter() - started

        return await trio.to_thread.run_sync(timed, limiter=self._limiter)

    async def _measure_capacity_tps(self) -> int:
        """Decode rate on a fixed probe job, in tokens/s (what `register_worker` declares)."""

        def probe() -> int:
            model = self._model
            prompt = model.tokenize_chat(CAPACITY_PROBE_CHAT)
            started = time.perf_counter()
            count = 0
            first_at = None
            for _ in model.iter_greedy(prompt, CAPACITY_PROBE_TOKENS):
                count += 1
                if first_at is None:
                    first_at = time.perf_counter()  # prefill done: time decoding only
            elapsed = time.perf_counter() - first_at
            self._busy_seconds += time.perf_counter() - started
            return int((count - 1) / elapsed) if count > 1 and elapsed > 0 else 0

        return await trio.to_thread.run_sync(probe, limiter=self._limiter)
