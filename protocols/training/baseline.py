"""The float network in numpy: the maths every method shares, and the float baseline.

A 2-layer MLP ``softmax(relu(x W0 + b0) W1 + b1)`` trained with plain minibatch SGD on
the mean cross-entropy, from a seeded He-normal initialisation: the reference each
method's accuracy is compared with (same network, data, learning rate and batch), and
the ex-situ weights hybrid and chip-in-the-loop transfer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.training.dataset import TrainData


def init_weights(sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """He-normal weights (inputs, outputs) per layer; the same for the same seed."""
    rng = np.random.default_rng([seed, 0x7A1])
    pairs = zip(sizes, sizes[1:], strict=False)
    return [rng.standard_normal((a, b)) * np.sqrt(2.0 / a) for a, b in pairs]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of logits ``z`` (n, classes) against labels ``y``."""
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(y.size), y].mean())


def output_delta(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d(mean loss)/d(logits) for softmax cross-entropy: (softmax - one-hot) / n."""
    d = softmax(z)
    d[np.arange(y.size), y] -= 1.0
    return d / y.size


def forward(weights, biases, x: np.ndarray) -> list[np.ndarray]:
    """Activations from input to logits: [x, h, z] (ReLU hidden layers)."""
    acts = [x]
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = acts[-1] @ w + b
        acts.append(z if k == len(weights) - 1 else np.maximum(z, 0.0))
    return acts


def backward(weights, acts: list[np.ndarray], delta: np.ndarray):
    """Gradients (dW, db) per layer from the output delta; ``weights`` are those the
    backward product uses (the chip's read weights in the digital fallback)."""
    grads = []
    for k in range(len(weights) - 1, -1, -1):
        grads.append((acts[k].T @ delta, delta.sum(axis=0)))
        if k:
            delta = (delta @ weights[k].T) * (acts[k] > 0)
    return grads[::-1]


@dataclass(frozen=True, eq=False)
class FloatBaseline:
    """The float network after training, and its per-epoch record (held-out test)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    test_accuracy: np.ndarray  # per epoch
    train_accuracy: np.ndarray
    loss: np.ndarray  # mean training cross-entropy per epoch

    @property
    def accuracy(self) -> float:
        return float(self.test_accuracy[-1])


def accuracy(weights, biases, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(forward(weights, biases, x)[-1], axis=1) == y))


def train_float(data: TrainData, hidden: int, *, epochs: int, lr: float, batch: int,
                seed: int, weights=None, biases=None, layers=None,
                lr_decay: float = 1.0, every: int = 1,
                momentum: float = 0.0) -> FloatBaseline:
    """Plain SGD in float64 from ``init_weights`` (or the given weights); ``layers``:
    the indices trained (None: all); epoch e at ``lr * lr_decay ** (e - 1)``. The sample
    order is seeded. ``every``: the weights' steps of that many batches are summed and
    applied together (at the latest at the epoch's end), the biases' every batch — the
    float twin of sgd's ``TrainParams.sgd_every``. ``momentum`` beta: the weights take the
    dampened velocity of their steps, ``v = beta v + (1 - beta) step``, kept across epochs,
    the biases their step — the float twin of ``TrainParams.sgd_momentum``."""
    sizes = (data.features, hidden, data.classes)
    w = [np.array(a, np.float64) for a in (weights or init_weights(sizes, seed))]
    b = [np.array(a, np.float64) for a in (biases or [np.zeros(s) for s in sizes[1:]])]
    trained = range(len(w)) if layers is None else layers
    rng = np.random.default_rng([seed, 0x5EED])
    velocity = [np.zeros_like(a) for a in w]
    test, train, losses = [], [], []
    for epoch in range(epochs):
        rate = lr * lr_decay ** epoch
        order = rng.permutation(data.y_train.size)
        total = 0.0
        pending = [np.zeros_like(a) for a in w]
        for n, i in enumerate(range(0, order.size, batch)):
            pick = order[i:i + batch]
            acts = forward(w, b, data.x_train[pick])
            total += cross_entropy(acts[-1], data.y_train[pick]) * pick.size
            grads = backward(w, acts, output_delta(acts[-1], data.y_train[pick]))
            due = (n + 1) % every == 0 or i + batch >= order.size
            for k in trained:
                pending[k] += rate * grads[k][0]
                b[k] -= rate * grads[k][1]
                if due:
                    velocity[k] = momentum * velocity[k] + (1.0 - momentum) * pending[k]
                    w[k] -= velocity[k]
                    pending[k][...] = 0.0
        losses.append(total / order.size)
        train.append(accuracy(w, b, data.x_train, data.y_train))
        test.append(accuracy(w, b, data.x_test, data.y_test))
    return FloatBaseline(tuple(w), tuple(b), np.array(test), np.array(train), np.array(losses))
