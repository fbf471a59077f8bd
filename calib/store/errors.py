"""The store's error classes: each message names the die file and what is wrong."""

from __future__ import annotations

from instruments.errors import UserError


class DieStoreError(UserError, ValueError):
    """A die file cannot be read or written as one (wrong file, damaged, unknown run, disk)."""


class DieFileBusy(DieStoreError):
    """Another process held the die file's lock for longer than the store waits."""
