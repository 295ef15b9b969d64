"""What the loopback servers share: a threaded HTTP server on 127.0.0.1 (a free port), started
and stopped with the server object (`with Server(...) as server:`)."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """A subclass sets `handler` (a BaseHTTPRequestHandler class that reads its server object
    from the attribute named `handler_attribute`), and `_faults` (a deque of the faults to
    inject, in order) and `_lock` in its `__init__`."""

    handler: type[BaseHTTPRequestHandler]
    handler_attribute: str
    _httpd: ThreadingHTTPServer | None = None
    _faults: deque
    _lock: threading.Lock

    def inject(self, *faults) -> None:
        """Queue faults for the requests to come (see the subclass for their kinds)."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Self:
        handler = type("Handler", (self.handler,), {self.handler_attribute: self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
