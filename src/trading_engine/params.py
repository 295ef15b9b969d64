"""Checks shared by every settings dataclass that is built from Kedro parameters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def known_params(
    params: Mapping[str, Any] | None, settings_class: type, what: str, also_known: Iterable[str] = ()
) -> dict[str, Any]:
    """A copy of `params` after checking that each key is a field of `settings_class` (or in
    `also_known`): a misspelt key fails with the list of the known ones instead of being ignored."""
    params = dict(params or {})
    known = set(settings_class.__dataclass_fields__) | set(also_known)
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    return params
