"""CNI specification versions: parsing, ordering and selection. A configuration declares one or
more versions (`cniVersion`, and in 1.1 `cniVersions`); each plugin reports its own through the
VERSION command; the runtime runs a whole chain at the highest version that the configuration
declares, this library implements and every plugin of the chain supports."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

SUPPORTED: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""Every spec version this library can speak and convert results between."""

CURRENT = SUPPORTED[-1]


@functools.lru_cache(maxsize=256)
def parse(version: str) -> tuple[int, int, int]:
    """`"1.0.0"` -> `(1, 0, 0)`; a missing patch (or minor) part counts as zero."""
    if not isinstance(version, str) or not version:
        raise ValueError(f"invalid CNI version {version!r}")
    parts = version.split(".")
    if len(parts) > 3:
        raise ValueError(f"invalid CNI version {version!r}")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"invalid CNI version {version!r}") from None
    if any(n < 0 for n in nums):
        raise ValueError(f"invalid CNI version {version!r}")
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def normalize(version: str) -> str:
    """`"0.4"` -> `"0.4.0"`."""
    return "%d.%d.%d" % parse(version)


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def is_supported(version: str) -> bool:
    try:
        return normalize(version) in SUPPORTED
    except ValueError:
        return False


def sort(versions: Iterable[str]) -> list[str]:
    """Distinct, normalized, ascending."""
    return sorted({normalize(v) for v in versions}, key=parse)


def select(declared: Iterable[str], plugins: Sequence[Iterable[str]] = ()) -> str | None:
    """The highest version in `declared` that this library supports and that every entry of
    `plugins` (each a plugin's supported versions) lists; None when there is none."""
    plugin_sets = [{normalize(v) for v in p if _valid(v)} for p in plugins]
    for candidate in reversed(sort(v for v in declared if is_supported(v))):
        if all(candidate in s for s in plugin_sets):
            return candidate
    return None


def _valid(v: str) -> bool:
    try:
        parse(v)
    except ValueError:
        return False
    return True
