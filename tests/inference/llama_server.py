"""llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`) as the tests start it on loopback."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

SERVER_START_SECONDS = 90


def get_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m llama_cpp.server` on one loopback port, as a subprocess."""

    def __init__(self, model_path, *extra: str) -> None:
        self.port = get_free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        # --logits_all false: the server's default keeps every position's logits in a 2048 x 49152 float
        # array, which made 24-token requests take 1-14 s instead of ~1 s on this loaded 2-core machine.
        # It changes no output (only logprobs, which the worker does not ask for).
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1",
                   "--port", str(self.port), "--n_threads", "1", "--logits_all", "false", *extra]
        # A file, not a pipe: llama.cpp's load log would fill a pipe nobody reads and block the server.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama_cpp.server did not answer /v1/models in time")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.log.close()


