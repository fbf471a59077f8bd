"""VisaSession: settings checked before any I/O, the error queue asked when a query gets
no reply, and the optional VISA exclusive lock."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from pyvisa.constants import StatusCode

from calib import open_bench
from instruments import (
    DriverOptionError,
    InstrumentIOError,
    InstrumentReportedError,
    InstrumentTimeout,
    VisaSession,
)
from sim_backend.framing import block
from tests.harness import RESOURCE, locking_library, scripted_session

LIST = b":MEAS:ARR:LIST? " + block(np.array([5, 2], "<u4").tobytes())


# -- settings (item: negative retries meant no command was ever sent) -------------------
@pytest.mark.parametrize("setting, value", [
    ("retries", -1), ("retries", 1.5), ("retries", True), ("retries", "2"),
    ("timeout_s", 0), ("timeout_s", -1.0), ("timeout_s", float("nan")),
    ("timeout_s", float("inf")), ("timeout_s", "2"), ("timeout_s", None),
    ("min_interval_s", -0.05), ("min_interval_s", float("nan")), ("min_interval_s", "0"),
    ("exclusive", "yes"), ("exclusive", 1),
    ("read_termination", None), ("write_termination", 10),
])
def test_bad_settings_are_refused_naming_them(setting, value):
    with pytest.raises(DriverOptionError, match=setting) as info:
        scripted_session([], **{setting: value})
    assert info.value.option == setting


@pytest.mark.parametrize("setting, value", [
    ("retries", -1), ("timeout_s", 0.0), ("min_interval_s", -1.0)])
def test_settings_are_checked_when_changed_later_too(setting, value):
    session, _ = scripted_session([])
    with pytest.raises(DriverOptionError, match=setting):
        setattr(session, setting, value)


def test_zero_retries_still_sends_each_command_once():
    session, instrument = scripted_session([("*IDN?", "ACME,1,2,3")], retries=0)
    assert session.query("*IDN?") == "ACME,1,2,3"
    instrument.finished()
    session, instrument = scripted_session([("*IDN?", "ACME,1,2,3")],
                                           retries=np.int64(3), timeout_s=np.float32(0.5))
    assert session.query("*IDN?") == "ACME,1,2,3"
    assert session.retries == 3 and isinstance(session.retries, int)


# -- the error queue when a query gets no reply ---------------------------------------
def test_a_refused_query_reports_the_instruments_error_not_a_timeout():
    session, instrument = scripted_session([
        (LIST, None),  # the board refuses: queues -222, sends nothing
        (":SYST:ERR?", '-222,"Data out of range; list indices must increase strictly"'),
    ])
    with pytest.raises(InstrumentReportedError, match="-222.*increase strictly"):
        session.query_block(":MEAS:ARR:LIST? ", payload=np.array([5, 2], "<u4"),
                            payload_dtype="I")
    instrument.finished()


def test_a_refused_query_is_not_retried():
    session, instrument = scripted_session([
        ("*IDN?", None), (":SYST:ERR?", '-113,"Undefined header"'),
    ], retries=2)
    with pytest.raises(InstrumentReportedError, match="-113"):
        session.query("*IDN?")
    instrument.finished()  # one attempt: retrying a refused command cannot help


def test_an_empty_queue_leaves_it_a_timeout_and_retries_go_on():
    session, instrument = scripted_session([
        ("*IDN?", None), (":SYST:ERR?", '0,"No error"'),
        ("*IDN?", "ACME,1,2,3"),
    ], retries=1)
    assert session.query("*IDN?") == "ACME,1,2,3"
    instrument.finished()
    session, instrument = scripted_session([
        ("*IDN?", None), (":SYST:ERR?", '0,"No error"'),
    ])
    with pytest.raises(InstrumentTimeout, match="no answer to"):
        session.query("*IDN?")
    instrument.finished()


def test_an_instrument_that_answers_nothing_is_asked_once_and_is_a_timeout():
    session, instrument = scripted_session([
        ("*IDN?", None), (":SYST:ERR?", None),  # the error query times out too
        ("*IDN?", None),  # no second error query: the queue did not answer
    ], retries=1, timeout_s=0.05)
    with pytest.raises(InstrumentTimeout, match="no answer to"):
        session.query("*IDN?")
    instrument.finished()


def test_no_error_queue_no_question():
    session, instrument = scripted_session([("*IDN?", None)], error_query=None)
    with pytest.raises(InstrumentTimeout):
        session.query("*IDN?")
    instrument.finished()


def test_a_garbled_error_queue_reply_is_asked_again_not_reported():
    session, instrument = scripted_session([
        (":SYST:ERR?", "#vx5z?((5(x"), (":SYST:ERR?", '0,"No error"'),
    ], retries=1)
    session.check_errors()  # a garbled reply is not an error the instrument reported
    instrument.finished()


@pytest.mark.parametrize("transport", ["inprocess", "tcp"])
def test_a_board_refusal_surfaces_as_its_error_through_the_emulator(transport):
    with open_bench(transport=transport, rows=8, cols=8) as bench:
        session = bench.sessions["array"]
        session.timeout_s = 0.3
        t0 = time.monotonic()
        with pytest.raises(InstrumentReportedError, match="-222"):
            session.query_block(":MEAS:ARR:LIST? ", payload=np.array([5, 2], "<u4"),
                                payload_dtype="I")
        assert time.monotonic() - t0 < 2.0  # one timeout, not one per retry
        assert session.query("*IDN?").startswith("AIMC")  # and the link works on


# -- the VISA exclusive lock -------------------------------------------------------------
def test_no_lock_unless_asked():
    session, _ = scripted_session([("*IDN?", "ACME")],
                                  library=locking_library(StatusCode.success))
    session.query("*IDN?")
    assert session.rm.visalib.lock_calls == [] and not session.locked


def test_exclusive_takes_the_lock_on_every_open_and_releases_it():
    session, instrument = scripted_session(
        [("*IDN?", "ACME"), ("*IDN?", "ACME")],
        library=locking_library(StatusCode.success), exclusive=True)
    lib = session.rm.visalib
    session.query("*IDN?")
    assert len(lib.lock_calls) == 1 and session.locked
    session.reconnect()
    session.query("*IDN?")
    assert len(lib.lock_calls) == 2  # a reconnect locks the new link too
    session.close()
    assert lib.unlock_calls == 2 and not session.locked
    instrument.finished()


def test_a_backend_without_locking_carries_on_with_a_debug_line(caplog):
    session, instrument = scripted_session(
        [("*IDN?", "ACME")],
        library=locking_library(StatusCode.error_nonsupported_operation), exclusive=True)
    with caplog.at_level(logging.DEBUG, logger="instruments.visa"):
        assert session.query("*IDN?") == "ACME"
    assert not session.locked
    assert any("does not support locking" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)
    instrument.finished()


def test_a_resource_locked_by_another_session_is_a_clear_error():
    session, instrument = scripted_session(
        [], library=locking_library(StatusCode.error_resource_locked), exclusive=True)
    with pytest.raises(InstrumentIOError, match="is locked by another session"):
        session.query("*IDN?")
    instrument.finished()  # nothing was sent
    assert session._res is None


def test_pyvisa_py_raw_sockets_cannot_lock_and_the_session_works_anyway(caplog):
    import pyvisa

    with open_bench(transport="tcp", rows=8, cols=8) as bench:
        resource = bench.sessions["array"].resource
        session = VisaSession(pyvisa.ResourceManager("@py"), resource, exclusive=True,
                              timeout_s=1.0)
        with caplog.at_level(logging.DEBUG, logger="instruments.visa"):
            assert session.query("*IDN?").startswith("AIMC")
        session.close()
    assert not session.locked
    assert any("locking" in r.getMessage() for r in caplog.records)


def test_a_bench_config_may_ask_for_the_lock():
    from calib.wiring.bench import Bench
    from calib.wiring.config import config_from_dict

    doc = {"simulation": {"rows": 8, "cols": 8},
           "roles": {"array": {"driver": "reference-array", "exclusive": True},
                     "clock": {"driver": "virtual-clock"}}}
    bench = Bench(config_from_dict(doc))
    try:
        assert bench.sessions["array"].exclusive
        assert bench.array.read().shape == (8, 8)
    finally:
        bench.close()


def test_resource_string_is_checked():
    import pyvisa

    from sim_backend.visa_library import SimVisaLibrary

    rm = pyvisa.ResourceManager(SimVisaLibrary({RESOURCE: object()}))
    for bad in ("", "  ", None, 5):
        with pytest.raises(DriverOptionError, match="resource"):
            VisaSession(rm, bad)
