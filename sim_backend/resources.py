"""Where the bundled data files (``data/`` in the repository) are found.

``data/`` installs as the ``aimc_data`` package so that presets are found after
a plain ``pip install .``; from a source checkout we fall back to the folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_root() -> Path:
    try:
        root = Path(str(resources.files("aimc_data")))
        if root.is_dir():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "data"


def _find(folder: str, name: str) -> Path | None:
    path = data_root() / folder / f"{name}.toml"
    return path if path.is_file() else None


def chip_preset_path(name: str) -> Path | None:
    return _find("chips", name)


def wafer_preset_path(name: str) -> Path | None:
    return _find("wafers", name)


def list_presets(folder: str) -> list[str]:
    return sorted(p.stem for p in (data_root() / folder).glob("*.toml"))
