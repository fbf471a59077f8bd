"""Starting a training: the float baseline, the layout, and the first programming.

Every method begins the same way on the host: the float network trained in numpy
(:func:`protocols.training.baseline.train_float`, ``params.float_epochs``) sets each
layer's weight range (``weight_margin`` x its largest |w|), so the window has room for
what training will grow. Then the chip gets its first weights by write-verify
(through the persistent response model, which the training then keeps refining):
``sgd`` and ``mixed`` the seeded random initialisation the float baseline started
from, ``hybrid`` the float network itself (ex-situ training, transferred), whose last
layer is then retrained with mixed precision's thresholded, accumulated updates (Yao et
al. pulse a device only when its update passes a threshold; measured on die 12: 95.5 %
after 10 epochs at 192 pulses, against 94.2 % at 6822 pulses with SGD's updates).
Chip-in-the-loop programs layer by layer (:mod:`protocols.training.chip_in_loop`).
"""

from __future__ import annotations

import numpy as np

from protocols.profiles import write_verify_params
from protocols.training.baseline import FloatBaseline, init_weights, train_float
from protocols.training.dataset import TrainData
from protocols.training.insitu import InSitu, default_granularity
from protocols.training.layout import (
    lone_targets,
    parked,
    read_idle,
    training_mapping,
    with_weights,
)
from protocols.training.params import TrainingInputError, TrainParams, check_method
from protocols.training.pulses import update_rule
from protocols.write_verify import write_verify


def sizes_of(data: TrainData, params: TrainParams) -> tuple[int, int, int]:
    return (data.features, params.hidden, data.classes)


def float_models(data: TrainData, params: TrainParams,
                 method: str | None = None) -> tuple[FloatBaseline, FloatBaseline]:
    """(the baseline at the method's own epochs and learning-rate schedule — for ``sgd``
    also its ``sgd_every`` and ``sgd_momentum`` — the ex-situ network at ``float_epochs``
    and a constant ``lr``)."""
    common = {"lr": params.lr, "batch": params.batch, "seed": params.seed}
    every = params.sgd_every if method == "sgd" else 1
    beta = params.sgd_momentum if method == "sgd" else 0.0
    same = train_float(data, params.hidden, epochs=params.epochs, lr_decay=params.lr_decay,
                       every=every, momentum=beta, **common)
    ex_situ = train_float(data, params.hidden, epochs=params.float_epochs, **common)
    return same, ex_situ


def check_fits(datasheet, array_shape, data: TrainData, params: TrainParams):
    """The mapping of the network on the die (ranges of 1), or a one-line error."""
    return training_mapping(datasheet, array_shape, sizes_of(data, params), (1.0, 1.0))


def program(array, datasheet, mapping, weights, *, clock=None, response=None, progress=None):
    """Write-verify ``weights`` as pairs (the device of the other sign at the floor), the
    die's idle cells to ``g_min`` when they read above the floor
    (:func:`~protocols.training.layout.parked`); (mapping with targets, result)."""
    mapping = with_weights(mapping, weights)
    targets = parked(mapping, mapping.targets, read_idle(array, mapping))
    result = write_verify(array, targets, clock=clock,
                          params=write_verify_params(datasheet), progress=progress,
                          response=response)
    return mapping, result


def off_target(wv, trainable: bool = True) -> np.ndarray:
    """Devices (flat bool) the host takes as they read and never pulses: those
    write-verify found unresponsive and, where no in-situ update will move them again
    (``trainable`` False: weights that stay as programmed), every targeted device it
    left off target (the inference protocol compensates the same cells)."""
    skip = np.asarray(wv.unresponsive, bool).ravel()
    if not trainable:
        skip = skip | (np.isfinite(wv.target).ravel() & ~np.asarray(wv.converged).ravel())
    return skip


def begin(array, datasheet, data: TrainData, params: TrainParams, method: str, *,
          clock=None, response=None, progress=None) -> InSitu:
    """Program the first weights of ``sgd``, ``mixed`` or ``hybrid`` and return the
    training, ready for its first epoch."""
    method = check_method(method)
    if method == "chip-in-loop":
        raise TrainingInputError("chip-in-loop starts with protocols.training.chip_in_loop")
    _, ex_situ = float_models(data, params)
    ranges = tuple(params.weight_margin * float(np.abs(w).max()) for w in ex_situ.weights)
    mapping = training_mapping(datasheet, tuple(array.shape), sizes_of(data, params), ranges)
    if method == "hybrid":
        weights, biases = ex_situ.weights, ex_situ.biases
    else:
        weights = init_weights(sizes_of(data, params), params.seed)
        biases = [np.zeros(s) for s in sizes_of(data, params)[1:]]
    mapping, wv = program(array, datasheet, mapping, weights, clock=clock, response=response,
                          progress=progress)
    skip = off_target(wv, method != "hybrid")
    update = update_rule(params.update, datasheet)
    pulses = int(np.sum(wv.pulses))
    lone = params.faulty_pairs_for(method) == "partner" and update == "pair"
    response = wv.response
    if lone:
        targets = lone_targets(mapping, weights, skip)
        targets.ravel()[skip] = np.nan
        if np.isfinite(targets).any():  # the working devices, around their failed partners
            again = write_verify(array, targets, clock=clock, response=response,
                                 params=write_verify_params(datasheet))
            response, pulses = again.response, pulses + int(np.sum(again.pulses))
            skip = skip | off_target(again, method != "hybrid")
    layers, subset = None, None
    if method == "hybrid":
        layers = (len(mapping.tiles) - 1,)
        n = data.y_train.size
        take = max(1, int(round(params.fraction * n)))
        subset = np.sort(np.random.default_rng([params.seed, 0x4B]).permutation(n)[:take])
    rule = "sgd" if method == "sgd" else "mixed"  # hybrid: thresholded, accumulated updates
    return InSitu(array, data, params, rule=rule, mapping=mapping, biases=biases,
                  response=response, clock=clock, layers=layers, subset=subset,
                  programming_pulses=pulses, skip=skip, repeats=params.repeats_for(method),
                  update=update, wv_params=write_verify_params(datasheet),
                  granularity_s=params.granularity_s or default_granularity(
                      mapping, getattr(wv, "read_noise", None)), lone=lone)
