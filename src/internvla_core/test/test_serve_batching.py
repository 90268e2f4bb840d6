"""Batching across clients: a batch gives each query the chunk it gets alone; the batcher's window,
fairness, bounded queue, timeouts and isolation of a failing request."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from serving_helpers import WireClient, image, m1_infer, serving

from internvla_core.serving.batcher import Batcher, JobTimeoutError, ServerBusyError

INSTRUCTIONS = [
    "pick up the red block",
    "put the carrot on the plate and then move the spoon next to the towel",
    "open the drawer",
    "stack the green cube on the yellow cube",
]


@pytest.fixture(scope="module")
def policy():
    from internvla_core.model import load_policy, tiny_checkpoint

    loaded = load_policy(tiny_checkpoint())
    yield loaded
    loaded.close()


# ---------------------------------------------------------------------------------------------- model
def test_a_left_padded_batch_equals_one_at_a_time_only_with_batch_invariant(policy):
    """The fix: upstream's batch lets padded positions into the QFormer (the short prompt's chunk moves);
    ``batch_invariant`` masks them and embeds the timestep as for one query."""
    from internvla_core.model.policy import to_pil

    views = [[to_pil(image(i))] for i in range(3)]
    texts = [INSTRUCTIONS[0], INSTRUCTIONS[1], INSTRUCTIONS[2]]
    noise = torch.randn(
        3, policy.action_horizon, policy.action_dim, generator=torch.Generator().manual_seed(0)
    )
    alone = np.concatenate(
        [
            policy.model.predict_action([views[i]], [texts[i]], initial_noise=noise[i : i + 1])
            for i in range(3)
        ]
    )
    upstream_batch = policy.model.predict_action(views, texts, initial_noise=noise)
    fixed_batch = policy.model.predict_action(views, texts, initial_noise=noise, batch_invariant=True)
    assert np.abs(upstream_batch - alone).max() > 1e-3  # the divergence this fixes (padded samples)
    np.testing.assert_allclose(fixed_batch, alone, rtol=0, atol=1e-5)


def test_concurrent_clients_are_batched_and_each_gets_its_single_query_chunk(policy):
    with serving(policy, max_wait=1.0, max_batch=8) as server:
        clients = [WireClient(server.url) for _ in INSTRUCTIONS]
        replies: dict[int, np.ndarray] = {}
        start = threading.Barrier(len(clients))

        def ask(i: int) -> None:
            start.wait()
            reply = clients[i].call(
                m1_infer([image(10 + i)], INSTRUCTIONS[i], seed=100 + i, num_ddim_steps=10)
            )
            replies[i] = reply["data"]["normalized_actions"][0]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert server.batcher.stats.largest_batch >= 2  # they really shared a forward pass
        for i, text in enumerate(INSTRUCTIONS):
            alone = policy.predict_action([image(10 + i)], text, unnorm_key="oxe_bridge", seed=100 + i)
            np.testing.assert_allclose(replies[i], alone.normalized, rtol=0, atol=1e-5)
        for client in clients:
            client.close()


# -------------------------------------------------------------------------------------------- batcher
class Recorder:
    """A run_batch that records the batches it was given; ``gate`` holds the worker until released."""

    def __init__(self, fail_on: object = None) -> None:
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on = fail_on

    def __call__(self, payloads):
        self.gate.wait(10)
        self.batches.append(list(payloads))
        if self.fail_on in payloads:
            raise ValueError(f"bad payload {self.fail_on}")
        return [f"done {p}" for p in payloads]


def hold_worker(batcher: Batcher, recorder: Recorder) -> None:
    """Occupy the worker with one job so the next submissions queue up behind it."""
    recorder.gate.clear()
    batcher.submit("warmup", "k", 1, "warmup")
    deadline = time.monotonic() + 5
    while batcher.queued and time.monotonic() < deadline:
        time.sleep(0.005)


def test_batcher_takes_clients_in_turn_so_a_chatty_client_cannot_starve_a_quiet_one():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=2, max_wait=0.0, max_queue=64)
    hold_worker(batcher, recorder)
    chatty = [batcher.submit("A", "k", 1, f"a{i}") for i in range(6)]
    quiet = batcher.submit("B", "k", 1, "b0")
    recorder.gate.set()
    assert quiet.future.result(timeout=10) == "done b0"
    for job in chatty:
        job.future.result(timeout=10)
    batches = recorder.batches[1:]
    assert "b0" in batches[0]  # served in the first batch, not after A's six
    assert all(len(b) <= 2 for b in batches)
    batcher.stop()


def test_batcher_waits_within_its_window_and_only_groups_compatible_jobs():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=8, max_wait=0.3, max_queue=64)
    first = batcher.submit("A", "cfg1.5", 1, "a")
    time.sleep(0.05)  # inside the window: joins the batch
    second = batcher.submit("B", "cfg1.5", 2, "b")
    other = batcher.submit("C", "cfg1.0", 1, "c")  # another DDIM loop: a batch of its own
    for job in (first, second, other):
        job.future.result(timeout=10)
    assert recorder.batches[0] == ["a", "b"] and recorder.batches[1] == ["c"]
    assert batcher.stats.largest_batch == 3
    batcher.stop()


def test_a_full_queue_answers_busy_at_once():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=1, max_wait=0.0, max_queue=2)
    hold_worker(batcher, recorder)
    batcher.submit("A", "k", 1, "a")
    batcher.submit("B", "k", 1, "b")
    with pytest.raises(ServerBusyError, match=r"busy.*max_queue 2"):
        batcher.submit("C", "k", 1, "c")
    assert batcher.stats.busy_rejections == 1
    recorder.gate.set()
    batcher.stop()


def test_a_job_still_queued_at_its_deadline_times_out_and_is_never_run():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=1, max_wait=0.0, max_queue=8, timeout=0.2)
    hold_worker(batcher, recorder)
    late = batcher.submit("A", "k", 1, "late")
    time.sleep(0.3)
    recorder.gate.set()
    with pytest.raises(JobTimeoutError, match="timed out"):
        late.future.result(timeout=10)
    assert all("late" not in b for b in recorder.batches)
    batcher.stop()


def test_a_cancelled_job_costs_no_forward_pass():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=4, max_wait=0.0, max_queue=8)
    hold_worker(batcher, recorder)
    gone = batcher.submit("A", "k", 1, "gone")
    kept = batcher.submit("B", "k", 1, "kept")
    gone.cancel()
    recorder.gate.set()
    assert kept.future.result(timeout=10) == "done kept"
    assert all("gone" not in b for b in recorder.batches)
    batcher.stop()


def test_a_failing_request_fails_alone_and_its_batch_neighbours_get_answers():
    recorder = Recorder(fail_on="poison")
    batcher = Batcher(recorder, max_batch=4, max_wait=0.0, max_queue=8)
    hold_worker(batcher, recorder)
    good = batcher.submit("A", "k", 1, "good")
    bad = batcher.submit("B", "k", 1, "poison")
    recorder.gate.set()
    assert good.future.result(timeout=10) == "done good"
    with pytest.raises(ValueError, match="poison"):
        bad.future.result(timeout=10)
    batcher.stop()


def test_a_batch_stops_waiting_once_every_connected_client_is_in_it():
    recorder = Recorder()
    connected = [1]
    batcher = Batcher(
        recorder, max_batch=8, max_wait=30.0, max_queue=8, expected_clients=lambda: connected[0]
    )
    lone = batcher.submit("A", "k", 1, "alone")
    assert lone.future.result(timeout=10) == "done alone"  # not after the 30 s window
    connected[0] = 2
    first = batcher.submit("A", "k", 1, "a")  # B is connected too: the window stays open for it
    time.sleep(0.2)
    second = batcher.submit("B", "k", 1, "b")
    assert first.future.result(timeout=10) and second.future.result(timeout=10)  # then no wait for more
    assert recorder.batches[-1] == ["a", "b"]
    batcher.stop()
