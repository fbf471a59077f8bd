"""Conductance updates as pulses chosen by the persistent response model.

An algorithm asks for signed conductance changes (S) of some devices; the response
model (:class:`protocols.write_verify.AdaptiveResponse`, the one write-verify learned
on this die and stored) turns each into one pulse's amplitude and width, all in one
pulse transaction (SET and RESET together). The next read tells the model what each
device did, so what programming learned about a cell goes on being refined by
training rather than relearned.

Two ways to change a pair. ``pair`` (:func:`pair_changes`, RRAM): the device that should
come down is RESET toward the floor, the other SET for the rest. ``set-only``
(:func:`set_only_changes`, PCM, whose abrupt melt-quench RESET wipes a device rather than
stepping it down): only the device whose increase gives the wanted sign is SET (G+ for a
rise, G- for a fall); both climb over training, so a pair whose device nears ``g_max`` is
refreshed (:func:`refresh_due`): read, both devices re-programmed by write-verify to the
difference, the low one at the floor (Nandakumar et al. 2020, Boybat et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.profiles import programming
from protocols.write_verify.response import RESET, SET

UPDATES = ("auto", "pair", "set-only")
REFRESH_SHARE = 0.9  # of the window above g_min: a device read above it triggers a refresh
REFRESH_GAIN = 0.05  # of the window: what a refresh must take off the pair's low device


def update_rule(wanted: str, datasheet) -> str:
    """``pair`` or ``set-only`` for ``wanted`` (``auto``: set-only where the datasheet's
    RESET is abrupt, PCM's melt-quench; pair elsewhere)."""
    if wanted != "auto":
        return wanted
    return "set-only" if programming(datasheet).reset == "abrupt" else "pair"


@dataclass(frozen=True, eq=False)
class PulseBatch:
    """One batch sent: flat cells, polarity (SET 0 / RESET 1), amplitude magnitude (V),
    width (s), and the conductances (S) they were read at before it."""

    cells: np.ndarray
    polarity: np.ndarray
    volts: np.ndarray
    width: np.ndarray
    g_before: np.ndarray

    @property
    def count(self) -> int:
        return int(self.cells.size)


def send(array, response, cells: np.ndarray, wanted: np.ndarray,
         g_before: np.ndarray) -> PulseBatch | None:
    """One pulse per listed device toward ``wanted`` (signed S, + = up), one transaction."""
    keep = wanted != 0
    cells, wanted, g_before = cells[keep], wanted[keep], g_before[keep]
    if cells.size == 0:
        return None
    order = np.argsort(cells, kind="stable")
    cells, wanted, g_before = cells[order], wanted[order], g_before[order]
    polarity = np.where(wanted > 0, SET, RESET)
    volts, width = response.pulse_for(cells, polarity, np.abs(wanted), g_before)
    array.pulse_cells(cells, np.where(polarity == SET, volts, -volts), width)
    return PulseBatch(cells, polarity, volts, width, g_before)


def observe(response, batch: PulseBatch | None, g_flat: np.ndarray) -> None:
    """Teach the response model what the batch did, from a read made after it."""
    if batch is None:
        return
    after = g_flat[batch.cells]
    moved = np.where(batch.polarity == SET, after - batch.g_before, batch.g_before - after)
    ok = np.isfinite(moved)
    response.observe(batch.cells[ok], batch.polarity[ok], batch.volts[ok], batch.width[ok],
                     moved[ok], batch.g_before[ok])


def pair_changes(dg: np.ndarray, g_plus: np.ndarray, g_minus: np.ndarray,
                 floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Changes (S) of G+ and G- that change ``G+ - G-`` by ``dg``: the device that should
    come down (G- for a rise, G+ for a fall) is RESET toward the floor as far as it is
    above it, the other SET for the rest. The pair's common mode stays low."""
    dg = np.asarray(dg, np.float64)
    room_minus = np.maximum(g_minus - floor, 0.0)
    room_plus = np.maximum(g_plus - floor, 0.0)
    rise = dg > 0
    reset = np.where(rise, np.minimum(dg, room_minus), np.minimum(-dg, room_plus))
    rest = np.abs(dg) - reset
    up = np.where(rise, rest, -reset)
    down = np.where(rise, -reset, rest)
    return up, down


def set_only_changes(dg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Changes (S) of G+ and G- that change ``G+ - G-`` by ``dg`` with SETs only: a rise
    SETs G+, a fall SETs G-; neither device is ever asked to come down."""
    dg = np.asarray(dg, np.float64)
    return np.maximum(dg, 0.0), np.maximum(-dg, 0.0)


def refresh_due(g_plus: np.ndarray, g_minus: np.ndarray, g_min: float, g_max: float,
                skip_plus: np.ndarray, skip_minus: np.ndarray, floor: float) -> np.ndarray:
    """Pairs (bool) one of whose working devices reads above ``REFRESH_SHARE`` of the
    window (it has little SET left) while the other sits more than ``REFRESH_GAIN`` of
    the window above ``floor``: re-programmed to their difference, they get that much SET
    back. (A pair whose low device is at the floor already holds a weight at the edge of
    its range: a refresh would give nothing back.)"""
    window = g_max - g_min
    level = g_min + REFRESH_SHARE * window
    low = np.minimum(g_plus, g_minus) - floor > REFRESH_GAIN * window
    high = ((g_plus > level) & ~skip_plus) | ((g_minus > level) & ~skip_minus)
    return high & low


def refresh_targets(g_plus: np.ndarray, g_minus: np.ndarray,
                    floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets (S) of a refreshed pair: the difference as read, on one device above the
    floor, the other at the floor (the programmed layout's)."""
    d = np.asarray(g_plus, np.float64) - np.asarray(g_minus, np.float64)
    return floor + np.maximum(d, 0.0), floor + np.maximum(-d, 0.0)
