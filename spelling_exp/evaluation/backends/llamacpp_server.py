"""A llama.cpp server (the ``xllamacpp`` wheel) in its own process, on 127.0.0.1.

``python -m spelling_exp.evaluation.backends.llamacpp_server '<json settings>'`` loads the GGUF
(and LoRA adapters), starts llama.cpp's HTTP server on a free loopback port, prints one JSON
line ``{"url": ...}`` on stdout, and serves until its stdin closes or it gets SIGTERM/SIGINT.
Watching stdin means the server dies with its parent even when the parent is SIGKILLed.

``LlamaCppServer`` is the parent's handle: start, wait for the address, stop (also on errors
and signals, through ``with`` / ``stop()``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from spelling_exp.errors import ConfigError, ServerError

MODULE = "spelling_exp.evaluation.backends.llamacpp_server"
ALIAS = "gguf"  # the model's served name; an adapter is applied to every request (one per server)


def server_params(settings: dict[str, Any]) -> Any:
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = settings["gguf"]
    p.model_alias = {settings.get("alias", ALIAS)}
    p.hostnames = ["127.0.0.1"]
    p.port = int(settings.get("port", 0))
    p.n_parallel = int(settings["parallel"])
    p.n_ctx = int(settings["parallel"]) * int(settings["ctx_per_slot"])
    p.n_batch, p.n_ubatch = int(settings["batch"]), int(settings["ubatch"])
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = int(settings["threads"])
    p.cache_prompt = True  # the shared system prompt is computed once per slot
    p.cont_batching = True
    p.warmup = False
    if settings.get("api_key"):
        p.api_keys = [settings["api_key"]]
    if settings.get("lora"):
        p.lora_adapters = [x.CommonAdapterLoraInfo(settings["lora"], 1.0)]
    return p


def _serve(settings: dict[str, Any]) -> None:
    import socket

    import xllamacpp as x

    if not settings.get("port"):  # a free loopback port (llama.cpp cannot report one it picked)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            settings["port"] = s.getsockname()[1]
    server = x.Server(server_params(settings))
    print(json.dumps({"url": server.listening_address, "pid": os.getpid()}), flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    os._exit(0)  # llama.cpp's threads need no orderly teardown; the OS frees the model


class LlamaCppServer:
    """The parent's handle on a server process."""

    def __init__(self, settings: dict[str, Any], log_path: Path, startup_timeout_s: float = 120.0):
        self.settings, self.log_path, self.startup_timeout_s = settings, log_path, startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes] = open(self.log_path, "ab")
        # The settings (which may hold an API key) travel on stdin's first line, never argv:
        # argv is visible to every user of the machine in `ps`.
        self.proc = subprocess.Popen([sys.executable, "-m", MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, start_new_session=False)
        log.close()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(self.settings) + "\n").encode())
        self.proc.stdin.flush()
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout_s)
        if not line or not line[0].strip():
            code = self.proc.poll()
            self.stop()
            tail = _tail(self.log_path)
            if code is None:
                raise ServerError(f"eval.llamacpp.startup_timeout_s={self.startup_timeout_s}: the llama.cpp server did "
                                  f"not start in time (log: {self.log_path})")
            raise ServerError(f"the llama.cpp server exited with code {code} while starting: {tail} "
                              f"(log: {self.log_path})")
        self.url = json.loads(line[0])["url"]
        return self.url

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        try:
            p.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def __enter__(self) -> LlamaCppServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-500:]


def require_xllamacpp() -> None:
    import importlib.util

    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigError("eval.backend=llamacpp needs the xllamacpp wheel: pip install -e '.[llamacpp]' "
                          "(bash scripts/setup.sh installs it)")


def main() -> None:
    settings = json.loads(sys.stdin.readline())
    _serve(settings)


if __name__ == "__main__":
    main()
