"""Write-verify programming of a target conductance matrix, array-parallel.

Each iteration reads every unconverged cell in one transaction and pulses all
of them in one more. Per cell: polarity from the sign of the error, amplitude
and width from what that cell has shown so far (a learned response model;
step-up of amplitude, then width, when it does not move; smaller steps near
the target), a tolerance band and a pulse budget. Cells that do not respond
(stuck or unformed) or saturate short of their target (unreachable) stop
consuming pulses and are reported separately. After convergence the loop lets
the cells relax (clock role), re-reads, and touches up those that left the band.

Modules: ``params`` (the knobs), ``result`` (what a run reports), ``status``
(per-cell states), ``loop`` (the phases), ``response`` (pulse-response models),
``read_noise`` (the online read-noise fit), ``hold`` (the relaxation law learned
for retention-aware programming, ``hold_s``).
"""

from protocols.write_verify.hold import HoldParams, RelaxationLaw
from protocols.write_verify.loop import write_verify
from protocols.write_verify.params import WriteVerifyError, WriteVerifyParams
from protocols.write_verify.read_noise import ReadNoise
from protocols.write_verify.response import AdaptiveResponse, PulseModel, ResponseModel
from protocols.write_verify.result import IterationRecord, Progress, WriteVerifyResult
from protocols.write_verify.status import CellStatus

__all__ = [
    "AdaptiveResponse", "CellStatus", "HoldParams", "IterationRecord", "Progress", "PulseModel",
    "ReadNoise", "RelaxationLaw", "ResponseModel", "WriteVerifyError", "WriteVerifyParams",
    "WriteVerifyResult", "write_verify",
]
