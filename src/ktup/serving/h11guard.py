"""uvicorn's h11 protocol with a request timeout (see :class:`ktup.serving.guard.ServerLimits`).
Imported only when a server starts: it needs uvicorn, the optional ``serve`` extra."""

from __future__ import annotations

import os
from typing import Any, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ktup.serving.guard import _ENV_REQUEST_TIMEOUT, ServerLimits


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus ``request_timeout``: the time a connection may take to deliver
    one complete request, counted from its opening or from the first byte of a later request
    (between requests, uvicorn's keep-alive timeout applies)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = kwargs.get("config", args[0] if args else None)
        self.request_timeout = float(getattr(config, "ktup_request_timeout", None)
                                     or os.environ.get(_ENV_REQUEST_TIMEOUT) or ServerLimits.request_timeout)
        self._request_timer: Optional[Any] = None

    def _arm_request_timer(self) -> None:
        self._disarm_request_timer()
        self._request_timer = self.loop.call_later(self.request_timeout, self._request_timed_out)

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.logger.warning("Closed a connection that sent no complete request within %s s.", self.request_timeout)
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm_request_timer()   # the whole request is in: the app's time is not bounded here

    def data_received(self, data: bytes) -> None:
        if self._request_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_request_timer()      # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm_request_timer()
        super().connection_lost(exc)
