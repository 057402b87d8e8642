"""Refusing a run that cannot fit in memory, before it allocates anything (rather than being
killed by the operating system later). A task estimates what its model needs (the language
model: `lm.model.memory_need`); `check_memory` compares it with what is available now."""

from __future__ import annotations

import os

from charlm.errors import UsageError


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: int, n_params: int, hint: str) -> None:
    """UsageError when `need` bytes (a model of `n_params` parameters) exceed the memory available
    now; `hint` lists the options that make the model smaller."""
    have = available_memory()
    if have is not None and need > have:
        gib = 1 << 30
        raise UsageError(f"this model needs about {need / gib:.1f} GiB of memory ({n_params:,} parameters) but only "
                         f"{have / gib:.1f} GiB is available: use a smaller {hint}")
