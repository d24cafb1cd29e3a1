"""Run the HTTP service: in the foreground (``ktup serve``) or in a background thread (tests,
benchmarks, notebooks).

With ``workers > 1`` uvicorn starts separate processes; each loads the model itself (through
:func:`app_from_env`) and limits torch to its share of the cores, so N workers do not
oversubscribe the CPU with N × cores intra-op threads.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import types
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

from ktup.errors import KtupError
from ktup.serving.app import DEFAULT_MAX_BATCH, create_app, require_serve_extra
from ktup.serving.common import AppLimits
from ktup.serving.guard import ServerLimits

_ENV_PATH = "KTUP_SERVE_PATH"
_ENV_CHECKPOINT = "KTUP_SERVE_CHECKPOINT"
_ENV_MAX_BATCH = "KTUP_SERVE_MAX_BATCH"
_ENV_WORKERS = "KTUP_SERVE_WORKERS"
_ENV_THREADS = "KTUP_SERVE_THREADS"
_ENV_DEVICE = "KTUP_SERVE_DEVICE"
_ENV_LIMITS = "KTUP_SERVE_LIMITS"   # the AppLimits as JSON
_ENV_SERVER_LIMITS = "KTUP_SERVE_SERVER_LIMITS"   # the ServerLimits as JSON


def _set_threads(workers: int, threads: Optional[int]) -> None:
    """torch intra-op threads of this process: ``threads``, else the cores shared among workers."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def app_from_env():
    """uvicorn factory for multi-worker serving: settings come through environment variables."""
    from ktup.serving.loading import load_recommender

    path = os.environ.get(_ENV_PATH)
    if not path:
        raise KtupError(f"{_ENV_PATH} is not set")
    _set_threads(int(os.environ.get(_ENV_WORKERS, "1")), int(os.environ.get(_ENV_THREADS, "0")) or None)
    rec = load_recommender(path, checkpoint=os.environ.get(_ENV_CHECKPOINT, "best"),
                          device=os.environ.get(_ENV_DEVICE, "cpu"))
    limits = json.loads(os.environ.get(_ENV_LIMITS) or "{}")
    limits["max_batch"] = int(os.environ.get(_ENV_MAX_BATCH, str(DEFAULT_MAX_BATCH)))
    ServerLimits(**json.loads(os.environ.get(_ENV_SERVER_LIMITS) or "{}")).apply_logging()
    return create_app(rec, **limits)


def serve(
    path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_batch: int = DEFAULT_MAX_BATCH,
    checkpoint: str = "best",
    log_level: str = "info",
    threads: Optional[int] = None,
    device: str = "cpu",
    limits: Optional[AppLimits] = None,
    server_limits: Optional[ServerLimits] = None,
) -> None:
    """Serve a run directory or an export folder until interrupted (blocks).

    ``limits`` bound the work of one request (:class:`AppLimits`; ``max_batch`` wins over
    ``limits.max_batch``); ``server_limits`` the connections (:class:`ServerLimits`: request and
    keep-alive timeouts, connection limit, header size, log rate).

    The model is loaded before the port is bound, so a bad path fails with one line at once.
    ``threads``: torch intra-op threads per worker (default: torch's own for one worker, the
    cores divided among workers otherwise). Small models answer faster with 1 on a busy machine.
    """
    require_serve_extra()
    import uvicorn

    from ktup.serving.loading import load_recommender

    if workers < 1:
        raise KtupError(f"--workers must be >= 1, got {workers}")
    if max_batch < 1:
        raise KtupError(f"--max-batch must be >= 1, got {max_batch}")
    if not 0 <= port <= 65535:
        raise KtupError(f"--port must be within 0..65535, got {port}")
    if threads is not None and threads < 1:
        raise KtupError(f"--threads must be >= 1, got {threads}")
    limits = replace(limits or AppLimits(), max_batch=max_batch).check()
    server_limits = (server_limits or ServerLimits()).check()
    _set_threads(workers, threads)
    rec = load_recommender(path, checkpoint=checkpoint, device=device)  # validates the path in this process
    from ktup.serving.app import describe

    about = describe(rec)
    print(f"ktup: serving {about['model']} on {about['dataset']} from {path} at http://{host}:{port} "
          f"(explorer: http://{host}:{port}/ , API docs: http://{host}:{port}/docs)", file=sys.stderr, flush=True)
    if workers == 1:
        app = create_app(rec, **asdict(limits))
        config = server_limits.apply(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                                    **server_limits.uvicorn_kwargs()))
        server = uvicorn.Server(config)
        try:
            server.run()
        except KeyboardInterrupt:  # pragma: no cover
            pass
        return
    del rec
    os.environ.update({
        _ENV_PATH: str(Path(path).resolve()),
        _ENV_CHECKPOINT: checkpoint,
        _ENV_MAX_BATCH: str(max_batch),
        _ENV_WORKERS: str(workers),
        _ENV_THREADS: str(threads or 0),
        _ENV_DEVICE: device,
        _ENV_LIMITS: json.dumps(asdict(limits)),
        _ENV_SERVER_LIMITS: json.dumps(asdict(server_limits)),
    })
    server_limits.apply(types.SimpleNamespace())   # the request timeout, through the environment, for the workers
    uvicorn.run("ktup.serving.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, **server_limits.uvicorn_kwargs())


class BackgroundServer:
    """A real uvicorn server on a free loopback port, run in a daemon thread.

    >>> with BackgroundServer(app) as srv:
    ...     httpx.get(srv.url + "/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 limits: Optional[ServerLimits] = None):
        require_serve_extra()
        import uvicorn

        # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted connections only
        # then, and without it Nagle + delayed ACKs add ~40 ms to every keep-alive response.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))  # bound here so the port is known before the thread starts
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.limits = (limits or ServerLimits(timeout_keep_alive=30)).check()
        config = self.limits.apply(uvicorn.Config(app, log_level=log_level, lifespan="off",
                                                  **self.limits.uvicorn_kwargs()))
        self._server = uvicorn.Server(config)
        self._thread: Optional[threading.Thread] = None

    def start(self, timeout: float = 20.0) -> "BackgroundServer":
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True, name="ktup-serve")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread stopped before it started serving")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """Start ``app`` on ``host`` (loopback by default) in a background thread; ``.url``, ``.stop()``."""
    return BackgroundServer(app, host=host, port=port).start()
