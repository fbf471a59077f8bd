"""In-situ training of a network on the chip, through the ArrayController role.

Four published algorithms, one module each: ``sgd`` (online SGD with pulse updates,
Li et al. 2018), ``mixed`` (mixed precision: digital accumulators, pulses when they
pass the programming granularity, Nandakumar et al. 2020), ``hybrid`` (ex-situ weights
by write-verify, the last layer retrained in situ, Yao et al. 2020) and
``chip_in_loop`` (layer by layer: program, read the chip's outputs, fine-tune the rest
digitally, NeuRRAM 2022). Shared pieces: ``params``, ``dataset``, ``baseline`` (the
float network and its trainer in numpy), ``layout`` (centred differential pairs),
``passes`` (forward on the chip through the inference protocol; backward by the
controller's transposed MVM or digitally), ``pulses`` (updates through the persistent
response model), ``insitu`` (the loop sgd, mixed and hybrid share, and its
checkpoints), ``start``, ``result``. Guide: ``docs/training.md``.
"""

from protocols.training.baseline import FloatBaseline, init_weights, train_float
from protocols.training.dataset import TrainData, check_data, digits_data
from protocols.training.insitu import InSitu
from protocols.training.mixed import Accumulator
from protocols.training.params import METHODS, TrainingInputError, TrainParams, check_method
from protocols.training.passes import OnChip, backward_mode
from protocols.training.result import EPOCH_FIELDS, EpochRecord, TrainResult, training_result
from protocols.training.start import begin, check_fits, float_models

__all__ = [
    "EPOCH_FIELDS", "METHODS", "Accumulator", "EpochRecord", "FloatBaseline", "InSitu",
    "OnChip", "TrainData", "TrainParams", "TrainResult", "TrainingInputError",
    "backward_mode", "begin", "check_data", "check_fits", "check_method", "digits_data",
    "float_models", "init_weights", "train_float", "training_result",
]
