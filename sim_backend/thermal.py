"""First-order thermal models on the virtual clock (chuck, air forcer), and the die on them."""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

import numpy as np

from sim_backend.clock import VirtualClock


class ThermalModel:
    """Temperature approaching its set point exponentially (time constant tau)."""

    def __init__(self, clock: VirtualClock, start_c: float = 25.0, tau_s: float = 60.0,
                 window_c: float = 0.5) -> None:
        self.clock = clock
        self.tau_s = tau_s
        self.window_c = window_c
        self.setpoint_c = start_c
        self._from_c = start_c
        self._since = clock.now

    def temperature(self) -> float:
        dt = self.clock.now - self._since
        return self.setpoint_c + (self._from_c - self.setpoint_c) * math.exp(-dt / self.tau_s)

    def set(self, setpoint_c: float) -> None:
        self._from_c = self.temperature()
        self._since = self.clock.now
        self.setpoint_c = float(setpoint_c)

    def disturb(self, delta_c: float) -> None:
        """Jump by ``delta_c`` (degC) from where the temperature is now, then relax
        toward the same set point with the same time constant (a ``chuck`` fault)."""
        self._from_c = self.temperature() + float(delta_c)
        self._since = self.clock.now

    def settled(self) -> bool:
        return abs(self.temperature() - self.setpoint_c) <= self.window_c

    def state(self) -> str:
        t = self.temperature()
        if abs(t - self.setpoint_c) <= self.window_c:
            return "Settled"
        return "Heating" if t < self.setpoint_c else "Cooling"


# -- the die on the chuck ---------------------------------------------------------------
TRANSIENT_TAUS = 40.0  # after 40 time constants a transient is below 1e-17 of its step


@dataclass(frozen=True)
class _Segment:
    """An interval over which the chuck's and the forcer's parameters stayed put.

    Times are seconds on the virtual clock, temperatures degC; ``u`` is the time
    since ``start``. The chuck follows ThermalModel's own law, the die's lag ``L``
    the closed-form solution of dL/dt = (chuck - L) / tau_die.
    """

    start: float
    chuck_set: float
    chuck_start: float
    chuck_tau: float
    lag_start: float
    forcer_on: bool
    forcer_set: float
    forcer_start: float
    forcer_tau: float

    def lag(self, u, tau_die: float):
        s, c0, tc = self.chuck_set, self.chuck_start, self.chuck_tau
        if abs(tc - tau_die) <= 1e-9 * tc:  # equal time constants: (a + b u) e^(-u/tau)
            return s + (self.lag_start - s + (c0 - s) * u / tc) * np.exp(-u / tc)
        a = (c0 - s) * tc / (tc - tau_die)
        return s + a * np.exp(-u / tc) + (self.lag_start - s - a) * np.exp(-u / tau_die)

    def forcer(self, u):
        return self.forcer_set + (self.forcer_start - self.forcer_set) * np.exp(
            -u / self.forcer_tau)

    def die(self, u, tau_die: float, ambient_c: float, offset: float):
        if self.forcer_on:
            return self.forcer(u)
        return ambient_c + (1.0 - offset) * (self.lag(u, tau_die) - ambient_c)

    def constant(self) -> bool:
        if self.forcer_on:
            return self.forcer_start == self.forcer_set
        return self.chuck_start == self.chuck_set == self.lag_start

    def taus(self, tau_die: float) -> tuple[float, ...]:
        return (self.forcer_tau,) if self.forcer_on else (self.chuck_tau, tau_die)


@functools.cache
def _gauss_legendre() -> tuple[np.ndarray, np.ndarray]:
    """8-point Gauss-Legendre nodes and weights on [-1, 1] (imported on first use)."""
    return np.polynomial.legendre.leggauss(8)


class DieThermalPath:
    """The true temperature of a die on the chuck (degC), hidden from the host.

    The die follows the chuck's temperature through a first-order lag of its own
    (``tau_s``) and sits a per-die share ``offset`` of (chuck - ambient) short of
    it: T_die = ambient + (1 - offset) (L - ambient). While the air forcer blows
    (``forcer_active``, kept current by the bench) the die has the forcer's
    temperature. The path keeps its history as segments of constant source
    parameters, found by comparing the sources' state at every query, so the die
    temperature at any past moment, and time integrals over it
    (:meth:`die_nodes`), are exact whatever the clock did between queries. A set
    point change is dated by the source itself; a forcer switch by the last query
    before it was seen (within one transaction).
    """

    def __init__(self, clock: VirtualClock, chuck: ThermalModel, forcer: ThermalModel,
                 tau_s: float = 30.0, ambient_c: float = 25.0) -> None:
        if not (math.isfinite(tau_s) and tau_s > 0):
            raise ValueError(f"die time constant must be positive, got {tau_s!r} s")
        self.clock, self.chuck, self.forcer = clock, chuck, forcer
        self.tau_s = float(tau_s)
        self.ambient_c = float(ambient_c)
        self.forcer_active = False
        now = clock.now
        self._snap = self._snapshot()
        self._synced_at = now
        self._starts = [now]
        self._segments = [self._segment(now, chuck.temperature())]

    def _snapshot(self) -> tuple:
        c, f = self.chuck, self.forcer
        return (c.setpoint_c, c._from_c, c._since, c.tau_s,
                f.setpoint_c, f._from_c, f._since, f.tau_s, bool(self.forcer_active))

    def _segment(self, t: float, lag_c: float) -> _Segment:
        def source_at(model: ThermalModel) -> float:
            dt = max(0.0, t - model._since)
            return model.setpoint_c + (model._from_c - model.setpoint_c) * math.exp(
                -dt / model.tau_s)

        c, f = self.chuck, self.forcer
        return _Segment(t, c.setpoint_c, source_at(c), c.tau_s, float(lag_c),
                        bool(self.forcer_active), f.setpoint_c, source_at(f), f.tau_s)

    def sync(self) -> None:
        """Start a new segment if a source changed since the last query."""
        now = self.clock.now
        snap = self._snapshot()
        if snap != self._snap:
            t = self._synced_at
            if snap[:4] != self._snap[:4]:
                t = max(t, snap[2])
            if snap[4:8] != self._snap[4:8]:
                t = max(t, snap[6])
            t = min(t, now)
            last = self._segments[-1]
            new = self._segment(t, float(last.lag(t - last.start, self.tau_s)))
            if t == last.start:
                self._segments[-1] = new
            else:
                self._starts.append(t)
                self._segments.append(new)
            self._snap = snap
        self._synced_at = max(self._synced_at, now)

    def die_temperature(self, offset: float = 0.0) -> float:
        """The die's temperature now, degC, for a die of chuck-offset share ``offset``."""
        self.sync()
        seg = self._segments[-1]
        return float(seg.die(self.clock.now - seg.start, self.tau_s, self.ambient_c, offset))

    def die_nodes(self, t1: float, t2: float, offset: float = 0.0):
        """A quadrature rule over [t1, t2]: (weights in s, die temperatures in degC).

        sum(w * f(T)) integrates any smooth f of the die temperature over the
        interval: 8-point Gauss-Legendre per piece of the shortest time constant
        through a transient, one node over a constant stretch.
        """
        self.sync()
        t2 = min(t2, self.clock.now)
        weights, temps = [], []
        if t1 < self._starts[0]:  # before the path existed: the first state held
            first = self._segments[0]
            end = min(t2, self._starts[0])
            weights.append(np.array([end - t1]))
            temps.append(np.atleast_1d(first.die(0.0, self.tau_s, self.ambient_c, offset)))
            t1 = end
        i = max(0, bisect.bisect_right(self._starts, t1) - 1)
        while i < len(self._segments) and t1 < t2:
            seg = self._segments[i]
            end = self._starts[i + 1] if i + 1 < len(self._starts) else t2
            b = min(t2, end)
            if b > t1:
                u, w = self._seg_nodes(seg, t1 - seg.start, b - seg.start)
                weights.append(w)
                temps.append(np.atleast_1d(seg.die(u, self.tau_s, self.ambient_c, offset)))
            t1 = max(t1, b)
            i += 1
        if not weights:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(weights), np.concatenate(temps).astype(np.float64)

    def _seg_nodes(self, seg: _Segment, ua: float, ub: float):
        if seg.constant():
            return np.array([0.5 * (ua + ub)]), np.array([ub - ua])
        taus = seg.taus(self.tau_s)
        h, horizon = min(taus), TRANSIENT_TAUS * max(taus)
        us, ws = [], []
        top = min(ub, horizon)
        if top > ua:
            inner = np.arange(math.ceil(ua / h) * h, top, h)
            edges = np.unique(np.concatenate([[ua], inner, [top]]))
            a, b = edges[:-1, None], edges[1:, None]
            nodes, weights = _gauss_legendre()
            us.append((0.5 * (a + b) + 0.5 * (b - a) * nodes).ravel())
            ws.append((0.5 * (b - a) * weights).ravel())
        if ub > horizon:  # the transient is over: one node
            lo = max(ua, horizon)
            us.append(np.array([0.5 * (lo + ub)]))
            ws.append(np.array([ub - lo]))
        return np.concatenate(us), np.concatenate(ws)
