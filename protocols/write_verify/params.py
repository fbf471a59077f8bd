"""The knobs of write-verify, checked when set."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from instruments.errors import UserError
from protocols.write_verify.response import PulseModel


class WriteVerifyError(UserError, ValueError):
    """Bad input to write-verify (shape, NaN-only targets, parameters)."""


@dataclass(frozen=True)
class WriteVerifyParams:
    """Knobs of the loop. Siemens, volts, seconds.

    Per-technology values come from the chip's datasheet: see
    :func:`protocols.profiles.write_verify_params`.
    """

    tolerance: float = 1e-6  # half-width of the band around each target, S
    accept_fraction: float = 0.8  # verify reads must be within this share of the band
    read_averages: int = 8  # conversions the instrument averages per verify read (one transaction)
    reads_per_verify: int = 1  # separate verify reads averaged per iteration (one transaction each)
    confirm: bool = True  # accept on the mean of >= 2 unpulsed reads (sequential verify)
    max_confirm_reads: int = 4  # reads of an in-band-looking cell before it is pulsed again
    max_confirm_reads_reset: int = 4  # the same when that pulse would be a RESET
    # accept when |mean - target| <= tolerance - z * sigma_read(G) / sqrt(n), with
    # sigma_read(G) = a + b G fitted online from repeat reads (0: fixed accept_fraction)
    accept_confidence: float = 1.3
    accept_max_fraction: float = 0.95
    accept_min_fraction: float = 0.5
    # the confidence falls by this factor per confirmation that ended in a pulse, down
    # to accept_confidence_min (1: it never falls)
    accept_relax: float = 1.0
    accept_confidence_min: float = 1.0
    # when a confirmation's reads are spent, a mean within tolerance - z sigma / sqrt(n)
    # with this z is accepted rather than pulsed (None: pulsed)
    budget_confidence: float | None = None
    # a soft deadline: once deadline_share of the cells a phase started with are settled
    # (at its k-th iteration), cells still in play after deadline_factor x k iterations
    # are settled on what their reads say (None: no deadline; max_iterations still caps)
    deadline_factor: float | None = None
    deadline_share: float = 0.99
    deadline_confidence: float = 0.5
    # a cell that has had this many pulses (None: never) without ever moving clearly and
    # still reads within one band of zero gets the strongest pulse, so the stall
    # classifier can judge it (a stuck-low cell just outside its band otherwise gets
    # small pulses, lost in the noise, until max_pulses)
    escalate_pulses: int | None = None
    # a read within tolerance + z * sigma_read / sqrt(n) is confirmed by more reads
    # before a pulse, so noise does not trigger one (worst: an abrupt RESET)
    doubt_confidence: float = 1.0
    doubt_rounds: int = 3  # failed confirmations after which a cell gets no more doubt
    max_pulses: int = 60  # per cell, touch-ups included
    max_iterations: int = 400
    stall_pulses: int = 3  # pulses at the strongest drive without moving -> classify
    move_fraction: float = 0.5  # "moved" means more than this share of the band
    aim: float = 1.0  # fraction of the error each pulse aims to remove
    # an overshoot of a SET costs this many times an undershoot (an abrupt RESET and a
    # fresh climb on PCM); above 1, SETs aim short by the learned landing scatter
    overshoot_cost: float = 1.0
    # wait before re-reading for touch-up: as long as the phase before it took on the
    # bench clock (x relax_wait_factor), so the last cells programmed relax about as long
    # as the first had, and at least relax_wait_s (both 0: no touch-up)
    relax_wait_s: float = 3.0
    relax_wait_factor: float = 1.0
    touchup_rounds: int = 2
    # more rounds, up to touchup_rounds_max, while a round re-opens at least this share
    # of the cells it re-read (a die that relaxes strongly)
    touchup_rounds_max: int = 6
    touchup_more_share: float = 0.08
    # a touch-up re-read is combined with the cell's earlier reads, weighted by how much
    # the cells were seen to change between them (x this factor; 0: the re-read alone)
    reread_weight: float = 1.0
    # acceptance also allows for this share of the change variance seen between an
    # acceptance and the next re-read (strong relaxation: a narrower zone)
    change_weight: float = 0.1
    initial_gain: float = 2e-6  # S per unit drive before anything is learned
    pilot_fraction: float = 0.05  # first pulses go to this share of cells to learn the law
    pilot_min_cells: int = 64
    # at most this many pilot cells per polarity (None: no cap): the law wants enough
    # steps to be fitted, not a share of the array, and a pilot cell's first pulse,
    # aimed before any law, costs it about one pulse more
    pilot_max_cells: int | None = None
    seed: int = 0  # chooses the pilot cells
    verify_noise: float = 0.4e-6  # S; how much a single step's reading can mislead
    pulse_model: PulseModel = field(default_factory=PulseModel)

    def __post_init__(self) -> None:
        checks = {
            "tolerance": self.tolerance > 0,
            "accept_fraction": 0 < self.accept_fraction <= 1,
            "reads_per_verify": self.reads_per_verify >= 1,
            "read_averages": isinstance(self.read_averages, (int, np.integer))
            and self.read_averages >= 1,
            "max_pulses": self.max_pulses >= 1,
            "max_iterations": self.max_iterations >= 1,
            "stall_pulses": self.stall_pulses >= 1,
            "max_confirm_reads": self.max_confirm_reads >= 2,
            "max_confirm_reads_reset": self.max_confirm_reads_reset >= 2,
            "doubt_rounds": self.doubt_rounds >= 0,
            "deadline_factor": self.deadline_factor is None or self.deadline_factor >= 1,
            "deadline_share": 0 < self.deadline_share < 1,
            "escalate_pulses": self.escalate_pulses is None or self.escalate_pulses >= 1,
            "aim": 0 < self.aim <= 1.5,
            "overshoot_cost": self.overshoot_cost >= 1,
            "accept_relax": 0 < self.accept_relax <= 1,
            "accept_min_fraction": 0 <= self.accept_min_fraction <= self.accept_max_fraction,
            # an endless wait would program the whole die and then never return
            "relax_wait_s": self.relax_wait_s >= 0 and math.isfinite(self.relax_wait_s),
            "relax_wait_factor": self.relax_wait_factor >= 0,
            "touchup_rounds": self.touchup_rounds >= 0,
            "touchup_rounds_max": self.touchup_rounds_max >= 0,
            "touchup_more_share": 0 < self.touchup_more_share <= 1,
            "reread_weight": 0 <= self.reread_weight <= 1,
            "change_weight": self.change_weight >= 0,
            "initial_gain": self.initial_gain > 0,
            "pilot_fraction": 0 < self.pilot_fraction <= 1,
            "pilot_max_cells": self.pilot_max_cells is None or self.pilot_max_cells >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise WriteVerifyError(f"{name}: invalid value {getattr(self, name)!r}")
