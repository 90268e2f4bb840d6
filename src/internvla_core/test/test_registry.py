"""Process-wide policy sharing: one load per key, refcounting, release frees, thread safety."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from internvla_core.model import tiny_checkpoint
from internvla_core.model.registry import PolicyRegistry


class _FakePolicy:
    def __init__(self, path):
        self.path = path
        self.closed = False

    def close(self):
        self.closed = True


def _counting_loader(calls):
    def load(path, device="cpu", dtype=None, **kwargs):
        calls.append((str(path), str(device), dtype))
        time.sleep(0.05)  # widen the race window
        return _FakePolicy(path)

    return load


def test_same_key_shares_one_policy_and_release_frees_at_zero(tmp_path):
    calls: list = []
    reg = PolicyRegistry(loader=_counting_loader(calls))
    a = reg.acquire(tmp_path / "m.pt", "cpu")
    b = reg.acquire(tmp_path / "m.pt", "cpu")
    assert a is b and len(calls) == 1 and reg.refcount(a) == 2
    assert reg.release(a) is False and not a.closed
    assert reg.release(b) is True and a.closed
    assert len(reg) == 0
    with pytest.raises(KeyError):
        reg.release(a)


def test_different_device_or_dtype_are_different_entries(tmp_path):
    calls: list = []
    reg = PolicyRegistry(loader=_counting_loader(calls))
    a = reg.acquire(tmp_path / "m.pt", "cpu")
    b = reg.acquire(tmp_path / "m.pt", "cpu", torch.bfloat16)
    assert a is not b and len(calls) == 2


def test_concurrent_acquires_load_once(tmp_path):
    calls: list = []
    reg = PolicyRegistry(loader=_counting_loader(calls))
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(reg.acquire(tmp_path / "m.pt"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(calls) == 1 and len(got) == 8 and all(g is got[0] for g in got)
    assert reg.refcount(got[0]) == 8


def test_a_failed_load_is_not_cached(tmp_path):
    attempts = []

    def flaky(path, device="cpu", dtype=None, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk hiccup")
        return _FakePolicy(path)

    reg = PolicyRegistry(loader=flaky)
    with pytest.raises(OSError):
        reg.acquire(tmp_path / "m.pt")
    assert reg.acquire(tmp_path / "m.pt").path == tmp_path / "m.pt"


def test_real_policy_is_shared_between_a_run_dir_and_its_checkpoint_path():
    ckpt = tiny_checkpoint()
    reg = PolicyRegistry()
    a = reg.acquire(ckpt)
    b = reg.acquire(ckpt.parents[1])  # the run dir resolves to the same file
    assert a is b
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    assert a.predict_action(img, "pick", unnorm_key="oxe_rt1", seed=0).actions.shape == (16, 7)
    reg.release(a)
    assert not a.closed
    reg.release(b)
    assert a.closed
