"""A classification data set with a fixed train/test split, checked once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.training.params import TrainingInputError


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class TrainData:
    """Inputs (n, features) as floats and labels (n,) in ``0..classes-1``; the test split
    is held out: it scores, it never trains."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str = "data"

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    def summary(self) -> dict:
        return {"source": self.source, "train": int(self.y_train.size),
                "test": int(self.y_test.size), "features": self.features,
                "classes": self.classes}


def check_data(x_train, y_train, x_test, y_test, *, classes: int | None = None,
               features: int | None = None, source: str = "data") -> TrainData:
    """The split as a :class:`TrainData`, or one line naming what is wrong: a split
    empty, inputs not 2-D or of the wrong width, NaN or infinity, labels that are not
    whole numbers in ``0..classes-1`` (``classes`` None: the labels' largest + 1)."""
    parts = {}
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[0] == 0:
            raise TrainingInputError(f"{source}: the {name} split is empty or not (n, "
                                     f"features): X_{name} has shape {x.shape}")
        if features is not None and x.shape[1] != features:
            raise TrainingInputError(f"{source}: X_{name} has {x.shape[1]} features, the "
                                     f"network takes {features}")
        if x.dtype.kind not in "iuf" or not np.all(np.isfinite(x)):
            raise TrainingInputError(f"{source}: X_{name} holds NaN, infinity or non-numbers")
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise TrainingInputError(f"{source}: y_{name} must be {x.shape[0]} whole-number "
                                     f"labels, got shape {y.shape} of {y.dtype}")
        parts[name] = (x.astype(np.float64), y.astype(np.int64))
    if parts["train"][0].shape[1] != parts["test"][0].shape[1]:
        raise TrainingInputError(f"{source}: train and test inputs differ in width")
    labels = np.concatenate([parts["train"][1], parts["test"][1]])
    k = int(labels.max()) + 1 if classes is None else int(classes)
    if labels.min() < 0 or labels.max() >= k or k < 2:
        raise TrainingInputError(f"{source}: labels must be whole numbers in 0..{k - 1} "
                                 f"(got {labels.min()}..{labels.max()})")
    return TrainData(*parts["train"], *parts["test"], classes=k, source=source)


def digits_data() -> TrainData:
    """scikit-learn's 8 x 8 digits with the bundled model's fixed split (pixels / 16)."""
    from protocols.inference import digits_split

    s = digits_split()
    return check_data(s["x_train"], s["y_train"], s["x_test"], s["y_test"], classes=10,
                      source="digits")
