"""The training benchmark's issue-13 verdicts (benchmarks/bench_train.py ``target``),
given on the last epoch's one pass and on the final passes alike."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_train import target

FLT = np.array([0.98, 0.98, 0.98])
TRANSFER = np.array([0.90, 0.92, 0.94])


def test_gap_targets_are_met_at_the_bound_and_missed_past_it():
    assert target("die12", "chip-in-loop", FLT, FLT - 0.0049, TRANSFER) == "ok"
    assert target("die12", "chip-in-loop", FLT, FLT - 0.006, TRANSFER) == "MISSED"
    assert target("die12", "mixed", FLT, FLT - 0.0099, TRANSFER) == "ok"
    assert target("stuck10", "sgd", FLT, FLT - 0.031, TRANSFER) == "MISSED"
    assert target("die12", "sgd", FLT, FLT - 0.2, TRANSFER) == ""  # no target on die 12


def test_hybrid_recovery_is_the_mean_share_of_each_seeds_lost_accuracy():
    acc = TRANSFER + 0.801 * (FLT - TRANSFER)
    assert target("die12", "hybrid", FLT, acc, TRANSFER) == "recovers 80% ok"
    acc = TRANSFER + np.array([0.5, 0.8, 0.8]) * (FLT - TRANSFER)
    assert target("die12", "hybrid", FLT, acc, TRANSFER) == "recovers 70% MISSED"
