"""internvla-serve keeps serving whatever a client sends: fuzzed frames, oversize frames, bad shapes,
clients that vanish mid-inference."""

from __future__ import annotations

import random
import time

import msgpack
import numpy as np
import pytest
from serving_helpers import (
    WireClient,
    image,
    m1_infer,
    pack_upstream,
    serving,
    starvla_infer,
    unpack_upstream,
)


@pytest.fixture(scope="module")
def policy():
    from internvla_core.model import load_policy, tiny_checkpoint

    loaded = load_policy(tiny_checkpoint())
    yield loaded
    loaded.close()


def bad_array(override: dict) -> dict:
    """An array map as upstream encodes it, with fields overridden to lie about itself."""
    arr = {b"__ndarray__": True, b"data": bytes(12), b"dtype": "|u1", b"shape": [2, 2, 3]}
    arr.update(override)
    return arr


def structured_garbage(rng: random.Random) -> object:
    """Well-formed msgpack that is no valid request (wrong types, shapes, dtypes, buffers, fields)."""
    good = [image(0, 8, 8)]
    choices = [
        lambda: m1_infer([bad_array({b"shape": [2, 2, 4]})], "x"),  # buffer shorter than the shape
        lambda: m1_infer([bad_array({b"dtype": "|O"})], "x"),  # object dtype (pickle)
        lambda: m1_infer([bad_array({b"dtype": "<c8", b"data": bytes(96)})], "x"),
        lambda: m1_infer([bad_array({b"shape": [-1, 2, 3]})], "x"),
        lambda: m1_infer([bad_array({b"shape": "nope"})], "x"),
        lambda: m1_infer([bad_array({b"dtype": "not-a-dtype"})], "x"),
        lambda: m1_infer([np.zeros((8, 8), np.uint8)], "x"),  # wrong image shapes and dtypes
        lambda: m1_infer([np.zeros((8, 8, 3), np.float32)], "x"),
        lambda: m1_infer([np.zeros((1, 8, 3), np.uint8)], "x"),
        lambda: m1_infer([np.zeros((8, 8, 5), np.uint8)], "x"),
        lambda: m1_infer([], "x"),
        lambda: m1_infer(good, ""),
        lambda: m1_infer(good, 42),
        lambda: m1_infer(good, "x", cfg_scale="high"),
        lambda: m1_infer(good, "x", num_ddim_steps=0),
        lambda: m1_infer(good, "x", num_ddim_steps=2.5),
        lambda: m1_infer(good, "x", cfg_scale=float("nan")),
        lambda: m1_infer(good, "x", unnorm_key="no_such_robot"),
        lambda: m1_infer(good, "x", unnorm_key=[1]),
        lambda: m1_infer(good, "x", use_ddim=False),
        lambda: m1_infer(good, "x", seed=-1),
        lambda: {**m1_infer(good, "x"), "instructions": ["a", "b"]},
        lambda: {**m1_infer(good, "x"), "batch_images": "images"},
        lambda: {
            **m1_infer(good, "x"),
            "batch_images": [[image(0, 8, 8)], [image(0, 8, 8)] * 2],
            "instructions": ["a", "b"],
        },
        lambda: starvla_infer(good, "x", examples="nope"),
        lambda: {"examples": [{"image": good}]},
        lambda: {"examples": [{"lang": "x"}]},
        lambda: {"examples": [{"image": good, "lang": "x", "state": "up"}], "unnorm_key": "oxe_bridge"},
        lambda: {"examples": [7]},
        lambda: {"type": "dance", "payload": {}},
        lambda: {"type": 3},
        lambda: {"type": "infer", "payload": [1, 2]},
        lambda: {"something": "else"},
        lambda: [1, 2, 3],
        lambda: "just a string",
        lambda: rng.random(),
        lambda: {b"bytes-key": {b"__ndarray__": True}},
    ]
    return rng.choice(choices)()


def malformed_frames(count: int, seed: int = 0):
    """Random bytes, truncated and extended valid frames, text frames and structured garbage."""
    rng = random.Random(seed)
    valid = pack_upstream(m1_infer([image(0, 16, 16)], "pick", num_ddim_steps=1))
    for i in range(count):
        kind = i % 6
        if kind == 0:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        elif kind == 1:
            yield valid[: rng.randint(0, len(valid) - 1)]  # every strict prefix is incomplete msgpack
        elif kind == 2:
            yield valid + bytes([rng.randint(0, 255)])  # trailing data after the map
        elif kind == 3:
            yield "text frame " + str(i)
        elif kind == 4:
            yield bytes([0xC1]) + bytes(rng.getrandbits(8) for _ in range(8))  # 0xc1: never used in msgpack
        else:
            obj = structured_garbage(rng)
            yield pack_upstream(obj) if not isinstance(obj, (bytes, str)) else msgpack.packb(obj)


def test_a_thousand_malformed_frames_get_error_replies_and_a_valid_request_still_works(policy):
    with serving(policy) as server:
        client = WireClient(server.url)
        frames = list(malformed_frames(1200))
        for frame in frames:
            reply = client.send_raw(frame)
            assert isinstance(reply, dict) and reply["status"] == "error" and reply["ok"] is False, (
                frame,
                reply,
            )
            assert reply["message"] and reply["error"]["message"] == reply["message"]
        ok = client.call(m1_infer([image(1)], "put the carrot on the plate", num_ddim_steps=2))
        assert ok["status"] == "ok" and ok["data"]["normalized_actions"].shape[0] == 1
        client.close()
        assert server.stats.error_replies == len(frames) >= 1000


def test_error_replies_say_what_is_wrong(policy):
    with serving(policy) as server:
        client = WireClient(server.url)

        def message(obj) -> str:
            return client.call(obj)["message"]

        assert "HxWx3" in message(m1_infer([np.zeros((8, 8), np.uint8)], "x"))
        assert "uint8" in message(m1_infer([np.zeros((8, 8, 3), np.float32)], "x"))
        assert "needs 12 bytes" in message(m1_infer([bad_array({b"data": bytes(5)})], "x"))
        assert "refused" in message(m1_infer([bad_array({b"dtype": "|O"})], "x"))
        assert "no_such_robot" in message(m1_infer([image(0)], "x", unnorm_key="no_such_robot"))
        assert "not valid msgpack" in client.send_raw(b"\xc1")["message"]
        assert "text frames" in client.send_raw("hello")["message"]
        client.close()


def test_a_frame_above_the_size_limit_closes_only_that_connection(policy):
    from websockets.exceptions import ConnectionClosed

    with serving(policy, max_message_bytes=200_000) as server:
        big, small = WireClient(server.url), WireClient(server.url)
        with pytest.raises(ConnectionClosed) as closed:
            big.call(m1_infer([image(0, 400, 400)], "x"))  # 480 kB of pixels
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
        assert small.call(m1_infer([image(1)], "x", num_ddim_steps=1))["ok"]
        small.close()


def test_a_client_that_disconnects_mid_inference_is_dropped_and_others_are_served(policy):
    with serving(policy, max_wait=0.3) as server:
        leaving, staying = WireClient(server.url), WireClient(server.url)
        leaving.ws.send(pack_upstream(m1_infer([image(2)], "pick", num_ddim_steps=4)))
        leaving.ws.close()  # gone before its answer exists
        reply = staying.call(m1_infer([image(3)], "place", num_ddim_steps=2))
        assert reply["ok"]
        deadline = time.monotonic() + 10
        while server.stats.dropped_disconnected < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats.dropped_disconnected == 1
        again = WireClient(server.url)
        assert again.call({"type": "ping", "payload": {}})["ok"]
        again.close()
        staying.close()


def test_a_request_with_more_samples_than_one_batch_is_refused_with_the_limit(policy):
    with serving(policy, max_batch=2) as server:
        client = WireClient(server.url)
        request = m1_infer([image(0)], "x", num_ddim_steps=1)
        request["batch_images"] *= 3
        request["instructions"] *= 3
        reply = client.call(request)
        assert reply["status"] == "error" and "at most 2 (max_batch)" in reply["message"]
        client.close()


def test_a_non_ascii_api_key_header_is_refused_not_crashed_on(policy):
    from websockets.exceptions import InvalidStatus

    with serving(policy, api_key="s3cret") as server:
        with pytest.raises(InvalidStatus, match="401"):
            WireClient(server.url, api_key="s3crét")
        assert WireClient(server.url, api_key="s3cret").call({"type": "ping", "payload": {}})["ok"]


def test_a_full_queue_gets_a_busy_reply_and_the_queued_requests_are_still_served(policy):
    import threading

    with serving(policy, max_batch=1, max_wait=0.0, max_queue=1) as server:
        gate, entered = threading.Event(), threading.Event()
        run = server.batcher.run_batch

        def held(payloads):  # the real engine, held at the door so the queue fills deterministically
            entered.set()
            gate.wait(30)
            return run(payloads)

        server.batcher.run_batch = held
        replies: dict[str, dict] = {}

        def ask(name: str) -> None:
            client = WireClient(server.url)
            replies[name] = client.call(m1_infer([image(0)], name, num_ddim_steps=1))
            client.close()

        running = threading.Thread(target=ask, args=("running",))
        running.start()
        assert entered.wait(30)  # the worker holds the first request
        queued = threading.Thread(target=ask, args=("queued",))
        queued.start()
        deadline = time.monotonic() + 30
        while server.batcher.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        ask("rejected")
        assert replies["rejected"]["status"] == "error" and replies["rejected"]["busy"] is True
        assert "busy" in replies["rejected"]["message"] and "max_queue 1" in replies["rejected"]["message"]
        gate.set()
        running.join(30)
        queued.join(30)
        assert replies["running"]["ok"] and replies["queued"]["ok"]
        assert server.stats.busy_replies == 1


def test_a_request_still_queued_at_its_timeout_gets_a_timeout_reply(policy):
    import threading

    with serving(policy, max_batch=1, max_wait=0.0, request_timeout=0.3) as server:
        gate, entered = threading.Event(), threading.Event()
        run = server.batcher.run_batch

        def held(payloads):
            entered.set()
            gate.wait(30)
            return run(payloads)

        server.batcher.run_batch = held
        first: dict = {}

        def ask_first() -> None:
            client = WireClient(server.url)
            first["reply"] = client.call(m1_infer([image(0)], "first", num_ddim_steps=1))
            client.close()

        thread = threading.Thread(target=ask_first)
        thread.start()
        assert entered.wait(30)
        late = WireClient(server.url)
        late.ws.send(pack_upstream(m1_infer([image(1)], "late", num_ddim_steps=1)))
        time.sleep(0.5)  # past its deadline while the worker is still busy
        gate.set()
        reply = unpack_upstream(late.ws.recv(timeout=30))
        assert reply["status"] == "error" and reply["timeout"] is True and "timed out" in reply["message"]
        thread.join(30)
        assert first["reply"]["ok"]
        assert late.call({"type": "ping", "payload": {}})["ok"]  # the connection is still usable
        late.close()


def test_connections_beyond_the_limit_are_refused_at_the_handshake_until_one_leaves(policy):
    from websockets.exceptions import InvalidStatus

    with serving(policy, max_connections=1) as server:
        first = WireClient(server.url)
        with pytest.raises(InvalidStatus, match="503"):
            WireClient(server.url)
        assert first.call({"type": "ping", "payload": {}})["ok"]  # the admitted one is unaffected
        first.close()
        deadline = time.monotonic() + 10
        while server.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        second = WireClient(server.url)
        assert second.call({"type": "ping", "payload": {}})["ok"]
        second.close()
        assert server.stats.rejected_full == 1
