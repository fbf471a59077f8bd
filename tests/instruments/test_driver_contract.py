"""Every registered driver keeps the family's contract (PyMeasure's test_all_instruments.py
is the model): documented, one base, a known role, no I/O when built, identity and
configuration, the guard where it can stress a device, options checked when built,
and only the toolkit's own exceptions on bad input."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import math

import numpy as np
import pytest
import pyvisa

from calib import open_bench
from calib.wiring.config import ROLES
from instruments import (
    DriverOptionError,
    InstrumentError,
    SafetyGuard,
    VisaSession,
)
from instruments.drivers.base import Driver
from instruments.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    UnknownDriverError,
    driver_class,
    driver_names,
)
from instruments.roles import ROLE_NAMES, STRESSING_ROLES
from tests.harness import datasheet, expected_protocol, guard, scripted_session

NAMES = driver_names()
# a built-in driver for each role a composite driver is built from
FOR_ROLE = {"array": "reference-array", "smu": "keithley2450", "switch": "keithley707b",
            "prober": "sentio", "thermal": "thermostream", "clock": "virtual-clock"}
# the simulated bench's emulator serving each role (drivers with their own emulator,
# named as the driver, talk to that one)
EMULATOR = {"array": "array", "smu": "smu", "switch": "switch", "prober": "prober",
            "thermal": "thermostream", "clock": "clock"}
IDN = "ACME,MODEL 1,0001,1.0"


def _parts(cls, script=()):
    """Part drivers on scripted instruments (each must be consumed: see _finish)."""
    parts, instruments = {}, []
    for role in cls.needs:
        part = driver_class(FOR_ROLE[role])
        session, instrument = scripted_session(list(script), **part.session_options)
        parts[role] = part(session, guard(), datasheet())
        instruments.append(instrument)
    return parts, instruments


def _build(name, script=()):
    """``name``'s driver and its scripted instruments (own, then parts)."""
    cls = driver_class(name)
    parts, instruments = _parts(cls, script)
    session = None
    if cls.uses_session:
        session, own = scripted_session(list(script), **cls.session_options)
        instruments.insert(0, own)
    return cls(session, guard(), datasheet(), parts=parts), instruments


# -- the class ----------------------------------------------------------------------
def test_the_known_roles_are_the_bench_configs():
    assert tuple(ROLE_NAMES) == tuple(ROLES)
    assert set(STRESSING_ROLES) <= set(ROLE_NAMES)
    assert set(BUILTIN) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_driver_class_is_documented_and_derives_from_driver(name):
    cls = driver_class(name)
    assert inspect.isclass(cls) and issubclass(cls, Driver), cls
    doc = cls.__dict__.get("__doc__")  # its own docstring, not a base's
    assert doc and doc.strip(), f"{cls.__name__} has no docstring"
    assert cls.role in ROLE_NAMES, cls.role
    assert cls.role in cls.serves()
    assert set(cls.serves()) <= set(ROLE_NAMES), cls.serves()
    assert set(cls.needs) <= set(ROLE_NAMES)
    assert isinstance(cls.session_options, dict)


@pytest.mark.parametrize("name", NAMES)
def test_drivers_that_can_stress_a_device_say_so(name):
    cls = driver_class(name)
    if set(cls.serves()) & set(STRESSING_ROLES):  # array, smu, thermal (a prober's chuck)
        assert cls.stresses_device, f"{cls.__name__} serves {cls.serves()}"


# -- the constructor ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_construction_sends_nothing(name):
    drv, instruments = _build(name)
    for instrument in instruments:
        assert instrument.step == 0
        instrument.finished()
    if drv.session is not None:
        assert drv.session.transactions == 0
    assert drv.transactions == 0


@pytest.mark.parametrize("name", NAMES)
def test_the_guard_is_required_and_kept(name):
    cls = driver_class(name)
    drv, _ = _build(name)
    assert isinstance(drv.guard, SafetyGuard)
    assert drv.limits is drv.guard.limits
    parts, _ = _parts(cls)
    session = scripted_session([])[0] if cls.uses_session else None
    for missing in (None, object(), drv.guard.limits):
        with pytest.raises(DriverOptionError, match="SafetyGuard") as info:
            cls(session, missing, datasheet(), parts=parts)
        assert info.value.option == "guard"


@pytest.mark.parametrize("name", NAMES)
def test_identity_and_configuration(name):
    drv, instruments = _build(name, [("*IDN?", IDN)])
    ident = drv.identity()
    assert isinstance(ident, str) and ident.strip()
    for instrument in instruments:
        instrument.finished()
    sent = [instrument.step for instrument in instruments]
    config = drv.configuration()  # no I/O: the run record is written from memory
    assert [instrument.step for instrument in instruments] == sent
    assert config["driver"] == type(drv).__name__
    assert json.loads(json.dumps(config)) == config


# -- bad input: only the toolkit's own exceptions, nothing else -----------------------
NAN = float("nan")
REFUSED = [NAN, float("inf"), "abc", object(), np.zeros((2, 2, 2))]  # must raise
ODD = [-1, -1.0, 0, None, [], True, -0.0]  # may be accepted; if refused, by our exceptions
# one good call per role method, so each parameter can be made bad on its own
GOOD = {
    ("array", "read"): lambda d: {},
    ("array", "read_cells"): lambda d: {"cells": np.array([0, 1])},
    ("array", "pulse"): lambda d: {"volts": np.zeros(d.shape), "width": 1e-6},
    ("array", "pulse_cells"): lambda d: {"cells": np.array([0]), "volts": np.array([0.5]),
                                         "width": 1e-6},
    ("array", "mvm"): lambda d: {"x_volts": np.zeros(d.shape[0])},
    ("array", "mvm_transposed"): lambda d: {"v_volts": np.zeros(d.shape[1])},
    ("array", "form"): lambda d: {"mask": np.eye(*d.shape, dtype=bool)},
    ("array", "configure_read_voltage"): lambda d: {"volts": 0.2},
    ("array", "configure_read_averages"): lambda d: {"count": 1},
    ("array", "set_mvm_range"): lambda d: {"amps": 1e-3},
    ("smu", "set_compliance"): lambda d: {"amps": 1e-4},
    ("smu", "set_voltage"): lambda d: {"volts": 0.0},
    ("smu", "output"): lambda d: {"on": False},
    ("smu", "set_averaging"): lambda d: {"count": 1},
    ("smu", "set_nplc"): lambda d: {"nplc": 1.0},
    ("smu", "list_sweep"): lambda d: {"volts": np.array([0.1, 0.0]), "dwell_s": 1e-6},
    ("smu", "pulse"): lambda d: {"volts": 1.0, "width_s": 1e-6},
    ("smu", "form_pulse"): lambda d: {"volts": 1.0, "width_s": 1e-6},
    ("switch", "close"): lambda d: {"channels": ["1A01"]},
    ("switch", "open"): lambda d: {"channels": ["1A01"]},
    ("switch", "exclusive_close"): lambda d: {"channels": ["1A01"]},
    ("prober", "goto"): lambda d: {"die": 12},
    ("prober", "set_bin"): lambda d: {"bin_number": 1},
    ("prober", "set_temperature"): lambda d: {"celsius": 25.0},
    ("thermal", "set_temperature"): lambda d: {"celsius": 25.0},
    ("clock", "wait"): lambda d: {"seconds": 0.0},
}
BASE_METHODS = {name for name, _ in inspect.getmembers(Driver, callable)}


def _public_methods(drv):
    for name, fn in inspect.getmembers(type(drv), inspect.isfunction):
        if name.startswith("_") or name in BASE_METHODS:
            continue
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if params:
            yield name, getattr(drv, name), params


@pytest.fixture(scope="module")
def sim():
    """A small simulated bench whose emulators the drivers under test talk to."""
    with open_bench(rows=8, cols=8) as bench:
        bench.prober.goto(12)
        bench.simulation.chip.form()
        yield bench


def _on_the_bench(name, bench):
    """``name``'s driver on its own session to the emulator of its role."""
    cls = driver_class(name)
    sim = bench.simulation
    rm = pyvisa.ResourceManager(sim.visa_library())
    session = None
    if cls.uses_session:
        resources = sim.resources()  # a driver's own emulator where the bench has one
        resource = resources.get(name) or resources[EMULATOR[cls.role]]
        session = VisaSession(rm, resource, name=name,
                              **{**cls.session_options, "timeout_s": 0.05, "retries": 0,
                                 "min_interval_s": 0.0})
    parts = {role: getattr(bench, role) for role in cls.needs}
    options = {}
    if name == "smu-switch-array":
        options = {"word_lines": 4, "bit_lines": 4, "first_bit_column": sim.wiring.word_lines}
    return cls(session, bench.guard, bench.datasheet, parts=parts, **options)


def _calls(drv):
    """(label, method, kwargs, must_refuse) for every parameter of every public method."""
    for mname, method, params in _public_methods(drv):
        good = GOOD.get((drv.role, mname))
        for p in params:
            for bad, refuse in [(b, True) for b in REFUSED] + [(b, False) for b in ODD]:
                if good is None:  # a method the table does not know: every parameter bad
                    kwargs = {q.name: bad for q in params}
                else:
                    kwargs = {**good(drv), p.name: bad}
                shown = " ".join(repr(bad).split())[:30]
                yield f"{mname}({p.name}={shown})", method, kwargs, refuse


def bad_argument_sweep(drv) -> tuple[list[str], list[str]]:
    """Every public method of ``drv`` fed bad arguments: (calls that raised something
    other than an InstrumentError, bad calls that were accepted)."""
    escaped, accepted = [], []
    for label, method, kwargs, must_refuse in _calls(drv):
        try:
            method(**kwargs)
        except InstrumentError:
            continue
        except Exception as exc:  # noqa: BLE001 - collected, then reported all at once
            escaped.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        if must_refuse:
            accepted.append(label)
    return escaped, accepted


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_raise_only_toolkit_errors(name, sim):
    escaped, accepted = bad_argument_sweep(_on_the_bench(name, sim))
    assert not escaped, "exceptions that are not InstrumentError:\n" + "\n".join(escaped)
    assert not accepted, "bad arguments accepted:\n" + "\n".join(accepted)


def test_the_bad_input_table_covers_every_role_method():
    """A method the GOOD table misses is still fed bad values, all at once; the table
    lists every built-in one so each parameter is tested on its own."""
    with open_bench(rows=8, cols=8) as bench:
        missing = []
        for name in BUILTIN:
            drv = _on_the_bench(name, bench)
            missing += [f"{name}.{m}" for m, _, _ in _public_methods(drv)
                        if (drv.role, m) not in GOOD]
    assert not missing, missing


# -- options, checked when the driver is built ----------------------------------------
@pytest.mark.parametrize("name, options, option", [
    ("reference-array", {"forming_voltage": 9.0}, "forming_voltage"),
    ("reference-array", {"forming_voltage": "5 V"}, "forming_voltage"),
    ("reference-array", {"forming_voltage": -5.0}, "forming_voltage"),
    ("reference-array", {"forming_width": 1.0}, "forming_width"),
    ("reference-array", {"forming_width": NAN}, "forming_width"),
    ("reference-array", {"read_voltage": 0.5}, "read_voltage"),
    ("reference-array", {"read_voltage": True}, "read_voltage"),
    ("reference-array", {"read_voltage": 0.0}, "read_voltage"),
    ("smu-switch-array", {"word_lines": 2.5}, "word_lines"),
    ("smu-switch-array", {"word_lines": 0}, "word_lines"),
    ("smu-switch-array", {"word_lines": True}, "word_lines"),
    ("smu-switch-array", {"bit_lines": "8"}, "bit_lines"),
    ("smu-switch-array", {"bit_lines": -4}, "bit_lines"),
    ("smu-switch-array", {"first_bit_column": -1}, "first_bit_column"),
    ("smu-switch-array", {"first_bit_column": 8.0}, "first_bit_column"),
    ("smu-switch-array", {"word_lines": 8, "first_bit_column": 3}, "first_bit_column"),
    ("smu-switch-array", {"word_lines": 60, "bit_lines": 20}, "bit_lines"),
    ("smu-switch-array", {"compliance": 1.0}, "compliance"),
    ("smu-switch-array", {"compliance": -1e-4}, "compliance"),
    ("smu-switch-array", {"compliance": "100 uA"}, "compliance"),
    ("smu-switch-array", {"forming_compliance": 1.0}, "forming_compliance"),
    ("smu-switch-array", {"read_voltage": 0.5}, "read_voltage"),
    ("smu-switch-array", {"forming_voltage": 7.0}, "forming_voltage"),
    ("smu-switch-array", {"forming_width": 0.5}, "forming_width"),
    ("keithley707b", {"verify": "yes"}, "verify"),
    ("keithley707b", {"verify": 1}, "verify"),
    ("sentio", {"settle_window_c": -1.0}, "settle_window_c"),
    ("sentio", {"settle_window_c": "0.5"}, "settle_window_c"),
    ("sentio", {"settle_window_c": float("inf")}, "settle_window_c"),
    ("thermostream", {"window_c": 0.0}, "window_c"),
    ("thermostream", {"window_c": 20.0}, "window_c"),
    ("thermostream", {"window_c": None}, "window_c"),
])
def test_bad_options_are_refused_when_built_naming_the_option(name, options, option):
    cls = driver_class(name)
    parts, instruments = _parts(cls)
    session, own = scripted_session([], **cls.session_options)
    with pytest.raises(DriverOptionError, match=option) as info:
        cls(session if cls.uses_session else None, guard(), datasheet(), parts=parts,
            **options)
    assert info.value.option == option
    for instrument in [own, *instruments]:
        assert instrument.step == 0  # nothing sent


@pytest.mark.parametrize("name, options", [
    ("reference-array", {"forming_voltage": 4.5, "forming_width": 5e-4, "read_voltage": 0.1}),
    ("smu-switch-array", {"word_lines": 4, "bit_lines": 4, "first_bit_column": 16,
                          "compliance": 5e-5, "read_voltage": np.float64(0.15)}),
    ("keithley707b", {"verify": False}),
    ("sentio", {"settle_window_c": 1}),
    ("thermostream", {"window_c": 2.5}),
])
def test_good_options_are_kept_and_recorded(name, options):
    cls = driver_class(name)
    parts, _ = _parts(cls)
    session = scripted_session([], **cls.session_options)[0] if cls.uses_session else None
    drv = cls(session, guard(), datasheet(), parts=parts, **options)
    config = drv.configuration()
    for key, value in options.items():
        assert math.isclose(config[key], value), (key, config[key])
    json.dumps(config)


def test_a_bad_option_in_a_bench_config_names_role_and_option():
    from calib.wiring.bench import Bench
    from calib.wiring.config import BenchConfigError, config_from_dict

    doc = {"simulation": {"rows": 8, "cols": 8},
           "roles": {"array": {"driver": "reference-array", "forming_voltage": 12.0},
                     "clock": {"driver": "virtual-clock"}}}
    with pytest.raises(BenchConfigError, match="roles.array.*forming_voltage"):
        Bench(config_from_dict(doc))


# -- the registry ---------------------------------------------------------------------
class AcmeSmu(Driver):
    """A lab's own SMU driver, registered from its own package."""

    role = "smu"
    stresses_device = True


def _entry_points(*eps):
    real = importlib.metadata.entry_points

    def fake(**params):
        if params.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints(eps)
        return real(**params)

    return fake


def test_a_driver_registered_by_entry_point_is_found(monkeypatch):
    ep = importlib.metadata.EntryPoint(
        name="acme-smu", value=f"{__name__}:AcmeSmu", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(ep))
    assert "acme-smu" in driver_names()
    assert driver_class("acme-smu") is AcmeSmu
    assert driver_class("keithley2450").__name__ == "Keithley2450"  # built-ins still first


def test_a_broken_plugin_names_itself(monkeypatch):
    ep = importlib.metadata.EntryPoint(
        name="broken", value="no_such_module_for_sure:Driver", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(ep))
    with pytest.raises(UnknownDriverError, match="broken.*no_such_module_for_sure"):
        driver_class("broken")


def test_an_unknown_driver_lists_the_known_ones():
    with pytest.raises(UnknownDriverError, match="unknown driver 'keithley9999'") as info:
        driver_class("keithley9999")
    for name in BUILTIN:
        assert name in str(info.value)


def test_expected_protocol_fails_on_a_constructor_that_talks():
    class Chatty(Driver):
        """Sends at construction: the contract test must catch it."""

        role = "smu"

        def __init__(self, session, guard, datasheet=None, *, parts=None):
            super().__init__(session, guard, datasheet, parts=parts)
            session.write("*RST")

    with pytest.raises(AssertionError, match="unexpected extra message"):
        with expected_protocol(lambda s: Chatty(s, guard()), []):
            pass
