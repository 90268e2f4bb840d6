"""The websocket client speaks upstream's policy-server protocol (against a server written here)."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest

from internvla_core.remote import RemoteError, RemotePolicyClient, RemoteServerError, packb, unpackb

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


def test_client_reconnects_when_the_server_drops_the_connection(server):
    client = RemotePolicyClient(f"ws://127.0.0.1:{server.port}", retries=2)
    client.connect()
    client._ws.close()  # the link dies between two requests (server restart, Wi-Fi drop)
    out = client.infer([np.zeros((8, 8, 3), np.uint8)], "x")
    np.testing.assert_array_equal(out, NORMALIZED[0])
    assert len(server.headers) == 2  # a second websocket was opened
    client.close()


def test_a_server_that_never_sends_its_metadata_times_out_with_a_clear_error():
    from websockets.sync.server import serve

    release = threading.Event()
    silent = serve(lambda ws: release.wait(10), "127.0.0.1", 0)
    threading.Thread(target=silent.serve_forever, daemon=True).start()
    try:
        client = RemotePolicyClient(f"ws://127.0.0.1:{silent.socket.getsockname()[1]}", open_timeout=0.3)
        with pytest.raises(RemoteError, match=r"sent no metadata within 0\.3 s"):
            client.connect()
    finally:
        release.set()
        silent.shutdown()


def test_an_error_reply_is_not_retried():
    from websockets.sync.server import serve

    requests: list = []

    def handle(ws) -> None:
        ws.send(packb({}))
        for frame in ws:
            request = unpackb(frame)
            requests.append(request)
            ws.send(
                packb(
                    {
                        "status": "error",
                        "ok": False,
                        "request_id": request["request_id"],
                        "message": "bad key",
                    }
                )
            )

    erring = serve(handle, "127.0.0.1", 0)
    threading.Thread(target=erring.serve_forever, daemon=True).start()
    try:
        client = RemotePolicyClient(f"ws://127.0.0.1:{erring.socket.getsockname()[1]}", retries=3)
        with pytest.raises(RemoteServerError, match="bad key"):
            client.infer([np.zeros((8, 8, 3), np.uint8)], "x", unnorm_key="nope")
        assert len(requests) == 1
        client.close()
    finally:
        erring.shutdown()


class StarVLAServer:
    """A starVLA-style server: metadata with available_unnorm_keys, ``examples`` in, un-normalised
    ``actions`` out, errors as ``{"status": "error", "error": {"message"}}`` (its policy wrapper's shapes)."""

    ACTIONS = np.linspace(-0.05, 1.0, 16 * 7).reshape(1, 16, 7)

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.requests: list[dict] = []
        self.server = serve(self.handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, ws) -> None:
        ws.send(
            packb(
                {
                    "env": "starvla_policy_server",
                    "action_chunk_size": 16,
                    "available_unnorm_keys": ["oxe_bridge"],
                    "default_unnorm_key": "oxe_bridge",
                }
            )
        )
        for frame in ws:
            msg = unpackb(frame)
            self.requests.append(msg)
            payload = msg.get("payload", msg)
            rid = msg.get("request_id", "default")
            if msg.get("type") == "ping":
                ws.send(packb({"status": "ok", "ok": True, "type": "ping", "request_id": rid}))
            elif payload.get("unnorm_key") != "oxe_bridge":
                ws.send(
                    packb(
                        {
                            "status": "error",
                            "ok": False,
                            "type": "inference_result",
                            "request_id": rid,
                            "error": {"message": f"unknown unnorm_key {payload.get('unnorm_key')}"},
                        }
                    )
                )
            else:
                ws.send(
                    packb(
                        {
                            "status": "ok",
                            "ok": True,
                            "type": "inference_result",
                            "request_id": rid,
                            "data": {"actions": self.ACTIONS},
                        }
                    )
                )

    def close(self) -> None:
        self.server.shutdown()


def test_remote_backend_speaks_starvla_to_a_starvla_server_and_keeps_its_actions(tmp_path):
    import json

    from internvla_core.backends import RemoteBackend
    from internvla_core.normalization import action_stats, load_dataset_statistics, normalize_actions

    stats = {
        "oxe_bridge": {
            "action": {"q01": [-0.1] * 6 + [0.0], "q99": [0.1] * 6 + [1.0], "mask": [True] * 6 + [False]}
        }
    }
    (tmp_path / "dataset_statistics.json").write_text(json.dumps(stats))
    server = StarVLAServer()
    try:
        backend = RemoteBackend(
            RemotePolicyClient(f"ws://127.0.0.1:{server.port}"), tmp_path / "dataset_statistics.json"
        )
        pred = backend.predict(
            [np.zeros((8, 8, 3), np.uint8)], "pick", unnorm_key="oxe_bridge", cfg_scale=1.5, num_ddim_steps=10
        )
        assert backend.client.dialect == "starvla"
        request = server.requests[-1]["payload"]
        assert request["examples"][0]["lang"] == "pick" and request["examples"][0]["image"][0].shape == (
            8,
            8,
            3,
        )
        assert request["unnorm_key"] == "oxe_bridge" and "batch_images" not in request
        np.testing.assert_array_equal(
            pred.actions, StarVLAServer.ACTIONS[0]
        )  # the server's un-normalised chunk
        loaded = action_stats(load_dataset_statistics(tmp_path / "dataset_statistics.json"), "oxe_bridge")
        np.testing.assert_allclose(
            pred.normalized, normalize_actions(StarVLAServer.ACTIONS[0], loaded), atol=1e-6
        )
        with pytest.raises(RemoteServerError, match="unknown unnorm_key other"):
            backend.client.infer_chunk([np.zeros((8, 8, 3), np.uint8)], "pick", unnorm_key="other")
        backend.close()
    finally:
        server.close()
