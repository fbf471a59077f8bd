"""Per-technology protocol defaults, from the chip's datasheet.

The host knows a chip only by its datasheet (:class:`instruments.datasheet.ChipDatasheet`).
Its ``[programming]`` section may state the nominal programming behaviour; each field
it leaves out (None) takes its technology's default below, the values the bundled
datasheets ``data/datasheets/{rram,pcm}.toml`` state as well.

============================  =============  =============
field (``programming.*``)     rram           pcm
============================  =============  =============
``set_threshold``             0.9 V          0.8 V
``reset_threshold``           1.0 V          1.5 V
``set_reference``             2.0 V          1.2 V
``reset_reference``           2.2 V          2.0 V
``amplitude_exponent``        2              2
``reference_width``           1 us           100 ns
``width_exponent``            0.5            0.5
``reset``                     gradual        abrupt
``read_noise``                white          1/f
``retention``                 relaxation     drift
``drift_onset``               20 s           20 s
============================  =============  =============

What they mean for write-verify (:func:`write_verify_params`):

* the pulse model (:func:`pulse_model`) is the thresholds, references, exponents and
  reference width, capped at ``limits.max_program_voltage`` and ``limits.max_pulse_width``;
  the protocol learns every cell's own response on top of this shape;
* ``retention = "relaxation"`` (RRAM): each touch-up waits as long as the phase before
  it took, at least 3 s (the protocol's default);
* ``retention = "drift"`` (PCM): a fixed wait of a quarter of ``drift_onset``
  (``relax_wait_factor`` 0), and no touch-up: the state holds until drift sets in, so
  a touch-up would only re-read confirmed cells (a ``relax_wait_s`` > 0 given brings
  the default rounds back);
* ``reset = "abrupt"`` (PCM, melt-quench): an overshoot costs a RESET and a fresh
  climb, an undershoot one more small SET: SETs aim short by the learned landing
  scatter (``overshoot_cost`` 3, ``aim`` 0.95) and a confirmation that would end in a
  RESET may take 24 reads;
* ``read_noise = "1/f"`` (PCM: 0.4-0.9 uS, which averaging on the instrument barely
  reduces): a strict sequential confirmation, up to 16 reads (16 before a RESET too,
  unless abrupt), confidence z 2.5 with no floor on the zone, relaxed x0.7 per
  rejected confirmation after the third (down to 0.5); and two ends to the tail such
  noise makes: a soft deadline (``deadline_factor`` 1.6: once 99 % of a phase's cells
  are settled after k iterations, the rest are settled on their reads after 1.6 k, so
  cells whose reads cannot settle a confirmation do not hold the run) and
  ``escalate_pulses`` 10 (a cell that never moved clearly in 10 pulses and still reads
  within a band of zero gets the strongest pulse: a stuck-low cell's small pulses
  would otherwise be lost in the noise until ``max_pulses``, never classified).
  Measured on PCM: 1024^2 in 136 iterations instead of 198, in band unchanged, the
  harsh chip's stuck-low cells classified (docs/write-verify.md, "The tail and the
  stuck-low cells").
"""

from __future__ import annotations

import math
import numbers
from dataclasses import fields

from instruments.datasheet import ChipDatasheet, Programming
from protocols.write_verify import PulseModel, WriteVerifyError, WriteVerifyParams

DEFAULTS: dict[str, Programming] = {
    "rram": Programming(
        set_threshold=0.9, reset_threshold=1.0, set_reference=2.0, reset_reference=2.2,
        amplitude_exponent=2.0, reference_width=1e-6, width_exponent=0.5, reset="gradual",
        read_noise="white", retention="relaxation", drift_onset=20.0),
    "pcm": Programming(
        set_threshold=0.8, reset_threshold=1.5, set_reference=1.2, reset_reference=2.0,
        amplitude_exponent=2.0, reference_width=100e-9, width_exponent=0.5, reset="abrupt",
        read_noise="1/f", retention="drift", drift_onset=20.0),
}
MAX_READ_AVERAGES = 1024
_FIELDS = tuple(f.name for f in fields(Programming))


def programming(datasheet: ChipDatasheet) -> Programming:
    """The datasheet's programming fields, each None replaced by the technology's default."""
    defaults = DEFAULTS.get(datasheet.technology)
    if defaults is None:
        raise WriteVerifyError(f"chip.technology: no protocol defaults for "
                               f"{datasheet.technology!r}; known: {', '.join(DEFAULTS)}")
    given = datasheet.programming
    return Programming(**{name: getattr(defaults, name) if getattr(given, name) is None
                          else getattr(given, name) for name in _FIELDS})


def pulse_model(datasheet: ChipDatasheet) -> PulseModel:
    """The chip's nominal pulse response, capped at its safe limits.

    The protocol learns every cell's actual response on top of this shape; it
    never sees a cell's own parameters.
    """
    p = programming(datasheet)
    lim = datasheet.limits
    return PulseModel(set_threshold=p.set_threshold, reset_threshold=p.reset_threshold,
                      set_reference=p.set_reference, reset_reference=p.reset_reference,
                      amplitude_exponent=p.amplitude_exponent, width_reference=p.reference_width,
                      width_exponent=p.width_exponent, v_max=lim.max_program_voltage,
                      w_max=lim.max_pulse_width)


def write_verify_params(datasheet: ChipDatasheet, tolerance: float = 1e-6,
                        max_pulses: int | None = None, relax_wait_s: float | None = None,
                        read_averages: int | None = None) -> WriteVerifyParams:
    """Write-verify parameters that suit the chip (see the module's table).

    ``max_pulses``: per cell (>= 1). ``relax_wait_s`` given: exactly that wait before
    each touch-up (0: no touch-up; finite). ``read_averages``: conversions per verify
    read, 1..1024.
    """
    _check_options(max_pulses, relax_wait_s, read_averages)
    p = programming(datasheet)
    extra: dict = {} if max_pulses is None else {"max_pulses": max_pulses}
    if p.retention == "drift":
        extra["relax_wait_s"] = 0.25 * p.drift_onset
        extra["relax_wait_factor"] = 0.0
        # the state holds until drift sets in: a touch-up would only re-read cells
        # already confirmed (the strict confirmation below does that work)
        extra["touchup_rounds"] = 0
    if p.reset == "abrupt":
        extra["aim"] = 0.95
        extra["overshoot_cost"] = 3.0
        extra["max_confirm_reads_reset"] = 24
    if p.read_noise == "1/f":
        extra["max_confirm_reads"] = 16
        extra.setdefault("max_confirm_reads_reset", 16)
        extra.update(accept_confidence=2.5, accept_min_fraction=0.0, accept_relax=0.7,
                     accept_confidence_min=0.5, deadline_factor=1.6, escalate_pulses=10)
    if relax_wait_s is not None:
        extra["relax_wait_s"] = relax_wait_s
        extra["relax_wait_factor"] = 0.0
        if relax_wait_s > 0:  # a wait asked for: the touch-ups it is for (drift too)
            extra.pop("touchup_rounds", None)
    if read_averages is not None:
        extra["read_averages"] = read_averages
    return WriteVerifyParams(tolerance=tolerance, pulse_model=pulse_model(datasheet), **extra)


def _check_options(max_pulses, relax_wait_s, read_averages) -> None:
    if relax_wait_s is not None and not (_is_number(relax_wait_s) and relax_wait_s >= 0
                                         and math.isfinite(relax_wait_s)):
        raise WriteVerifyError(f"relax_wait_s: must be a finite number of seconds >= 0, "
                               f"got {relax_wait_s!r}")
    if max_pulses is not None and not (_is_number(max_pulses) and max_pulses >= 1):
        raise WriteVerifyError(f"max_pulses: must be at least 1, got {max_pulses!r}")
    if read_averages is not None and not (_is_number(read_averages)
                                          and 1 <= read_averages <= MAX_READ_AVERAGES):
        raise WriteVerifyError(f"read_averages: must be within 1..{MAX_READ_AVERAGES}, "
                               f"got {read_averages!r}")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def variability_params(datasheet: ChipDatasheet, quick: bool = False, cycles: int | None = None,
                       max_pulses_per_cell: int | None = None, **overrides):
    """Variability-map parameters that suit the chip (``protocols.variability``).

    From the datasheet: the window, forming (``required``, ``pristine_below``), the
    nominal pulse model (:func:`pulse_model`, capped at the limits). Per technology:
    an abrupt RESET (PCM) is one melt-quench whatever the state, so its trains use
    the reference RESET and 3 pulses suffice; 1/f read noise (PCM) is not divided by
    the instrument's averaging when judging a move. ``quick``: 2 cycles instead of 5
    (the same code; C2C from two cycles is rough). ``cycles`` overrides either.
    ``max_pulses_per_cell``: the endurance budget (default 200).
    """
    from protocols.variability.params import VariabilityError, VariabilityParams

    p = programming(datasheet)
    if cycles is None:
        cycles = 2 if quick else 5
    extra: dict = {}
    if p.reset == "abrupt":
        extra["reset_pulses"] = 3
    if max_pulses_per_cell is not None:
        extra["max_pulses_per_cell"] = max_pulses_per_cell
    extra.update(overrides)
    w = datasheet.window
    try:
        return VariabilityParams(
            window_g_min_s=w.g_min, window_g_max_s=w.g_max,
            pristine_below_s=datasheet.pristine_below,
            forming_required=bool(datasheet.forming.required),
            pulse_model=pulse_model(datasheet), abrupt_reset=p.reset == "abrupt",
            white_read_noise=p.read_noise != "1/f", cycles=cycles, **extra)
    except TypeError as exc:
        raise VariabilityError(str(exc)) from None
