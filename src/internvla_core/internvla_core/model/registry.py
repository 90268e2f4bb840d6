"""Process-wide sharing of loaded policies, so two nodes in one process hold one copy of the model.

The grounding node and the policy node may run in the same process (composed launch); each calls
``acquire(path, device, dtype)`` and gets the same :class:`InternVLAPolicy`. ``release`` decrements the
reference count and closes the policy (freeing its memory) when the last user lets go. Loading happens
outside the registry lock's critical path per key, so acquiring one checkpoint never blocks on another
being loaded, and two threads asking for the same key wait for one load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .policy import InternVLAPolicy, load_policy, resolve_checkpoint

RegistryKey = tuple[str, str, str]


@dataclass
class _Entry:
    ready: threading.Event = field(default_factory=threading.Event)
    policy: InternVLAPolicy | None = None
    error: BaseException | None = None
    refcount: int = 0


class PolicyRegistry:
    """Refcounted, thread-safe cache of policies keyed by (resolved checkpoint, device, dtype)."""

    def __init__(self, loader: Callable[..., InternVLAPolicy] = load_policy) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._entries: dict[RegistryKey, _Entry] = {}

    @staticmethod
    def make_key(
        path_or_hub_id: str | Path, device: str | torch.device, dtype: torch.dtype | None
    ) -> RegistryKey:
        try:
            resolved = str(resolve_checkpoint(path_or_hub_id).resolve())
        except FileNotFoundError:
            resolved = str(path_or_hub_id)
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
        return (resolved, str(dev), str(dtype or torch.float32))

    def acquire(
        self,
        path_or_hub_id: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> InternVLAPolicy:
        """The shared policy for this key, loading it on first use (other callers wait for that load)."""
        key = self.make_key(path_or_hub_id, device, dtype)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = _Entry()
                self._entries[key] = entry
            entry.refcount += 1
        if owner:
            try:
                entry.policy = self._loader(path_or_hub_id, device=device, dtype=dtype, **kwargs)
            except BaseException as exc:
                entry.error = exc
                with self._lock:
                    self._entries.pop(key, None)
                raise
            finally:
                entry.ready.set()
        else:
            entry.ready.wait()
            if entry.error is not None:
                raise RuntimeError(
                    f"loading {key[0]} failed in another thread: {entry.error}"
                ) from entry.error
        assert entry.policy is not None
        return entry.policy

    def release(self, policy: InternVLAPolicy) -> bool:
        """Drop one reference; closes the policy at zero. Returns True when it was closed."""
        with self._lock:
            for key, entry in self._entries.items():
                if entry.policy is policy:
                    entry.refcount -= 1
                    if entry.refcount > 0:
                        return False
                    del self._entries[key]
                    break
            else:
                raise KeyError("policy was not acquired from this registry (or already released)")
        policy.close()
        return True

    def refcount(self, policy: InternVLAPolicy) -> int:
        with self._lock:
            return next((e.refcount for e in self._entries.values() if e.policy is policy), 0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_DEFAULT = PolicyRegistry()


def acquire(
    path_or_hub_id: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, **kwargs
) -> InternVLAPolicy:
    """Shared policy from the process-wide registry (see :class:`PolicyRegistry`)."""
    return _DEFAULT.acquire(path_or_hub_id, device, dtype, **kwargs)


def release(policy: InternVLAPolicy) -> bool:
    """Release a policy obtained with :func:`acquire`; frees it when no user is left."""
    return _DEFAULT.release(policy)


def default_registry() -> PolicyRegistry:
    return _DEFAULT
