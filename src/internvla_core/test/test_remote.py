"""The websocket client speaks upstream's policy-server protocol (against a server written here)."""

from __future__ import annotations

import json
import threading

import msgpack
import numpy as np
import pytest

from internvla_core.backends import LocalBackend, RemoteBackend
from internvla_core.normalization import action_stats, load_dataset_statistics, unnormalize_actions
from internvla_core.remote import RemoteError, RemotePolicyClient, packb, unpackb

NORMALIZED = np.linspace(-1.2, 1.2, 16 * 7, dtype=np.float32).reshape(1, 16, 7)


class ProtocolServer:
    """A minimal upstream-style server: metadata first, typed requests, text frame + 1011 on errors."""

    def __init__(self, fail_on_infer: bool = False) -> None:
        from websockets.sync.server import serve

        self.fail_on_infer = fail_on_infer
        self.requests: list[dict] = []
        self.headers: list = []
        self.server = serve(self.handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, ws) -> None:
        self.headers.append(ws.request.headers.get("Authorization"))
        ws.send(packb({"env": "test"}))
        for frame in ws:
            raw = msgpack.unpackb(frame, raw=True)  # check the wire format itself: bytes keys for arrays
            request = unpackb(frame)
            self.requests.append(request)
            if request["type"] == "ping":
                ws.send(
                    packb({"status": "ok", "ok": True, "type": "pong", "request_id": request["request_id"]})
                )
                continue
            image = raw[b"payload"][b"batch_images"][0][0]
            assert image[b"__ndarray__"] is True and image[b"dtype"] == b"|u1"
            if self.fail_on_infer:
                ws.send("Traceback (most recent call last):\n  ValueError: boom")
                ws.close(1011, "inference failed")
                return
            reply = {
                "status": "ok",
                "ok": True,
                "type": "inference_result",
                "request_id": request["request_id"],
            }
            reply["data"] = {"normalized_actions": NORMALIZED}
            ws.send(packb(reply))

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = ProtocolServer()
    yield s
    s.close()


def test_numpy_arrays_and_scalars_round_trip_with_upstreams_encoding():
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.int64(7), "n": [1, "x"]}
    out = unpackb(packb(data))
    assert out["a"].dtype == np.float32 and np.array_equal(out["a"], data["a"])
    assert out["s"] == 7 and out["s"].dtype == np.int64 and out["n"] == [1, "x"]
    with pytest.raises(ValueError, match="unsupported dtype"):
        packb(np.zeros(2, dtype=complex))


def test_client_handshake_ping_and_infer(server):
    client = RemotePolicyClient(f"ws://127.0.0.1:{server.port}", api_key="secret")
    assert client.connect() == {"env": "test"}
    assert client.ping() >= 0
    image = np.zeros((224, 224, 3), dtype=np.uint8)
    out = client.infer([image], "put the carrot on the plate", "oxe_bridge", cfg_scale=1.5, num_ddim_steps=10)
    np.testing.assert_array_equal(out, NORMALIZED[0])
    infer = server.requests[-1]
    assert infer["type"] == "infer" and infer["payload"]["instructions"] == ["put the carrot on the plate"]
    assert infer["payload"]["num_ddim_steps"] == 10 and infer["payload"]["use_ddim"] is True
    assert server.headers == ["Api-Key secret"]
    client.close()


def test_server_traceback_becomes_a_clear_remote_error():
    failing = ProtocolServer(fail_on_infer=True)
    try:
        client = RemotePolicyClient(f"ws://127.0.0.1:{failing.port}", retries=0)
        with pytest.raises(RemoteError, match="ValueError: boom"):
            client.infer([np.zeros((8, 8, 3), np.uint8)], "x")
    finally:
        failing.close()


def test_unreachable_server_fails_fast_with_the_url():
    client = RemotePolicyClient("ws://127.0.0.1:9", open_timeout=2, retries=1)
    with pytest.raises(RemoteError, match=r"127\.0\.0\.1:9"):
        client.infer([np.zeros((8, 8, 3), np.uint8)], "x")
    with pytest.raises(ValueError, match="ws://"):
        RemotePolicyClient("http://host:1")


def test_remote_backend_unnormalises_exactly_like_the_local_path(server, tmp_path):
    from internvla_core.model import tiny_checkpoint

    stats_file = tiny_checkpoint().parents[1] / "dataset_statistics.json"
    backend = RemoteBackend(RemotePolicyClient(f"ws://127.0.0.1:{server.port}"), stats_file)
    pred = backend.predict(
        [np.zeros((32, 32, 3), np.uint8)], "x", unnorm_key="oxe_bridge", cfg_scale=1.5, num_ddim_steps=10
    )
    stats = action_stats(load_dataset_statistics(stats_file), "oxe_bridge")
    np.testing.assert_array_equal(pred.actions, unnormalize_actions(NORMALIZED[0], stats))
    assert pred.unnorm_key == "oxe_bridge" and "remote" in pred.stages
    assert json.loads(stats_file.read_text())  # the same file the local policy reads
    backend.close()


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
    assert (
        policy.kw["spatial_prompt"] is False and policy.kw["seed"] == 3 and policy.kw["num_ddim_steps"] == 5
    )
    assert pred.actions.shape == (2, 7)
