"""Train the bundled digits model in float (numpy) and write data/models/.

    python scripts/train_digits.py [--hidden 20] [--epochs 200] [--out data/models]

A 64-H-10 MLP (ReLU hidden, softmax output) on scikit-learn's bundled 8 x 8
digits (no download), inputs = pixels / 16 in 0..1, the fixed split of
``protocols.inference.digits.digits_split`` (seeded permutation, 20 % test).
Mini-batch Adam on cross-entropy with L2 weight decay, He-normal
initialisation, everything from one seed: the same command gives the same
model. Writes ``digits.npz`` (the model, its training record in ``metadata``)
and ``digits-test.npz`` (the test split: pixels as uint8, labels, indices), and
prints the record to paste into ``data/models/README.md``.

During training the weights the forward pass sees carry Gaussian noise of
``--weight-noise`` x max |W| of their layer (fresh every step; the float
weights are what is saved): a model that tolerates the conductance errors of
write-verify (about 1 uS in a 39 uS window) loses less accuracy on the chip.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocols.inference.digits import (  # noqa: E402
    PIXEL_MAX,
    SEED,
    TEST_FILE,
    TEST_FRACTION,
    digits_split,
)
from protocols.inference.network import Layer, Network  # noqa: E402


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _noisy(w: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise <= 0:
        return w
    return w + rng.normal(size=w.shape) * noise * np.abs(w).max()


def train(x, y, hidden: int, epochs: int, lr: float, decay: float, batch: int,
          noise: float, seed: int) -> list[np.ndarray]:
    """Adam on softmax cross-entropy; returns [W1, b1, W2, b2]."""
    rng = np.random.default_rng(seed)
    n_in, n_out = x.shape[1], int(y.max()) + 1
    params = [rng.normal(size=(n_in, hidden)) * np.sqrt(2 / n_in), np.zeros(hidden),
              rng.normal(size=(hidden, n_out)) * np.sqrt(2 / hidden), np.zeros(n_out)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    onehot = np.eye(n_out)[y]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            xb, tb = x[idx], onehot[idx]
            w1, b1, w2, b2 = params
            w1n, w2n = _noisy(w1, noise, rng), _noisy(w2, noise, rng)
            h_pre = xb @ w1n + b1
            h = np.maximum(h_pre, 0)
            p = _softmax(h @ w2n + b2)
            d_out = (p - tb) / len(idx)
            d_h = (d_out @ w2n.T) * (h_pre > 0)
            grads = [xb.T @ d_h + decay * w1, d_h.sum(0), h.T @ d_out + decay * w2,
                     d_out.sum(0)]
            step += 1
            for k, g in enumerate(grads):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                m_hat, v_hat = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
                params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--decay", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--weight-noise", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "models")
    a = ap.parse_args(argv)
    import sklearn

    split = digits_split(a.seed, TEST_FRACTION)
    w1, b1, w2, b2 = train(split["x_train"], split["y_train"], a.hidden, a.epochs, a.lr,
                           a.decay, a.batch, a.weight_noise, a.seed)
    net = Network((Layer(w1, b1, "relu"), Layer(w2, b2, "softmax")))
    acc_test = float(np.mean(net.predict(split["x_test"]) == split["y_test"]))
    acc_train = float(np.mean(net.predict(split["x_train"]) == split["y_train"]))
    record = {
        "model": "digits", "architecture": list(net.architecture),
        "activations": ["relu", "softmax"], "inputs": "pixels / 16, in 0..1",
        "dataset": "sklearn.datasets.load_digits (1797 8x8 images, bundled)",
        "split": {"method": "numpy.random.default_rng(seed).permutation", "seed": a.seed,
                  "test_fraction": TEST_FRACTION, "train": int(len(split["y_train"])),
                  "test": int(len(split["y_test"]))},
        "training": {"optimizer": "adam", "lr": a.lr, "epochs": a.epochs, "batch": a.batch,
                     "weight_decay": a.decay, "weight_noise": a.weight_noise,
                     "seed": a.seed, "init": "he-normal"},
        "float_test_accuracy": acc_test, "float_train_accuracy": acc_train,
        "numpy": np.__version__, "scikit_learn": sklearn.__version__,
    }
    net = Network(net.layers, metadata=record)
    a.out.mkdir(parents=True, exist_ok=True)
    net.to_npz(a.out / "digits.npz")
    np.savez_compressed(a.out / TEST_FILE,
                        pixels=np.rint(split["x_test"] * PIXEL_MAX).astype(np.uint8),
                        labels=split["y_test"].astype(np.uint8),
                        test_indices=split["test_indices"].astype(np.int32))
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
