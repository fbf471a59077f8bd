"""The algorithms: functions of role interfaces and parameters that return results.

Nothing here imports a driver, the simulator, h5py or click.
"""

from protocols.write_verify import (
    AdaptiveResponse,
    IterationRecord,
    Progress,
    PulseModel,
    ResponseModel,
    WriteVerifyError,
    WriteVerifyParams,
    WriteVerifyResult,
    write_verify,
)

__all__ = [
    "AdaptiveResponse", "IterationRecord", "Progress", "PulseModel", "ResponseModel",
    "WriteVerifyError", "WriteVerifyParams", "WriteVerifyResult", "write_verify",
]
