"""The inference worker: a trio service that serves jobs on one local model instance.

Generation goes to a backend (`inference.backends`): the in-process llama.cpp
context by default, or an OpenAI-compatible server (`OpenAIBackend`), which
the worker checks at start-up against its own copy of the model and refuses
(`BackendModelMismatch`) unless it serves the model this node claims. The
local model always does the rest: prompts, tokens, verification, annotation.
The description below is the local backend's; a remote backend streams
text deltas as provisional tokens, and its claimed tokens are the protocol's
tokenisation of the whole text (`LocalModel.tokenize_output`).

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
from inference.backends import (
    CAPACITY_PROBE_CHAT,
    CAPACITY_PROBE_TOKENS,
    JobRun,
    LocalBackend,
    OpenAIBackend,
    ProbeResult,
    check_backend_model,
)
from inference.engine import EngineSettings, LocalModel, load_model, make_engine_settings, supports_gpu_offload
from inference.exceptions import (
    InferenceError,
    JobCancelled,
    JobDeadlineExceeded,
    UnsupportedModel,
    WorkerError,
    WorkerNotRunning,
    WorkerQueueFull,
)
from inference.jobs import JobOutput, JobSpec, make_job_output, validate_job_spec
from inference.verifier import VerificationResult, Verifier

__all__ = ["CAPACITY_PROBE_CHAT", "CAPACITY_PROBE_TOKENS", "JobStream", "StreamedToken", "Worker", "WorkerStatistics"]

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
    busy_seconds: float  # wall time the model instance (or the backend, for a remote one) spent computing
    backend: str = "local"  # "local" or "openai"
    backend_url: str = ""
    backend_model: str = ""  # the name the backend serves the model under
    threads: int = 0  # the local engine's settings (EngineSettings, as resolved)
    gpu_layers: int = 0
    ctx: int = 0
    batch: int = 0


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
        self.timeout = timeout
        self.deadline = deadline
        self.cancel_scope = trio.CancelScope(deadline=deadline)
        self.run: JobRun | None = None  # set when the job starts (it needs the running model)
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
        return len(self._request.run.prompt_tokens) if self._request.run is not None else 0


class Worker:
    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        settings: EngineSettings | None = None,
        n_threads: int | None = None,
        model: LocalModel | None = None,
        backend: LocalBackend | OpenAIBackend | None = None,
        max_queue: int = 256,
        default_timeout: float | None = None,
        measure_capacity: bool = True,
        declared_capacity: int | None = None,
    ) -> None:
        self._model_path = model_path
        # `n_threads` is the older keyword; it overrides settings.n_threads.
        self._settings = make_engine_settings(settings, n_threads)
        self._model = model
        self._backend = backend or LocalBackend()
        self.backend_probes: list[ProbeResult] = []  # the start-up check's results (remote backends)
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
        self._tokens_served = 0  # by finished jobs; running ones count their own (`_runs`)
        self._runs: set[JobRun] = set()
        self._busy_seconds = 0.0

    # --- service ---------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        owns_model = self._model is None
        if owns_model:
            self._model = await trio.to_thread.run_sync(lambda: load_model(self._model_path, settings=self._settings))
        try:
            self._verifier = Verifier(self._model)
            self._annotator = Annotator(self._model)
            await self._start_backend()
            if self._measure_capacity and self._declared_capacity is None:
                self.capacity_tokens_per_second = await self._measure_capacity_tps()
            logger.info("worker ready model=%s %s capacity=%d tok/s", self._model.sha256.hex()[:16],
                        " ".join(f"{k}={v}" for k, v in self.describe().items() if k not in ("model", "probes")),
                        self.capacity_tokens_per_second)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._backend.aclose()
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

    @property
    def backend(self) -> LocalBackend | OpenAIBackend:
        return self._backend

    @property
    def engine_settings(self) -> EngineSettings:
        """The local engine's settings as resolved (automatic values filled in; GPU layers 0 without a GPU build)."""
        return self._model.settings if self._model is not None else self._settings

    def describe(self) -> dict:
        """How this worker runs its model: backend and engine settings (for the node's status and registration)."""
        settings = self.engine_settings
        backend = self._backend.describe()
        return {
            "model": "0x" + self._model.sha256.hex() if self._model is not None else "",
            "backend": backend["kind"],
            "backendUrl": backend.get("url", ""),
            "backendModel": backend.get("model", ""),
            **settings.to_json(),
            "gpuOffload": supports_gpu_offload(),
            "probes": [probe.to_json() for probe in self.backend_probes],
        }

    def statistics(self) -> WorkerStatistics:
        settings = self.engine_settings
        return WorkerStatistics(
            model_sha256=self._model.sha256 if self._model is not None else b"",
            capacity_tokens_per_second=self.capacity_tokens_per_second,
            queue_depth=self._get_queue_depth(),
            jobs_running=self._jobs_running,
            jobs_served=self._jobs_served,
            jobs_failed=self._jobs_failed,
            # Live: a decoding thread appends to its run's tokens without waiting for the loop.
            tokens_served=self._tokens_served + sum(len(run.tokens) for run in list(self._runs)),
            busy_seconds=self._busy_seconds,
            backend=self._backend.kind,
            backend_url=self._backend.url,
            backend_model=self._backend.model_name,
            threads=settings.n_threads,
            gpu_layers=settings.n_gpu_layers,
            ctx=settings.n_ctx,
            batch=settings.n_batch,
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
        waiting = self._get_queue_depth()
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
                request.run = JobRun(self._model, self._limiter, request.job,
                                     lambda token, text, index: self._deliver(request, token, text, index))
                self._runs.add(request.run)
                with request.cancel_scope:
                    try:
                        request.output = await self._backend.generate(request.run)
                    finally:
                        self._busy_seconds += request.run.busy_seconds
                if request.output is None:
                    request.error = self._make_interruption_error(request)
            self._jobs_served += request.error is None
        except InferenceError as error:
            request.error = error
        except Exception as error:  # noqa: BLE001 - one job's failure must not stop the service
            request.error = WorkerError(f"job failed inside the worker: {error!r}")
        finally:
            if request.run is not None:
                self._runs.discard(request.run)
                self._tokens_served += len(request.run.tokens)
            self._jobs_running -= 1
            self._jobs_failed += request.error is not None
            request.done.set()

    def _make_interruption_error(self, request: _Request) -> InferenceError:
        run = request.run
        partial = None
        if run.prompt_tokens:
            partial = make_job_output(self._model, run.prompt_tokens, run.tokens, request.job.max_tokens)
        if trio.current_time() >= request.deadline:
            return JobDeadlineExceeded(request.timeout, len(run.tokens), partial)
        return JobCancelled(len(run.tokens))

    def _deliver(self, request: _Request, token: int, text: str, index: int) -> None:
        """Runs on the trio loop (posted by a decoding thread, or called by a streaming backend); must never
        raise, or the run would crash."""
        piece = StreamedToken(token, text, index)
        try:
            request.send.send_nowait(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the consumer left; the job's scope is cancelled and the backend stops
        except trio.WouldBlock:
            # Cannot happen: the buffer holds max_tokens and backends stop there.
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
        """Decode rate on a fixed probe job through the backend, in tokens/s (what `register_worker` declares)."""
        started = time.perf_counter()
        try:
            return await self._backend.measure_tokens_per_second(self._model, self._limiter)
        finally:
            self._busy_seconds += time.perf_counter() - started

    async def _start_backend(self) -> None:
        """Connect a remote backend and check it serves this node's model; raises BackendModelMismatch if not."""
        await self._backend.start(self._model)
        if isinstance(self._backend, OpenAIBackend):
            self.backend_probes = await check_backend_model(self._backend, self._model, self._verifier, self._limiter)

    def _get_queue_depth(self) -> int:
        """Jobs waiting for the model instance, plus those waiting for a remote backend."""
        return self._limiter.statistics().tasks_waiting + self._backend.get_queue_depth()
