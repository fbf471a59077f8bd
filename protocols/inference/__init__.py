"""On-chip inference: networks as layers on a die's array, run through the ArrayController role.

``network`` (layers, the ``.npz`` format, the float reference), ``mapping``
(layers as disjoint tiles of differential pairs, their targets; programming
them by write-verify; reading the weights back), ``params`` (input encoding),
``run`` (the forward pass on the chip), ``result``, ``compensation`` (drift
compensation: calibrate at programming, correct at inference), ``digits`` (the
bundled model). Guide: ``docs/inference.md``.
"""

from protocols.inference.compensation import (
    METHODS,
    REFERENCE_CELLS,
    CalibrationCost,
    ColumnGains,
    CompensationError,
    DriftCalibration,
    calibrate,
    calibration_drives,
    correction,
    network_drives,
)
from protocols.inference.digits import (
    ModelDataError,
    digits_split,
    digits_test_set,
    load_digits_model,
)
from protocols.inference.mapping import (
    Mapping,
    NetworkFitError,
    Tile,
    compensate,
    map_network,
    pack_tiles,
    place_references,
    program_network,
    read_weights,
)
from protocols.inference.network import (
    ACTIVATIONS,
    InferenceInputError,
    Layer,
    Network,
    apply_activation,
)
from protocols.inference.params import SIGNED_MODES, DriftParams, InferenceParams
from protocols.inference.result import InferenceResult
from protocols.inference.run import encode, run_network

__all__ = [
    "ACTIVATIONS", "METHODS", "REFERENCE_CELLS", "SIGNED_MODES", "CalibrationCost",
    "ColumnGains", "CompensationError", "DriftCalibration", "DriftParams",
    "InferenceInputError", "InferenceParams", "InferenceResult", "Layer", "Mapping",
    "ModelDataError", "Network", "NetworkFitError", "Tile", "apply_activation", "calibrate",
    "calibration_drives", "compensate", "correction", "digits_split", "digits_test_set", "encode",
    "load_digits_model", "map_network", "network_drives", "pack_tiles", "place_references",
    "program_network", "read_weights", "run_network",
]
