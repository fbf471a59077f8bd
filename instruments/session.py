"""The VISA session every driver talks through.

One lock per instrument; timeouts scaled to the operation; the error queue
checked where the instrument has one (after set-up commands, and when a query
gets no reply: an instrument that refuses a query queues an error and sends
nothing); transient I/O errors (timeouts, lost connections, garbled replies)
retried after a reconnect where that is safe; an optional VISA exclusive lock;
and a debug log line for every transaction (logger ``instruments.visa``).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyvisa
from pyvisa import constants

from instruments.errors import (
    BadReply,
    DriverOptionError,
    InstrumentError,
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
# the backend cannot lock this resource (pyvisa-py raw sockets): carry on without
_LOCK_UNSUPPORTED = {
    constants.StatusCode.error_nonsupported_operation,
    constants.StatusCode.error_nonsupported_attribute,
    constants.StatusCode.error_nonsupported_mode,
}
# another session holds the lock (or did not release it within the wait)
_LOCKED = {constants.StatusCode.error_resource_locked, constants.StatusCode.error_timeout}
ERROR_QUEUE_TIMEOUT_S = 0.5  # the one error-queue query after a query got no reply
LOCK_WAIT_S = 0.5  # how long to wait for another session's exclusive lock
_ERROR_ENTRY = re.compile(r"^\s*[+-]?\d+")  # every error-queue entry opens with its code


def _preview(data: Any, limit: int = 80) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class VisaSession:
    """A locked, logged, retrying connection to one instrument.

    ``error_query`` is the instrument's error-queue query (``None`` if it has
    none); ``no_error`` is a function telling whether a reply means "empty".
    ``min_interval_s`` enforces a pause between commands for instruments that
    need one (ThermoStream: 50 ms). ``exclusive``: take a VISA exclusive lock on
    the resource when it is opened, where the resource supports one (GPIB, USB,
    VXI-11 INSTR; not raw sockets), so no other session can talk to it meanwhile.
    Settings are checked here, before any I/O (:class:`DriverOptionError`).
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
        exclusive: bool = False,
    ) -> None:
        if not isinstance(resource, str) or not resource.strip():
            raise DriverOptionError("resource", f"expected a VISA resource string, got "
                                                f"{resource!r}")
        for key, value in (("read_termination", read_termination),
                           ("write_termination", write_termination)):
            if not isinstance(value, str):
                raise DriverOptionError(key, f"expected text such as \"\\n\", got {value!r}")
        if error_query is not None and (not isinstance(error_query, str)
                                        or not error_query.strip()):
            raise DriverOptionError("error_query", f"expected a query or None, got "
                                                   f"{error_query!r}")
        if not isinstance(exclusive, bool):
            raise DriverOptionError("exclusive", f"expected true or false, got {exclusive!r}")
        self.rm = resource_manager
        self.resource = resource
        self.name = name or resource
        self.timeout_s = timeout_s
        self.retries = retries
        self.min_interval_s = min_interval_s
        self.exclusive = exclusive
        self._terms = (read_termination, write_termination)
        self.error_query = error_query
        self._no_error = no_error or (lambda r: r.strip().startswith(("0,", "+0,", "0")))
        self.lock = threading.RLock()
        self.transactions = 0
        self.reconnects = 0
        self.locked = False  # True while this session holds a VISA exclusive lock
        self._res = None
        self._last = 0.0

    # -- settings, checked whenever they are set ------------------------------------
    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        if not _number(value) or not value > 0:
            raise DriverOptionError("timeout_s", f"expected seconds > 0, got {value!r}")
        self._timeout_s = float(value)

    @property
    def retries(self) -> int:
        return self._retries

    @retries.setter
    def retries(self, value: int) -> None:
        if not _whole(value) or value < 0:
            raise DriverOptionError("retries", f"expected a whole number >= 0 (0: no retry), "
                                               f"got {value!r}")
        self._retries = int(value)

    @property
    def min_interval_s(self) -> float:
        return self._min_interval_s

    @min_interval_s.setter
    def min_interval_s(self, value: float) -> None:
        if not _number(value) or value < 0:
            raise DriverOptionError("min_interval_s", f"expected seconds >= 0, got {value!r}")
        self._min_interval_s = float(value)

    # -- connection --------------------------------------------------------------
    def _resource(self):
        if self._res is None:
            try:
                res = self.rm.open_resource(
                    self.resource, read_termination=self._terms[0],
                    write_termination=self._terms[1], timeout=int(self.timeout_s * 1000),
                )
            except (pyvisa.VisaIOError, OSError) as exc:
                why = getattr(exc, "abbreviation", None) or exc.__class__.__name__
                raise InstrumentIOError(
                    f"{self.name}: cannot open {self.resource} ({why}); "
                    "check the resource string, cabling and that the instrument is on"
                ) from None
            if self.exclusive:
                self._lock_exclusive(res)
            self._res = res
        return self._res

    def _lock_exclusive(self, res) -> None:
        """Take the VISA exclusive lock, where the backend can; else carry on without."""
        try:
            res.lock_excl(timeout=int(LOCK_WAIT_S * 1000))
        except NotImplementedError:
            log.debug("%s: %s cannot be locked by this backend; no exclusive lock",
                      self.name, self.resource)
            return
        except pyvisa.VisaIOError as exc:
            if exc.error_code in _LOCK_UNSUPPORTED:
                log.debug("%s: %s does not support locking (%s); no exclusive lock",
                          self.name, self.resource, exc.abbreviation)
                return
            _close_quietly(res)
            if exc.error_code in _LOCKED:
                raise InstrumentIOError(
                    f"{self.name}: {self.resource} is locked by another session; close the "
                    "other program using it (or set exclusive = false)") from None
            raise InstrumentIOError(f"{self.name}: cannot lock {self.resource} "
                                    f"({exc.abbreviation})") from None
        self.locked = True
        log.debug("%s: exclusive lock on %s", self.name, self.resource)

    def reconnect(self) -> None:
        with self.lock:
            self.close()
            self.reconnects += 1
            log.debug("%s: reconnecting", self.name)
            self._resource()

    def close(self) -> None:
        with self.lock:
            if self._res is not None:
                if self.locked:
                    try:
                        self._res.unlock()
                    except Exception:  # noqa: BLE001 - closing releases the lock anyway
                        pass
                    self.locked = False
                _close_quietly(self._res)
                self._res = None

    def _reconnect_quietly(self) -> None:
        """Reconnect after a failed last attempt, so that a late or partial reply cannot
        answer the next command; a failure here must not mask the original error."""
        try:
            self.reconnect()
        except InstrumentError:
            pass

    # -- transactions ---------------------------------------------------------------
    def _pace(self) -> None:
        if self.min_interval_s:
            wait = self._last + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()

    def _run(self, describe: str, fn: Callable[[Any], Any], *, retry: bool,
             timeout_s: float | None, parse: Callable[[Any], Any] | None = None,
             reply: bool = False, ask_queue: bool = False) -> Any:
        """One transaction, retried where ``retry``. ``reply``: ``fn`` reads a reply;
        ``ask_queue``: when that reply never comes, ask the error queue why."""
        with self.lock:
            attempts = 1 + (self.retries if retry else 0)
            last: Exception | None = None
            queue_answers = bool(ask_queue and self.error_query)
            for attempt in range(attempts):
                final = attempt == attempts - 1
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
                    if exc.error_code not in _RETRYABLE:
                        break
                    if exc.error_code == _TIMEOUT and reply:
                        # a late reply must not answer the next command: a fresh link
                        if final:
                            self._reconnect_quietly()
                        else:
                            self.reconnect()
                        if queue_answers:
                            refused, queue_answers = self._queued_error()
                            if refused:
                                raise InstrumentReportedError(
                                    f"{self.name}: {_preview(describe, 40)!r} got no reply; "
                                    f"the instrument reported: {refused}") from None
                        if final:
                            break
                        continue
                    if final:
                        break
                    self.reconnect()
                except (ConnectionError, BrokenPipeError) as exc:
                    last = exc
                    log.debug("%s: %s connection error: %s", self.name, _preview(describe), exc)
                    if final:
                        break
                    self.reconnect()
                except (BadReply, ValueError, UnicodeDecodeError) as exc:
                    last = exc
                    log.debug("%s: %s garbled reply: %s", self.name, _preview(describe), exc)
                    # drop whatever is left of the bad reply
                    if final:
                        self._reconnect_quietly()
                        break
                    self.reconnect()
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

    def _queued_error(self) -> tuple[str | None, bool]:
        """Ask the error queue once (short timeout, no retry) after a query got no reply.

        Returns (the queued error or None, whether the queue answered at all).
        """
        try:
            entry = self.query(self.error_query, parse=self._error_entry, retry=False,
                               timeout_s=min(ERROR_QUEUE_TIMEOUT_S, self.timeout_s))
        except InstrumentTimeout:
            return None, False  # not answering at all: do not ask again in this transaction
        except InstrumentError:
            return None, True
        return (None if self._no_error(entry) else entry.strip()), True

    @staticmethod
    def _error_entry(reply: str) -> str:
        """An error-queue entry starts with its code; anything else is a garbled reply."""
        if not _ERROR_ENTRY.match(reply):
            raise BadReply(f"unexpected error-queue reply {reply!r}")
        return reply

    def write(self, command: str, *, retry: bool = True) -> None:
        self._run(command, lambda r: r.write(command), retry=retry, timeout_s=None)

    def query(self, command: str, *, parse: Callable[[str], Any] | None = None,
              timeout_s: float | None = None, retry: bool = True) -> Any:
        return self._run(command, lambda r: r.query(command), retry=retry,
                         timeout_s=timeout_s, parse=parse, reply=True,
                         ask_queue=command != self.error_query)

    def query_block(self, command: str, dtype: str = "f", *, payload: np.ndarray | None = None,
                    payload_dtype: str = "f", timeout_s: float | None = None,
                    retry: bool = True, parse: Callable[[np.ndarray], Any] | None = None) -> Any:
        """One transaction: send ``command`` (with an optional binary block), read a block."""

        def go(res):
            if payload is None:
                return res.query_binary_values(command, datatype=dtype, container=np.array)
            res.write_binary_values(command, payload, datatype=payload_dtype)
            return res.read_binary_values(datatype=dtype, container=np.array)

        return self._run(command, go, retry=retry, timeout_s=timeout_s, parse=parse,
                         reply=True, ask_queue=True)

    def query_with_block(self, command: str, payload: np.ndarray, payload_dtype: str = "f", *,
                         parse: Callable[[str], Any] | None = None,
                         timeout_s: float | None = None, retry: bool = True) -> Any:
        """One transaction: send ``command`` with a binary block, read a text reply."""

        def go(res):
            res.write_binary_values(command, payload, datatype=payload_dtype)
            return res.read()

        return self._run(command, go, retry=retry, timeout_s=timeout_s, parse=parse,
                         reply=True, ask_queue=True)

    # -- the error queue -----------------------------------------------------------
    def check_errors(self, context: str = "") -> None:
        """Drain the error queue; raise if the instrument reported anything."""
        if not self.error_query:
            return
        found = []
        for _ in range(16):
            reply = self.query(self.error_query, parse=self._error_entry)
            if self._no_error(reply):
                break
            found.append(reply.strip())
        if found:
            where = f" after {context}" if context else ""
            raise InstrumentReportedError(f"{self.name} reported{where}: {'; '.join(found)}")


def _number(v: Any) -> bool:
    return (not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.number))
            and math.isfinite(v))


def _whole(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer))


def _close_quietly(res) -> None:
    try:
        res.close()
    except Exception:  # noqa: BLE001 - closing a dead link must not mask the cause
        pass
