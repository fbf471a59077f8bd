"""The bundled digits model: a 64-20-10 MLP for scikit-learn's 8 x 8 digits.

The model (``data/models/digits.npz``) and its test split
(``data/models/digits-test.npz``: pixel values 0..16 as uint8, labels, and the
indices into ``sklearn.datasets.load_digits()``) are bundled, so running it
needs neither scikit-learn nor a download. ``scripts/train_digits.py`` makes
both again from :func:`digits_split` (scikit-learn's bundled copy of the
dataset, no download). Inputs are pixels / 16, in 0..1: non-negative, so the
first layer needs one pass per batch. Training record: ``data/models/README.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instruments.datasheet import data_root
from instruments.errors import UserError
from protocols.inference.network import Network

SEED = 0  # the split's and the training's
TEST_FRACTION = 0.2
PIXEL_MAX = 16.0  # load_digits pixels are 0..16
MODEL_FILE = "digits.npz"
TEST_FILE = "digits-test.npz"


class ModelDataError(UserError, RuntimeError):
    """A bundled model file or the package its dataset comes from is missing."""


def models_dir() -> Path:
    return data_root() / "models"


def _bundled(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise ModelDataError(f"the bundled {name} is missing ({path}); make it again with "
                             "python scripts/train_digits.py")
    return path


def load_digits_model() -> Network:
    """The bundled float model; its ``metadata`` holds the training record."""
    return Network.from_npz(_bundled(MODEL_FILE))


def digits_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The fixed test split: inputs (n, 64) in 0..1, labels (n,) int."""
    with np.load(_bundled(TEST_FILE), allow_pickle=False) as data:
        pixels, labels = data["pixels"], data["labels"]
    return pixels.astype(np.float64) / PIXEL_MAX, labels.astype(np.int64)


def digits_split(seed: int = SEED, test_fraction: float = TEST_FRACTION) -> dict[str, np.ndarray]:
    """The dataset split as the bundled model was trained: a seeded permutation of
    ``load_digits()``; keys ``x_train``, ``y_train``, ``x_test``, ``y_test`` (inputs
    in 0..1), ``test_indices``. Needs scikit-learn (``pip install 'aimc-calib[models]'``)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ModelDataError("the digits dataset needs scikit-learn: "
                             "pip install 'aimc-calib[models]'") from None
    digits = load_digits()
    x, y = digits.data / PIXEL_MAX, digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
            "test_indices": test}
