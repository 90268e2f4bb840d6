"""Local and remote backends give the same chunk for the same model output (un-normalised client-side)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from internvla_core.backends import LocalBackend, RemoteBackend
from internvla_core.normalization import (
    UnnormKeyError,
    action_stats,
    load_dataset_statistics,
    unnormalize_actions,
)
from internvla_core.remote import RemotePolicyClient, packb, unpackb

IMAGE = np.random.default_rng(0).integers(0, 256, size=(64, 80, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny():
    from internvla_core.model import load_policy, tiny_checkpoint

    policy = load_policy(tiny_checkpoint())
    yield policy, tiny_checkpoint().parents[1] / "dataset_statistics.json"
    policy.close()


@pytest.fixture
def tiny_server(tiny):
    """Upstream's server protocol wrapping the tiny policy (seed 0 so both sides draw the same noise)."""
    from websockets.sync.server import serve

    policy, _ = tiny

    def handle(ws) -> None:
        ws.send(packb({"model": "tiny"}))
        for frame in ws:
            request = unpackb(frame)
            payload = request["payload"]
            pred = policy.predict_action(
                payload["batch_images"][0],
                payload["instructions"][0],
                unnorm_key=payload["unnorm_key"],
                cfg_scale=payload["cfg_scale"],
                num_ddim_steps=payload["num_ddim_steps"],
                seed=0,
            )
            reply = {
                "status": "ok",
                "ok": True,
                "type": "inference_result",
                "request_id": request["request_id"],
            }
            reply["data"] = {"normalized_actions": pred.normalized[None]}
            ws.send(packb(reply))

    server = serve(handle, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    server.shutdown()
    thread.join(timeout=5)


def test_remote_and_local_backends_return_the_same_chunk_for_the_same_model(tiny, tiny_server):
    policy, stats_file = tiny
    kwargs = dict(unnorm_key="oxe_bridge", cfg_scale=1.5, num_ddim_steps=4)
    local = LocalBackend(policy).predict([IMAGE], "put the carrot on the plate", seed=0, **kwargs)
    remote_backend = RemoteBackend(RemotePolicyClient(tiny_server), stats_file)
    remote = remote_backend.predict([IMAGE], "put the carrot on the plate", **kwargs)
    remote_backend.close()
    assert remote.normalized.shape == local.normalized.shape == (policy.action_horizon, policy.action_dim)
    np.testing.assert_allclose(remote.normalized, local.normalized, atol=1e-6)
    np.testing.assert_allclose(remote.actions, local.actions, atol=1e-5)
    assert remote.unnorm_key == local.unnorm_key == "oxe_bridge"


def test_remote_backend_unnormalises_with_the_statistics_file(tiny, tiny_server):
    _, stats_file = tiny
    backend = RemoteBackend(RemotePolicyClient(tiny_server), stats_file)
    pred = backend.predict([IMAGE], "x", unnorm_key="oxe_bridge", cfg_scale=1.5, num_ddim_steps=2)
    stats = action_stats(load_dataset_statistics(stats_file), "oxe_bridge")
    np.testing.assert_array_equal(pred.actions, unnormalize_actions(pred.normalized, stats))
    assert {"remote", "total"} <= set(pred.stages) and backend.unnorm_keys == list(
        load_dataset_statistics(stats_file)
    )
    backend.close()


def test_remote_backend_refuses_an_unknown_key_before_sending_anything(tiny):
    _, stats_file = tiny

    class NeverCalled:
        def infer_chunk(self, *args, **kwargs):
            raise AssertionError("the request must not be sent")

        def close(self) -> None:
            pass

    backend = RemoteBackend(NeverCalled(), stats_file)
    with pytest.raises(UnnormKeyError, match="no_such_robot"):
        backend.predict([IMAGE], "x", unnorm_key="no_such_robot", cfg_scale=1.5, num_ddim_steps=2)


def test_local_backend_passes_the_spatial_prompt_flag_and_seed():
    class FakePolicy:
        unnorm_keys = ("k",)

        def predict_action(self, images, instruction, **kw):
            self.kw = kw
            from internvla_core.model.policy import ActionPrediction

            return ActionPrediction(np.zeros((2, 7), np.float32), np.ones((2, 7)), {"total": 0.1}, "k")

    policy = FakePolicy()
    pred = LocalBackend(policy, spatial_prompt=False).predict(
        [], "x", unnorm_key="k", cfg_scale=2.0, num_ddim_steps=5, seed=3
    )
    assert policy.kw["spatial_prompt"] is False and policy.kw["seed"] == 3
    assert policy.kw["num_ddim_steps"] == 5 and policy.kw["cfg_scale"] == 2.0
    assert pred.actions.shape == (2, 7) and pred.stages == {"total": 0.1}
