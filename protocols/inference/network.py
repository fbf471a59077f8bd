"""A feed-forward network as a chain of dense layers, and its file format.

A layer computes ``activation(x @ weights + bias)``; ``weights`` is (inputs,
outputs), the orientation a crossbar holds it in (input i on word line i).
Only the matrix product goes to the chip; bias and activation are digital, so
any activation the host can compute would do, and these three are the ones a
classifier needs. A user's model is an ``.npz`` (``docs/inference.md``):

- ``layer<k>_weights`` (inputs, outputs), float, for k = 0, 1, ... without gaps;
- ``layer<k>_bias`` (outputs,), optional (zeros);
- ``layer<k>_activation``: ``relu``, ``none`` (alias ``identity``, ``linear``) or
  ``softmax`` (output layer only); optional: ``relu`` on hidden layers, ``none`` on
  the last;
- ``metadata``: optional, a JSON object as a string (training record, accuracy, ...).

Files are read with ``allow_pickle=False``: a model file cannot run code.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instruments.errors import UserError

ACTIVATIONS = ("relu", "none", "softmax")
_ALIASES = {"identity": "none", "linear": "none"}
_KEY = re.compile(r"^layer(\d+)_(weights|bias|activation)$")


class InferenceInputError(UserError, ValueError):
    """A network, mapping or input batch cannot be used; the message names what and why."""


def activation_name(name: Any, where: str) -> str:
    """The canonical activation name, or a one-line error naming the choices."""
    text = str(name.item() if isinstance(name, np.ndarray) else name).strip().lower()
    text = _ALIASES.get(text, text)
    if text not in ACTIVATIONS:
        raise InferenceInputError(f"{where}: activation {name!r}: choose relu, none "
                                  "(identity) or softmax")
    return text


def apply_activation(name: str, z: np.ndarray) -> np.ndarray:
    """``relu``, ``none`` or a row-wise ``softmax`` (max-shifted, so it cannot overflow)."""
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return z


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class Layer:
    """``activation(x @ weights + bias)``; weights (inputs, outputs), unitless."""

    weights: np.ndarray
    bias: np.ndarray
    activation: str = "none"

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.weights.shape[0]), int(self.weights.shape[1]))


@dataclass(frozen=True, eq=False)
class Network:
    """Dense layers in order, checked when built: shapes chain, values finite."""

    layers: tuple[Layer, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise InferenceInputError("a network needs at least one layer")
        checked = tuple(_checked_layer(k, layer, k == len(layers) - 1)
                        for k, layer in enumerate(layers))
        for k in range(1, len(checked)):
            given, wanted = checked[k - 1].shape[1], checked[k].shape[0]
            if given != wanted:
                raise InferenceInputError(f"layer {k}: weights take {wanted} inputs but layer "
                                          f"{k - 1} gives {given} outputs")
        object.__setattr__(self, "layers", checked)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def inputs(self) -> int:
        return self.layers[0].shape[0]

    @property
    def outputs(self) -> int:
        return self.layers[-1].shape[1]

    @property
    def architecture(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (64, 20, 10)."""
        return (self.inputs, *(layer.shape[1] for layer in self.layers))

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a float (n, inputs) batch, or a one-line error."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.inputs or x.shape[0] == 0:
            raise InferenceInputError(f"inputs must have shape (n, {self.inputs}), "
                                      f"got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InferenceInputError("inputs contain NaN or infinity")
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Outputs of the float network for a batch (n, inputs): the reference."""
        a = self.check_inputs(x)
        for layer in self.layers:
            a = apply_activation(layer.activation, a @ layer.weights + layer.bias)
        return a

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class of each input: the argmax of the float outputs."""
        return np.argmax(self.forward(x), axis=1)

    # -- the file format ----------------------------------------------------------------
    def to_npz(self, path: str | Path) -> None:
        """Write the documented ``.npz`` (compressed); ``metadata`` as a JSON string."""
        arrays: dict[str, np.ndarray] = {}
        for k, layer in enumerate(self.layers):
            arrays[f"layer{k}_weights"] = np.asarray(layer.weights)
            arrays[f"layer{k}_bias"] = np.asarray(layer.bias)
            arrays[f"layer{k}_activation"] = np.array(layer.activation)
        arrays["metadata"] = np.array(json.dumps(self.metadata, sort_keys=True))
        np.savez_compressed(path, **arrays)

    @classmethod
    def from_npz(cls, path: str | Path) -> Network:
        """Read a model ``.npz`` (see the module docstring); one-line errors name the key."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise InferenceInputError(f"{path}: no such model file") from None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InferenceInputError(f"{path}: not a readable .npz model ({exc})") from None
        try:
            return cls.from_arrays(contents)
        except InferenceInputError as exc:
            raise InferenceInputError(f"{path}: {exc}") from None

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Network:
        """The network from the ``.npz`` keys (a dict of arrays)."""
        found: dict[int, dict[str, np.ndarray]] = {}
        for name, value in arrays.items():
            m = _KEY.match(name)
            if m is None and name != "metadata":
                raise InferenceInputError(f"unknown key {name!r}; expected layer<k>_weights, "
                                          "layer<k>_bias, layer<k>_activation or metadata")
            if m is not None:
                found.setdefault(int(m.group(1)), {})[m.group(2)] = value
        if not found:
            raise InferenceInputError("no layer0_weights: not a model file")
        count = max(found) + 1
        for k in range(count):
            if "weights" not in found.get(k, {}):
                raise InferenceInputError(f"layer {k}: missing layer{k}_weights")
        layers = tuple(_layer_from_arrays(k, found[k], k == count - 1) for k in range(count))
        return cls(layers, metadata=_metadata(arrays.get("metadata")))


def _checked_layer(k: int, layer: Layer, last: bool) -> Layer:
    w = np.asarray(layer.weights)
    if w.ndim != 2 or w.size == 0:
        raise InferenceInputError(f"layer {k}: weights must be a non-empty (inputs, outputs) "
                                  f"matrix, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
        raise InferenceInputError(f"layer {k}: weights must be finite numbers")
    b = np.asarray(layer.bias)
    if b.shape != (w.shape[1],):
        raise InferenceInputError(f"layer {k}: bias must have shape ({w.shape[1]},), "
                                  f"got {b.shape}")
    if not np.issubdtype(b.dtype, np.number) or not np.all(np.isfinite(b)):
        raise InferenceInputError(f"layer {k}: bias must be finite numbers")
    act = activation_name(layer.activation, f"layer {k}")
    if act == "softmax" and not last:
        raise InferenceInputError(f"layer {k}: softmax only on the output layer")
    return Layer(_frozen(w), _frozen(b), act)


def _layer_from_arrays(k: int, entry: dict[str, np.ndarray], last: bool) -> Layer:
    w = entry["weights"]
    if not np.issubdtype(w.dtype, np.number):
        raise InferenceInputError(f"layer {k}: layer{k}_weights must be numbers")
    bias = entry.get("bias")
    if bias is None:
        bias = np.zeros(w.shape[1] if w.ndim == 2 else 0)
    act = entry.get("activation")
    if act is None:
        act = "none" if last else "relu"
    elif act.dtype.kind not in "US" or act.size != 1:
        raise InferenceInputError(f"layer {k}: layer{k}_activation must be one string")
    return Layer(w, bias, str(np.asarray(act).item()) if not isinstance(act, str) else act)


def _metadata(value: np.ndarray | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        meta = json.loads(str(np.asarray(value).item()))
    except (ValueError, TypeError):
        raise InferenceInputError("metadata must be a JSON object stored as a string") from None
    if not isinstance(meta, dict):
        raise InferenceInputError("metadata must be a JSON object stored as a string")
    return meta
