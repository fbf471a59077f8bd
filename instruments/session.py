"""The VISA session every driver talks through.

One lock per instrument; timeouts scaled to the operation; the error queue
checked where the instrument has one; transient I/O errors (timeouts, lost
connections, garbled replies) retried after a reconnect where that is safe;
and a debug log line for every transaction (logger ``instruments.visa``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyvisa
from pyvisa import constants

from instruments.errors import (
    BadReply,
    InstrumentIOError,
    InstrumentReportedError,
    InstrumentTimeout,
)

log = logging.getLogger("instruments.visa")

_TIMEOUT = constants.StatusCode.error_timeout
_RETRYABLE = {
    constants.StatusCode.error_timeout,
    constants.StatusCode.error_connection_lost,
    constants.StatusCode.error_io,
    constants.StatusCode.error_closing_failed,
    constants.StatusCode.error_invalid_object,
    constants.StatusCode.error_resource_not_found,
}


def _preview(data: Any, limit: int = 80) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class VisaSession:
    """A locked, logged, retrying connection to one instrument.

    ``error_query`` is the instrument's error-queue query (``None`` if it has
    none); ``no_error`` is a function telling whether a reply means "empty".
    ``min_interval_s`` enforces a pause between commands for instruments that
    need one (ThermoStream: 50 ms).
    """

    def __init__(
        self,
        resource_manager: pyvisa.ResourceManager,
        resource: str,
        *,
        name: str | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        read_termination: str = "\n",
        write_termination: str = "\n",
        error_query: str | None = ":SYST:ERR?",
        no_error: Callable[[str], bool] | None = None,
        min_interval_s: float = 0.0,
    ) -> None:
        self.rm = resource_manager
        self.resource = resource
        self.name = name or resource
        self.timeout_s = timeout_s
        self.retries = retries
        self._terms = (read_termination, write_termination)
        self.error_query = error_query
        self._no_error = no_error or (lambda r: r.strip().startswith(("0,", "+0,", "0")))
        self.min_interval_s = min_interval_s
        self.lock = threading.RLock()
        self.transactions = 0
        self.reconnects = 0
        self._res = None
        self._last = 0.0

    # -- connection --------------------------------------------------------------
    def _resource(self):
        if self._res is None:
            try:
                self._res = self.rm.open_resource(
                    self.resource, read_termination=self._terms[0],
                    write_termination=self._terms[1], timeout=int(self.timeout_s * 1000),
                )
            except (pyvisa.VisaIOError, OSError) as exc:
                why = getattr(exc, "abbreviation", None) or exc.__class__.__name__
                raise InstrumentIOError(
                    f"{self.name}: cannot open {self.resource} ({why}); "
                    "check the resource string, cabling and that the instrument is on"
                ) from None
        return self._res

    def reconnect(self) -> None:
        with self.lock:
            self.close()
            self.reconnects += 1
            log.debug("%s: reconnecting", self.name)
            self._resource()

    def close(self) -> None:
        with self.lock:
            if self._res is not None:
                try:
                    self._res.close()
                except Exception:  # noqa: BLE001 - closing a dead link must not mask the cause
                    pass
                self._res = None

    # -- transactions ---------------------------------------------------------------
    def _pace(self) -> None:
        if self.min_interval_s:
            wait = self._last + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()

    def _run(self, describe: str, fn: Callable[[Any], Any], *, retry: bool,
             timeout_s: float | None, parse: Callable[[Any], Any] | None = None) -> Any:
        with self.lock:
            attempts = 1 + (self.retries if retry else 0)
            last: Exception | None = None
            for attempt in range(attempts):
                try:
                    res = self._resource()
                    res.timeout = int((timeout_s or self.timeout_s) * 1000)
                    self._pace()
                    t0 = time.perf_counter()
                    out = fn(res)
                    self.transactions += 1
                    log.debug("%s: %s -> %s (%.2f ms)", self.name, _preview(describe),
                              _preview(out), (time.perf_counter() - t0) * 1e3)
                    return parse(out) if parse else out
                except pyvisa.VisaIOError as exc:
                    last = exc
                    log.debug("%s: %s failed: %s", self.name, _preview(describe),
                              exc.abbreviation)
                    if exc.error_code not in _RETRYABLE or attempt == attempts - 1:
                        break
                    self.reconnect()
                except (ConnectionError, BrokenPipeError) as exc:
                    last = exc
                    log.debug("%s: %s connection error: %s", self.name, _preview(describe), exc)
                    if attempt == attempts - 1:
                        break
                    self.reconnect()
                except (BadReply, ValueError, UnicodeDecodeError) as exc:
                    last = exc
                    log.debug("%s: %s garbled reply: %s", self.name, _preview(describe), exc)
                    if attempt == attempts - 1:
                        break
                    self.reconnect()  # drop whatever is left of the bad reply
            if isinstance(last, pyvisa.VisaIOError) and last.error_code == _TIMEOUT:
                raise InstrumentTimeout(
                    f"{self.name}: no answer to {_preview(describe, 40)!r} within "
                    f"{timeout_s or self.timeout_s:g} s after {attempts} attempt(s); check that "
                    "the instrument is on and the command is valid"
                ) from None
            if isinstance(last, OSError):
                raise InstrumentIOError(
                    f"{self.name}: cannot open {self.resource} ({last.strerror or last}); "
                    "check the resource string, cabling and that the instrument is on"
                ) from None
            raise InstrumentIOError(
                f"{self.name}: {_preview(describe, 40)!r} failed after {attempts} attempt(s): "
                f"{last}"
            ) from None

    def write(self, command: str, *, retry: bool = True) -> None:
        self._run(command, lambda r: r.write(command), retry=retry, timeout_s=None)

    def query(self, command: str, *, parse: Callable[[str], Any] | None = None,
              timeout_s: float | None = None, retry: bool = True) -> Any:
        return self._run(command, lambda r: r.query(command), retry=retry,
                         timeout_s=timeout_s, parse=parse)

    def query_block(self, command: str, dtype: str = "f", *, payload: np.ndarray | None = None,
                    payload_dtype: str = "f", timeout_s: float | None = None,
                    retry: bool = True, parse: Callable[[np.ndarray], Any] | None = None) -> Any:
        """One transaction: send ``command`` (with an optional binary block), read a block."""

        def go(res):
            if payload is None:
                return res.query_binary_values(command, datatype=dtype, container=np.array)
            res.write_binary_values(command, payload, datatype=payload_dtype)
            return res.read_binary_values(datatype=dtype, container=np.array)

        return self._run(command, go, retry=retry, timeout_s=timeout_s, parse=parse)

    def query_with_block(self, command: str, payload: np.ndarray, payload_dtype: str = "f", *,
                         parse: Callable[[str], Any] | None = None,
                         timeout_s: float | None = None, retry: bool = True) -> Any:
        """One transaction: send ``command`` with a binary block, read a text reply."""

        def go(res):
            res.write_binary_values(command, payload, datatype=payload_dtype)
            return res.read()

        return self._run(command, go, retry=retry, timeout_s=timeout_s, parse=parse)

    # -- the error queue -----------------------------------------------------------
    def check_errors(self, context: str = "") -> None:
        """Drain the error queue; raise if the instrument reported anything."""
        if not self.error_query:
            return
        found = []
        for _ in range(16):
            reply = self.query(self.error_query)
            if self._no_error(reply):
                break
            found.append(reply.strip())
        if found:
            where = f" after {context}" if context else ""
            raise InstrumentReportedError(f"{self.name} reported{where}: {'; '.join(found)}")
