"""Turning exceptions people hit at start into one line that says what to do (no rclpy import)."""

from __future__ import annotations

CUDA_MISSING = "device:=cuda but this torch has no CUDA: install the CUDA wheel, see README GPU"


def explain(exc: BaseException) -> str | None:
    """A known cause's fix, or None. Torch raises AssertionError("Torch not compiled with CUDA
    enabled") when a CPU wheel is asked for cuda; a newer torch a RuntimeError with the same words."""
    text = str(exc)
    if "not compiled with CUDA" in text or "Found no NVIDIA driver" in text:
        return CUDA_MISSING
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"the Python module '{exc.name}' is missing: run `make setup` (or pip install it in .venv)"
    return None


def one_line(exc: BaseException) -> str:
    """The exception as one line, with the fix first when it is known."""
    fix = explain(exc)
    head = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"{fix} ({head})" if fix else head
