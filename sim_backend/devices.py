"""Device laws: pure functions of per-cell arrays and a chip spec.

Kept apart from the chip's state so each law can be read against its source
(see docs/chip-spec.md) and tested on its own. Conductances in siemens,
voltages in volts, times in seconds, temperatures in degrees Celsius.
"""

from __future__ import annotations

import functools

import numpy as np

from sim_backend.spec import ChipSpec

BOLTZMANN_EV = 8.617333262e-5  # eV/K
F32 = np.float32
CYCLES_MAX = np.iinfo(np.uint16).max  # a cell's count of programming events saturates here


def pulse_mean(spec: ChipSpec, g, g_min, g_max, set_rate, reset_rate, volts, width):
    """Mean conductance after one pulse of signed amplitude ``volts`` (V), width (s).

    SET (volts > 0) moves toward g_max, RESET toward g_min, each saturating at
    the cell's bound. Drive = ((|V| - Vth) / (Vref - Vth))^p (width / w_ref)^q,
    zero below threshold. Polarity-specific constants are blended per cell with
    a 0/1 weight so that one pass serves a mixed SET/RESET batch.
    """
    r = spec.response
    is_set = (volts > 0).astype(F32)
    vth = F32(r.reset_threshold) + F32(r.set_threshold - r.reset_threshold) * is_set
    inv_span_set = 1.0 / (r.set_reference - r.set_threshold)
    inv_span_reset = 1.0 / (r.reset_reference - r.reset_threshold)
    inv_span = F32(inv_span_reset) + F32(inv_span_set - inv_span_reset) * is_set
    d = np.abs(volts)
    d -= vth
    np.maximum(d, F32(0.0), out=d)
    d *= inv_span
    if r.amplitude_exponent != 1.0:
        d = d ** F32(r.amplitude_exponent)
    if r.width_exponent:
        d *= (width * F32(1.0 / r.reference_width)) ** F32(r.width_exponent)
    rate = reset_rate + (set_rate - reset_rate) * is_set
    bound = g_min + (g_max - g_min) * is_set
    rate *= d
    if r.law == "exp_saturating":
        keep = np.exp(-rate)
    else:  # soft bounds: linear in the distance to the bound, at most all of it
        keep = F32(1.0) - np.minimum(rate, F32(1.0))
    if r.reset_mode == "abrupt":  # melt-quench: RESET lands at g_min whatever the state
        keep *= is_set
    mean = g - bound
    mean *= keep
    mean += bound
    return mean


def step_sigma(spec: ChipSpec, step: np.ndarray, g_new: np.ndarray, g_max) -> np.ndarray:
    """Sigma of one programming event: cycle-to-cycle plus programming noise."""
    r = spec.response
    sigma = np.abs(step)
    sigma *= F32(r.c2c_relative)
    sigma += F32(r.c2c_absolute)
    if any(r.programming_noise):
        x = g_new / g_max
        np.clip(x, F32(0.0), F32(1.0), out=x)
        coeffs = r.programming_noise
        poly = np.full_like(x, F32(coeffs[-1]))
        for coeff in reversed(coeffs[:-1]):  # Horner
            poly *= x
            poly += F32(coeff)
        np.maximum(poly, F32(0.0), out=poly)
        poly *= poly
        sigma *= sigma
        sigma += poly
        np.sqrt(sigma, out=sigma)
    return sigma


def set_capped(spec: ChipSpec, g_new, g, volts):
    """SET results limited by the 1T1R access transistor, in place.

    The filament grows until the cell, holding the SET threshold voltage, carries the
    compliance current: a SET pulse ends at most at max(set_compliance / set_threshold,
    g) (it never lowers a cell already above the cap). RESET is not limited.
    """
    r = spec.response
    if r.set_compliance <= 0:
        return g_new
    limit = np.maximum(g, F32(r.set_compliance / r.set_threshold))
    limit[volts <= 0] = np.inf
    return np.minimum(g_new, limit, out=g_new)


def relaxation_log_time(spec: ChipSpec, since: np.ndarray) -> np.ndarray:
    """ln(t / 1 s) of the relaxation law, t clamped at the law's t_min."""
    return np.log(np.maximum(since, spec.relaxation.t_min)).astype(np.float32)


def relaxation_start(spec: ChipSpec, scale, z) -> np.ndarray:
    """The walk's deviation at t_min, right after a programming event: scale sigma(t_min) z."""
    rx = spec.relaxation
    return scale * F32(rx.sigma_0 + rx.sigma_per_ln * np.log(rx.t_min)) * z


def relaxation_walk(spec: ChipSpec, dev, ln_from, ln_to, scale, z) -> np.ndarray:
    """The walk's deviation at ln t = ``ln_to``, given it was ``dev`` at ``ln_from``.

    Independent Gaussian increments of variance scale^2 (sigma(ln_to)^2 - sigma(ln_from)^2),
    sigma = sigma_0 + sigma_per_ln ln t: the deviation at any t has the law's spread
    however often it was looked at before, and an earlier value predicts a later one
    only as its mean (a cell read in band can still wander out). ``z``: N(0, 1).
    """
    rx = spec.relaxation
    s0, s1 = rx.sigma_0, rx.sigma_per_ln
    step = ln_to - ln_from
    np.maximum(step, F32(0.0), out=step)
    var = ln_to + ln_from  # sigma(b)^2 - sigma(a)^2 = (b - a) (2 s0 s1 + s1^2 (a + b))
    var *= F32(s1 * s1)
    var += F32(2.0 * s0 * s1)
    var *= step
    np.sqrt(var, out=var)
    var *= scale
    var *= z
    var += dev
    return var


def relaxed(spec: ChipSpec, g0, ln_t, dev) -> np.ndarray:
    """RRAM relaxation: g0 + mean(t) + the walk's deviation, t = time since programming."""
    return g0 + F32(spec.relaxation.mean_per_ln) * ln_t + dev


@functools.lru_cache(maxsize=8)
def _cycle_scales(n0: float, exponent: float) -> np.ndarray:
    n = np.arange(CYCLES_MAX + 1, dtype=np.float64)
    table = (1.0 + np.maximum(n - 1.0, 0.0) / n0) ** -exponent
    table[0] = 0.0
    table = table.astype(F32)
    table.setflags(write=False)
    return table


def relaxation_scale(spec: ChipSpec, cycles: np.ndarray) -> np.ndarray:
    """Share of the law's spread a cell's present state has, from its programming events n.

    (1 + (n - 1)/cycle_n0)^-cycle_exponent: 1 after the first event (forming), smaller
    the more a cell was cycled (NeuRRAM); 0 for a cell never programmed, which keeps the
    mean shift only. A lookup in a table shared by all chips of one law.
    """
    rx = spec.relaxation
    return _cycle_scales(rx.cycle_n0, rx.cycle_exponent).take(cycles)


def drift_log_ratio(spec: ChipSpec, since: np.ndarray) -> np.ndarray:
    """ln(t / t0) of the drift law, 0 before t0."""
    return np.log(np.maximum(since, spec.drift.t0) / spec.drift.t0).astype(np.float32)


def drifted(g0, log_ratio, nu) -> np.ndarray:
    """PCM drift: g0 (t/t0)^-nu = g0 exp(-nu ln(t/t0))."""
    return g0 * np.exp(-nu * log_ratio)


def drift_nu(spec: ChipSpec, g, g_max, z) -> np.ndarray:
    """Per-event drift exponent nu ~ N(mean(x), sigma(x)), x = G/g_max, clipped at 0."""
    d = spec.drift
    ln_x = g / g_max
    np.clip(ln_x, F32(1e-6), F32(1.0), out=ln_x)
    np.log(ln_x, out=ln_x)
    mean = F32(d.nu_mean_a) * ln_x
    mean += F32(d.nu_mean_b)
    np.clip(mean, F32(d.nu_mean_lo), F32(d.nu_mean_hi), out=mean)
    sigma = ln_x
    sigma *= F32(d.nu_sigma_a)
    sigma += F32(d.nu_sigma_b)
    np.clip(sigma, F32(d.nu_sigma_lo), F32(d.nu_sigma_hi), out=sigma)
    sigma *= z
    mean += sigma
    return np.maximum(mean, F32(0.0), out=mean)


def temperature_coefficient(spec: ChipSpec, g, g_max, cell=None, die_scale: float = 1.0):
    """Each cell's temperature coefficient in its present state, or None (model none).

    two_state: dlnG/dT in 1/K, interpolated in ln G between ``g_low`` and ``g_high``;
    arrhenius: the activation energy Ea in eV, interpolated in x = G/g_max. The law
    is scaled by the die's ``die_scale`` and the cell's own deviation ``cell`` (1/K
    or eV, drawn once per cell) is added: device-to-device and die-to-die spreads.
    """
    t = spec.temperature
    if t.model == "none":
        return None
    if t.model == "two_state":
        lo, hi = np.log(t.g_low), np.log(t.g_high)
        w = np.clip((np.log(np.maximum(g, F32(1e-12))) - F32(lo)) * F32(1.0 / (hi - lo)), 0, 1)
        coeff = F32(t.coeff_low) + (F32(t.coeff_high - t.coeff_low)) * w
    else:
        x = np.clip(g / g_max, F32(0.0), F32(1.0))
        coeff = F32(t.ea_low) + F32(t.ea_high - t.ea_low) * x
    if die_scale != 1.0:
        coeff *= F32(die_scale)
    if cell is not None:
        coeff += cell
    return coeff


def temperature_factor(spec: ChipSpec, g, g_max, temperature_c: float, cell=None,
                       die_scale: float = 1.0):
    """Multiplicative effect of the die temperature on conductance (None at reference).

    two_state: G exp(c (T - T_ref)); arrhenius: G exp(-Ea/k (1/T - 1/T_ref)), with the
    per-cell coefficient of :func:`temperature_coefficient`.
    """
    t = spec.temperature
    delta = temperature_c - t.reference
    if t.model == "none" or delta == 0.0:
        return None
    coeff = temperature_coefficient(spec, g, g_max, cell, die_scale)
    if t.model == "two_state":
        return np.exp(coeff * F32(delta))
    inv = 1.0 / (temperature_c + 273.15) - 1.0 / (t.reference + 273.15)
    return np.exp(-coeff * F32(inv / BOLTZMANN_EV))


def arrhenius_factor(ea_ev, temperature_c, reference_c: float):
    """How many times faster a process of activation energy ``ea_ev`` runs at
    ``temperature_c`` than at ``reference_c``: exp(Ea/k (1/T_ref - 1/T)); exactly 1
    at the reference or for Ea = 0. Broadcasts; float64."""
    inv = 1.0 / (reference_c + 273.15) - 1.0 / (np.asarray(temperature_c, np.float64) + 273.15)
    return np.exp(np.asarray(ea_ev, np.float64) * (inv / BOLTZMANN_EV))


def column_chain(gain_tc: np.ndarray, offset_tc: np.ndarray, temperature_c: float,
                 reference_c: float):
    """Per-column (gain, offset) of the read-out chain at ``temperature_c``, or None at
    the reference temperature, where the chain is trimmed (gain 1, offset 0).

    gain = 1 + gain_tc (T - T_ref); offset = offset_tc (T - T_ref), a fraction of the
    ADC's full scale (so it follows a programmable TIA range). float32, shape (cols,).
    """
    delta = temperature_c - reference_c
    if delta == 0.0:
        return None
    gain = (1.0 + gain_tc * delta).astype(F32)
    offset = (offset_tc * delta).astype(F32)
    return gain, offset


def read_spread(spec: ChipSpec, since: np.ndarray, integrations: int = 1) -> np.ndarray:
    """pcm_1f: sqrt(ln((t + t_r) / (2 t_r))), the 1/f growth with time since programming.

    ``integrations`` conversions averaged are one integration that many times
    longer (t_r -> n t_r): 1/f noise shrinks only logarithmically with it.
    """
    n = spec.read_noise
    t_r = n.t_read * integrations
    arg = (np.asarray(since, np.float64) + t_r) / (2.0 * t_r)
    return np.sqrt(np.log(np.maximum(arg, 1.0))).astype(np.float32)


def read_sigma(spec: ChipSpec, g, g_max, spread, integrations: int = 1) -> np.ndarray:
    """Sigma of one read of conductance ``g``; ``spread`` from :func:`read_spread`.

    pcm_1f with ``integrations`` > 1: the sigma of the whole averaged read (the
    white floor averages down as 1/sqrt(n), the 1/f part through ``spread``).
    """
    n = spec.read_noise
    if n.model == "relative":
        return g * F32(n.relative) + F32(n.absolute)
    x = np.clip(g / g_max, F32(1e-6), F32(1.0))
    q = np.minimum(F32(n.q_scale) * x ** F32(n.q_exponent), F32(n.q_max))
    return g * q * spread + F32(n.absolute / np.sqrt(integrations))


def quantize(values: np.ndarray, full_scale: float, bits: int, signed: bool) -> np.ndarray:
    """An ideal ADC: clip to range, round to the nearest code."""
    levels = (1 << bits) - 1
    if signed:
        lsb = F32(2.0 * full_scale / levels)
        lo = -F32(full_scale)
    else:
        lsb = F32(full_scale / levels)
        lo = F32(0.0)
    codes = np.clip(values, lo, F32(full_scale))
    codes *= F32(1.0) / lsb
    np.rint(codes, out=codes)
    codes *= lsb
    return codes
