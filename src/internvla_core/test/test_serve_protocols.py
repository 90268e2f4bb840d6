"""internvla-serve end to end with the tiny model: InternVLA-M1's wire format, starVLA's, and ours."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import WireClient, image, m1_infer, serving, starvla_infer

from internvla_core.normalization import action_stats, unnormalize_actions

INSTRUCTION = "put the carrot on the plate"


@pytest.fixture(scope="module")
def policy():
    from internvla_core.model import load_policy, tiny_checkpoint

    loaded = load_policy(tiny_checkpoint())
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def server(policy):
    with serving(policy) as running:
        yield running


def local(policy, views, seed, steps=10, key="oxe_bridge"):
    return policy.predict_action(views, INSTRUCTION, unnorm_key=key, num_ddim_steps=steps, seed=seed)


def test_m1_client_reads_metadata_then_gets_the_chunk_local_inference_gives(policy, server):
    client = WireClient(server.url)
    assert client.metadata["action_chunk_size"] == policy.action_horizon
    views = [image(1)]
    reply = client.call(m1_infer(views, INSTRUCTION, seed=5))  # flat map, as M1's clients send
    assert reply["status"] == "ok" and reply["ok"] is True and reply["type"] == "inference_result"
    out = reply["data"]["normalized_actions"]
    assert out.dtype == np.float32 and out.shape == (1, policy.action_horizon, policy.action_dim)
    np.testing.assert_array_equal(out[0], local(policy, views, seed=5).normalized)
    client.close()


def test_m1_typed_envelope_ping_init_and_both_reset_forms(server):
    client = WireClient(server.url)
    pong = client.call({"type": "ping", "request_id": "p1", "payload": {}})
    assert pong == {"status": "ok", "ok": True, "type": "pong", "request_id": "p1"}
    init = client.call({"device": "cuda"})  # M1's init_device sends a flat {"device": ...}
    assert init["type"] == "init_result" and init["ok"] and init["data"]["device"] == "cpu"
    assert client.call({"instruction": "pick", "reset": True})["type"] == "reset_result"
    assert client.call({"type": "reset", "payload": {"instruction": "pick"}})["ok"]
    typed = client.call(
        {"type": "infer", "request_id": "r7", "payload": m1_infer([image(2)], INSTRUCTION, num_ddim_steps=2)}
    )
    assert typed["request_id"] == "r7" and typed["data"]["normalized_actions"].shape[0] == 1
    client.close()


def test_m1_batch_of_two_samples_in_one_request(policy, server):
    client = WireClient(server.url)
    request = m1_infer([image(3)], INSTRUCTION, num_ddim_steps=2, seed=1)
    request["batch_images"].append([image(4)])
    request["instructions"].append("open the drawer")
    out = client.call(request)["data"]["normalized_actions"]
    assert out.shape == (2, policy.action_horizon, policy.action_dim)
    client.close()


def test_starvla_client_gets_server_unnormalised_actions_for_its_key(policy, server):
    client = WireClient(server.url)
    meta = client.metadata
    assert meta["action_chunk_size"] == policy.action_horizon
    assert meta["available_unnorm_keys"] == policy.unnorm_keys and meta["default_unnorm_key"] is None
    views = [image(6)]
    reply = client.call(starvla_infer(views, INSTRUCTION, unnorm_key="oxe_rt1", seed=3))
    assert reply["ok"] and reply["data"]["unnorm_key"] == "oxe_rt1"
    expected = local(policy, views, seed=3, key="oxe_rt1")
    np.testing.assert_allclose(reply["data"]["actions"][0], expected.actions, atol=1e-6)
    stats = action_stats(policy.norm_stats, "oxe_rt1")
    np.testing.assert_allclose(
        reply["data"]["actions"][0], unnormalize_actions(reply["data"]["normalized_actions"][0], stats)
    )
    client.close()


def test_starvla_unknown_unnorm_key_is_an_error_reply_and_the_connection_stays(server):
    client = WireClient(server.url)
    reply = client.call(starvla_infer([image(7)], INSTRUCTION, unnorm_key="no_such_robot"))
    assert reply["status"] == "error" and reply["ok"] is False
    assert "no_such_robot" in reply["error"]["message"] and "oxe_bridge" in reply["message"]
    missing = client.call(starvla_infer([image(7)], INSTRUCTION, unnorm_key=None))  # 3 keys: must choose
    assert missing["status"] == "error" and "unnorm_key" in missing["message"]
    assert client.call(starvla_infer([image(7)], INSTRUCTION, num_ddim_steps=2))["ok"]
    client.close()


def test_our_remote_backend_against_our_server_equals_the_local_backend(policy, server):
    from internvla_core.backends import LocalBackend, RemoteBackend
    from internvla_core.model import tiny_checkpoint
    from internvla_core.remote import RemotePolicyClient

    views = [image(8)]
    kwargs = dict(unnorm_key="oxe_bridge", cfg_scale=1.5, num_ddim_steps=4)
    local_pred = LocalBackend(policy).predict(views, INSTRUCTION, seed=11, **kwargs)
    backend = RemoteBackend(
        RemotePolicyClient(server.url), tiny_checkpoint().parents[1] / "dataset_statistics.json"
    )
    remote_pred = backend.predict(views, INSTRUCTION, seed=11, **kwargs)
    backend.close()
    np.testing.assert_array_equal(remote_pred.normalized, local_pred.normalized)
    np.testing.assert_allclose(remote_pred.actions, local_pred.actions, atol=1e-9)


def test_api_key_is_required_at_the_handshake_when_configured(policy):
    from websockets.exceptions import InvalidStatus

    with serving(policy, api_key="s3cret") as secured:
        with pytest.raises(InvalidStatus, match="401"):
            WireClient(secured.url)
        with pytest.raises(InvalidStatus, match="401"):
            WireClient(secured.url, api_key="wrong")
        client = WireClient(secured.url, api_key="s3cret")
        assert client.metadata["auth"] is True
        assert client.call({"type": "ping", "payload": {}})["ok"]
        client.close()
        assert secured.stats.rejected_auth == 2


def test_the_server_binds_to_localhost_unless_told_otherwise(server):
    assert server.bound_host == "127.0.0.1"


def test_starvla_typed_envelope_with_state_and_do_sample_is_served(policy, server):
    client = WireClient(server.url)
    request = starvla_infer([image(9)], INSTRUCTION, num_ddim_steps=2, seed=4)
    request["examples"][0]["state"] = np.zeros(8, np.float32)  # M1 has no state input: accepted, unused
    reply = client.call({"type": "infer", "request_id": 12, "payload": request})
    assert reply["ok"] and reply["request_id"] == 12
    assert reply["data"]["actions"].shape == (1, policy.action_horizon, policy.action_dim)
    without_state = client.call(starvla_infer([image(9)], INSTRUCTION, num_ddim_steps=2, seed=4))
    np.testing.assert_array_equal(reply["data"]["actions"], without_state["data"]["actions"])
    client.close()
