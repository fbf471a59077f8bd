"""Instrument errors, each saying what happened and what to do about it."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can act on; the CLI prints its message as one line, no traceback.

    Every toolkit error class derives from it (the hardware layer's, the datasheet's,
    the protocols', the store's and the configs'), so one ``except UserError`` serves.
    """


class InstrumentError(UserError, RuntimeError):
    """Base of every error raised by the hardware abstraction layer."""


class SafetyError(InstrumentError):
    """A request exceeds the chip's safe operating limits; nothing was sent."""


class ArgumentError(InstrumentError, ValueError):
    """A method argument has the wrong type, shape or range; nothing was sent."""


class ArrayShapeError(ArgumentError):
    """An array argument does not match the controller's array."""


class DriverOptionError(InstrumentError, ValueError):
    """A driver or session option (a bench config key) is malformed or out of range.

    Raised by constructors, before any I/O; ``option`` names the offending key.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"option {option}: {message}")
        self.option = option


class InstrumentTimeout(InstrumentError):
    """The instrument did not answer in time, even after retries."""


class InstrumentIOError(InstrumentError):
    """The connection failed or the reply was unreadable, even after retries."""


class InstrumentReportedError(InstrumentError):
    """The instrument's error queue reported a problem with a command."""


class WrongInstrumentError(InstrumentError):
    """The instrument at a resource answers ``*IDN?`` as another model than its driver
    drives; nothing else was sent to it."""


class ControllerResetError(InstrumentError):
    """The array controller restarted mid-run: state it held (the pulse counter, read
    settings) is gone, and a batch in flight may or may not have been applied."""


class ComplianceTrip(InstrumentError):
    """The SMU hit its current compliance: the device may be shorted or stuck high."""


class ProberError(InstrumentError):
    """The prober refused or failed a command."""


class ContactError(ProberError):
    """The prober could not make contact with the die."""


class BadReply(ValueError):
    """A reply could not be parsed (garbled bytes); the session retries."""
