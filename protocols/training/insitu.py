"""The in-situ training loop that online SGD, mixed precision and hybrid share.

Per batch of ``params.batch`` samples: the forward pass on the chip (one MVM
transaction per layer), the output error on the host, the hidden error by the chip's
transposed MVM (or digitally from the last read), the weight gradients on the host
(outer products of a batch), the update rule (``sgd``: every device change, now, those
under its zone rounded stochastically to it; ``mixed``: into the accumulators, pulses
where they reach a step), one pulse transaction through the response model, one read of
the used cells (which teaches the response model and is the digital backward's weights).
A pair's change is a RESET of one device and a SET of the other (``pair``) or, where
RESET is abrupt (PCM), a SET of one device only, with a write-verify refresh of the pairs
that near ``g_max`` after the read (``set-only``, :mod:`protocols.training.pulses`). Biases live
on the host and train in float. Every epoch ends with the chip's accuracy on the
training and the held-out test split.

The digital state — biases, accumulators, the response model, the epoch count, the
records — is a checkpoint (:meth:`InSitu.to_arrays`); :meth:`InSitu.from_arrays`
continues from one on the die as it is (the conductances are the chip's: they are read,
never restored). Sample order is drawn per epoch from ``(seed, epoch)``, so a resumed
run takes the batches the uninterrupted one would have.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from protocols.inference import Mapping
from protocols.training.baseline import cross_entropy, output_delta
from protocols.training.dataset import TrainData
from protocols.training.layout import floor_of, references, tile_cells
from protocols.training.mixed import Accumulator
from protocols.training.params import TrainingInputError, TrainParams
from protocols.training.passes import OnChip
from protocols.training.pulses import (
    observe,
    pair_changes,
    refresh_due,
    refresh_targets,
    send,
    set_only_changes,
)
from protocols.training.result import EpochRecord, records_array, records_from
from protocols.training.sgd import Momentum, sgd_changes
from protocols.write_verify import WriteVerifyParams, write_verify
from protocols.write_verify.response import AdaptiveResponse

RULES = ("sgd", "mixed")
MAX_CHANGE = 0.125  # of the window: the largest change one pulse is asked for
CHECKPOINT_FORMAT = 1


NOISE_STEPS = 2.0  # a granularity step is at least this many read-noise sigmas


def default_granularity(mapping: Mapping, read_noise=None) -> float:
    """The step (S) one pulse is trusted to make by default: 1/32 of the window, or
    ``NOISE_STEPS`` times the read noise write-verify measured at mid-window
    (``read_noise``: its :class:`~protocols.write_verify.ReadNoise` fit) when that is
    larger: a smaller step could not be told from the read-to-read scatter of the read
    that follows it (PCM's 1/f noise, ~0.7 uS at mid-window on the bundled chip, against
    a 25 uS window; RRAM's is ~0.1 uS)."""
    eps = (mapping.g_max - mapping.g_min) / 32.0
    sigma = None if read_noise is None else read_noise.sigma(
        np.array([0.5 * (mapping.g_min + mapping.g_max)]))
    if sigma is not None and np.all(np.isfinite(sigma)):
        eps = max(eps, NOISE_STEPS * float(np.ravel(sigma)[0]))
    return eps


def bounded(wanted: np.ndarray, g: np.ndarray, mapping: Mapping) -> np.ndarray:
    """Device changes (S) kept within the window and to ``MAX_CHANGE`` of it per pulse;
    a device already beyond the window (read above ``g_max`` or below ``g_min``) is not
    pushed further out."""
    most = MAX_CHANGE * (mapping.g_max - mapping.g_min)
    wanted = np.clip(wanted, -most, most)
    up = np.clip(np.minimum(g + wanted, mapping.g_max) - g, 0.0, None)
    down = np.clip(np.maximum(g + wanted, mapping.g_min) - g, None, 0.0)
    return np.where(wanted > 0, up, np.where(wanted < 0, down, 0.0))


class InSitu:
    """One in-situ training in progress on ``array``.

    ``layers``: the indices trained in situ (hybrid: the last one); the others stay as
    programmed. ``subset``: indices of the training samples used (hybrid: a fraction).
    ``skip``: devices never pulsed (flat bool): those write-verify found unresponsive
    (stuck or unformed), whose pulses would be wasted; the gradient flows around them.
    ``update``: ``pair`` (RESET one device, SET the other) or ``set-only`` (SETs only, and
    a refresh by write-verify, with ``wv_params``, of the pairs whose device nears
    ``g_max``: :mod:`protocols.training.pulses`). ``refreshes``: pairs refreshed so far.
    ``lone`` (pair updates only): a pair with one device in ``skip`` is its other device
    alone, around the failed one taken at :func:`~protocols.training.layout.lone_level`
    (weights of both signs, half the range each way), and its whole change goes to that
    device; otherwise the failed device is taken at the floor and the pair gives one sign.
    ``read_averages``: conversions the controller averages in each read of the network's
    cells (None: write-verify's, ``wv_params.read_averages``, the reads the response model
    learned from); set on the controller when the training starts or resumes, not left to
    whatever configured it last (the first programming's verify reads do; a run resumed
    in a new process finds a board at its power-on 1).
    """

    def __init__(self, array, data: TrainData, params: TrainParams, *, rule: str,
                 mapping: Mapping, biases, response, clock=None, layers=None, subset=None,
                 accumulator: Accumulator | None = None, epoch: int = 0, records=(),
                 programming_pulses: int = 0, skip: np.ndarray | None = None,
                 repeats: int = 1, update: str = "pair",
                 wv_params: WriteVerifyParams | None = None, refreshes: int = 0,
                 granularity_s: float | None = None, lone: bool = False,
                 read_averages: int | None = None, velocity: np.ndarray | None = None) -> None:
        if rule not in RULES:
            raise TrainingInputError(f"update rule {rule!r}: choose {', '.join(RULES)}")
        if update not in ("pair", "set-only"):
            raise TrainingInputError(f"update {update!r}: choose pair, set-only")
        self.update, self.wv_params, self.refreshes = update, wv_params, int(refreshes)
        self.array, self.data, self.params, self.rule = array, data, params, rule
        self.clock, self.response = clock, response
        size = int(np.prod(mapping.array_shape))
        self.skip = np.zeros(size, bool) if skip is None else np.asarray(skip, bool).ravel()
        self.lone = bool(lone) and update == "pair"
        self.chip = OnChip(array, mapping, biases, backward=params.backward,
                           input_bits=params.input_bits, clock=clock, skip=self.skip,
                           repeats=repeats, references=references(mapping, self.skip,
                                                                  self.lone))
        self.layers = tuple(range(self.chip.layers) if layers is None else layers)
        self.subset = (np.arange(data.y_train.size) if subset is None
                       else np.asarray(subset, np.int64))
        self.acc = accumulator or Accumulator(size)
        self.momentum = Momentum(size, params.sgd_momentum if rule == "sgd" else 0.0,
                                 velocity)
        self.eps = granularity_s or params.granularity_s or default_granularity(mapping)
        self.epoch = int(epoch)
        self.records = list(records)
        self.programming_pulses = int(programming_pulses)
        self.read_averages = int(read_averages or (wv_params or WriteVerifyParams()).read_averages)
        self.chip.read_averages = self.read_averages
        self.chip.read()

    @property
    def uses_backward(self) -> bool:
        """Whether an error goes back through a layer (a trained layer below another)."""
        return min(self.layers) < self.chip.layers - 1

    # -- the steps ------------------------------------------------------------------
    def evaluate(self) -> tuple[float, float]:
        """(train, test) accuracy of the network as it is on the chip."""
        out = []
        for x, y in ((self.data.x_train[self.subset], self.data.y_train[self.subset]),
                     (self.data.x_test, self.data.y_test)):
            z = self.chip.forward(x)[-1]
            out.append(float(np.mean(np.argmax(z, axis=1) == y)))
        return out[0], out[1]

    def step(self, x: np.ndarray, y: np.ndarray, rng=None,
             send_now: bool = True) -> tuple[float, int]:
        """One batch: forward, backward, update; returns (loss, device pulses sent).
        ``rng``: SGD's stochastic rounding of changes under its dead zone (None: dropped).
        The learning rate is the current epoch's (``params.lr_at``). ``send_now`` False
        (sgd with ``sgd_every`` > 1): the step joins the host's sum, nothing is pulsed;
        True: the sum so far and this step are sent together and the sum cleared."""
        chip, lr = self.chip, self.params.lr_at(max(self.epoch, 1))
        acts = chip.forward(x)
        loss = cross_entropy(acts[-1], y)
        delta = output_delta(acts[-1], y)
        pairs, changes = [], []
        for k in range(chip.layers - 1, min(self.layers) - 1, -1):
            dw, db = acts[k].T @ delta, delta.sum(axis=0)
            if k in self.layers:
                chip.biases[k] -= lr * db
                plus, minus = tile_cells(chip.mapping, k)
                pairs.append(np.stack([plus.ravel(), minus.ravel()]))
                changes.append(-lr * chip.mapping.tiles[k].scale * dw.ravel())
            if k > min(self.layers):
                delta = chip.error_back(k, delta) * (acts[k] > 0)
        pairs, dg = np.concatenate(pairs, axis=1), np.concatenate(changes)
        if self.rule == "mixed":  # one accumulator per weight, kept at its G+ cell
            self.acc.add(pairs[0], dg)
            fired, asked = self.acc.fire(pairs[0], self.eps)
            order = np.argsort(pairs[0])
            dg = np.zeros(pairs.shape[1])
            dg[order[np.searchsorted(pairs[0][order], fired)]] = asked
        else:
            dg = self.momentum.step(pairs[0], dg)  # beta 0: the step itself
            if self.params.sgd_every > 1:  # the host's sum of steps, cleared at each send
                self.acc.add(pairs[0], dg)
                if not send_now:
                    return loss, 0
                dg = self.acc.chi[pairs[0]].copy()
                self.acc.chi[pairs[0]] = 0.0
            dg = sgd_changes(dg, self.eps, rng, self.params.sgd_zone)
        g_flat = chip.g.ravel()
        if self.update == "set-only":
            up, down = set_only_changes(dg)
        else:
            up, down = pair_changes(dg, g_flat[pairs[0]], g_flat[pairs[1]],
                                    floor_of(chip.mapping.g_min, chip.mapping.g_max))
            if self.lone:  # a pair with one failed device: all of it on the other
                dead_p, dead_m = self.skip[pairs[0]], self.skip[pairs[1]]
                up = np.where(dead_m & ~dead_p, dg, up)
                down = np.where(dead_p & ~dead_m, -dg, down)
        cells, wanted = pairs.ravel(), np.concatenate([up, down])
        wanted = np.where(self.skip[cells], 0.0, wanted)
        g_now = g_flat[cells]
        wanted = bounded(wanted, g_now, chip.mapping)
        batch = send(self.array, self.response, cells, wanted, g_now)
        chip.read()
        observe(self.response, batch, chip.g.ravel())
        sent = 0 if batch is None else batch.count
        if self.update == "set-only":
            sent += self.refresh(pairs)
        return loss, sent

    def refresh(self, pairs: np.ndarray) -> int:
        """Re-program the pairs (of ``pairs``: 2 x n flat G+, G- cells) whose working
        device reads near ``g_max`` and whose other device has climbed well above the floor
        (set-only updates climb both devices; :func:`refresh_due`): the difference
        as read goes back on one device above the floor, the other to the floor, by
        write-verify (on PCM a device comes down by a RESET and climbs again); the chip
        is read again. Returns the pulses."""
        chip, m = self.chip, self.chip.mapping
        g = chip.g.ravel()
        plus, minus = pairs
        floor = floor_of(m.g_min, m.g_max)
        due = refresh_due(g[plus], g[minus], m.g_min, m.g_max, self.skip[plus],
                          self.skip[minus], floor)
        if not due.any():
            return 0
        tp, tm = refresh_targets(g[plus[due]], g[minus[due]], floor)
        targets = np.full(int(np.prod(m.array_shape)), np.nan)
        targets[plus[due]], targets[minus[due]] = tp, tm
        targets[self.skip] = np.nan
        wv = write_verify(self.array, targets.reshape(m.array_shape), clock=self.clock,
                          params=self.wv_params or WriteVerifyParams(),
                          response=self.response)
        self.response = wv.response
        self.refreshes += int(due.sum())
        chip.read()
        return int(np.sum(wv.pulses))

    def run_epoch(self, progress=None) -> EpochRecord:
        """One more epoch (the first call after programming records epoch 0 first)."""
        if not self.records:
            self.records.append(self._record(0, float("nan"), 0, *self._counters()))
        start = self._counters()
        self.epoch += 1
        order = self.subset[np.random.default_rng([self.params.seed, self.epoch])
                            .permutation(self.subset.size)]
        total, pulses = 0.0, 0
        for i in range(0, order.size, self.params.batch):
            pick = order[i:i + self.params.batch]
            rng = np.random.default_rng([self.params.seed, 0x5D, self.epoch, i])
            now = ((i // self.params.batch + 1) % self.params.sgd_every == 0
                   or i + self.params.batch >= order.size)
            loss, sent = self.step(self.data.x_train[pick], self.data.y_train[pick], rng,
                                   send_now=now)
            total += loss * pick.size
            pulses += sent
            if progress is not None:
                progress({"epoch": self.epoch, "done": i + pick.size, "of": order.size})
        record = self._record(self.epoch, total / order.size, pulses, *start)
        self.records.append(record)
        return record

    def _counters(self) -> tuple[int, float, float]:
        bench = self.clock.now() if self.clock is not None else float("nan")
        return int(self.array.transactions), bench, time.perf_counter()

    def _record(self, epoch, loss, pulses, tx0, bench0, wall0) -> EpochRecord:
        train, test = self.evaluate()
        tx, bench, wall = self._counters()
        return EpochRecord(epoch, train, test, float(loss), int(pulses), tx - tx0,
                           bench - bench0, wall - wall0)

    @property
    def pulses(self) -> int:
        return int(sum(r.pulses for r in self.records))

    @property
    def weights_trained(self) -> int:
        return int(sum(np.prod(self.chip.mapping.tiles[k].shape) for k in self.layers))

    # -- checkpoints ------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The digital state as (numbers, JSON-ready meta): a checkpoint."""
        arrays = {"epoch": np.int64(self.epoch), "records": records_array(self.records),
                  "chi": self.acc.chi.copy(), "subset": self.subset,
                  "velocity": self.momentum.velocity.copy(),
                  "layers": np.asarray(self.layers, np.int64), "skip": self.skip.copy(),
                  "programming_pulses": np.int64(self.programming_pulses),
                  "format": np.int64(CHECKPOINT_FORMAT)}
        for k, b in enumerate(self.chip.biases):
            arrays[f"bias{k}"] = b.copy()
        for key, value in self.response.to_arrays().items():
            arrays[f"response.{key}"] = np.asarray(value)
        meta = {"rule": self.rule, "mapping": self.chip.mapping.to_dict(),
                "granularity_s": self.eps, "backward": self.chip.backward,
                "repeats": self.chip.params.repeats, "update": self.update,
                "refreshes": self.refreshes, "lone": self.lone,
                "read_averages": self.read_averages}
        return arrays, meta

    @classmethod
    def from_arrays(cls, array, data: TrainData, params: TrainParams, arrays: dict,
                    meta: dict, clock=None, wv_params: WriteVerifyParams | None = None
                    ) -> InSitu:
        """Continue a checkpoint on ``array`` as it is now (its conductances are read);
        ``wv_params``: write-verify's for the refreshes of set-only updates."""
        a = {k: np.asarray(v) for k, v in arrays.items()}
        if int(a.get("format", -1)) != CHECKPOINT_FORMAT:
            raise TrainingInputError(f"checkpoint format {a.get('format')!r}: expected "
                                     f"{CHECKPOINT_FORMAT}; start the training afresh")
        shape = tuple(meta["mapping"]["array_shape"])
        mapping = Mapping.from_dict(meta["mapping"], np.full(shape, np.nan))
        used = np.zeros(shape, bool)
        for t in mapping.tiles:
            used[t.rows[0]:t.rows[1], t.cols[0]:t.cols[1]] = True
        mapping = replace(mapping, targets=np.where(used, 0.0, np.nan))
        biases = [a[f"bias{k}"] for k in range(len(mapping.tiles))]
        response = AdaptiveResponse.from_arrays(
            {k[len("response."):]: v for k, v in a.items() if k.startswith("response.")})
        return cls(array, data, params, rule=meta["rule"], mapping=mapping, biases=biases,
                   response=response, clock=clock, layers=tuple(int(v) for v in a["layers"]),
                   subset=a["subset"], accumulator=Accumulator(a["chi"].size, a["chi"]),
                   epoch=int(a["epoch"]), records=records_from(a["records"]),
                   programming_pulses=int(a["programming_pulses"]), skip=a["skip"],
                   repeats=int(meta.get("repeats", 1)), update=meta.get("update", "pair"),
                   wv_params=wv_params, refreshes=int(meta.get("refreshes", 0)),
                   granularity_s=meta.get("granularity_s"), lone=bool(meta.get("lone", False)),
                   read_averages=meta.get("read_averages"), velocity=a.get("velocity"))
