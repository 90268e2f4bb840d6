"""Run-dir config parsing and base-VLM resolution (no model is built here)."""

from __future__ import annotations

import pytest
import yaml

from internvla_core.model.config import ConfigError, M1Config, load_run_config, resolve_base_vlm

UPSTREAM_LIKE = {
    "framework": {
        "framework_py": "InternVLA-M1",
        "qwenvl": {"base_vlm": "Qwen/Qwen2.5-VL-3B-Instruct", "vl_hidden_dim": 2048},
        "dino": {"dino_backbone": "dinov2_vitl14"},
        "layer_qformer": {
            "qformer_start_layer": 36,
            "qformer_end_layer": 37,
            "num_query_tokens": 64,
            "input_dim": 2048,
            "ouptput_dim": 768,
        },
        "action_model": {
            "action_model_type": "DiT-B",
            "action_dim": 7,
            "future_action_window_size": 7,
            "past_action_window_size": 0,
        },
    },
    "datasets": {"vla_data": {"image_size": [224, 224], "CoT_prompt": "Your task is {instruction}."}},
}


def _write(tmp_path, cfg):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return load_run_config(tmp_path)


def test_upstream_keys_are_read(tmp_path):
    cfg = _write(tmp_path, UPSTREAM_LIKE)
    assert cfg.base_vlm == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.dino_backbone == "dinov2_vitl14" and cfg.dino_dims is None
    assert (cfg.qformer_start_layer, cfg.qformer_end_layer) == (36, 37)
    assert cfg.qformer_output_dim == 768  # upstream's misspelled key "ouptput_dim"
    assert cfg.action_horizon == 8 and cfg.action_dim == 7
    assert cfg.image_size == (224, 224) and cfg.cot_prompt == "Your task is {instruction}."


def test_missing_cot_prompt_means_the_bare_instruction_and_defaults_apply(tmp_path):
    cfg_dict = {"framework": {"qwenvl": {"base_vlm": "x"}}, "datasets": {"vla_data": {}}}
    cfg = _write(tmp_path, cfg_dict)
    assert cfg.cot_prompt is None and cfg.image_size is None
    assert cfg.action_model_type == "DiT-B" and cfg.dino_backbone == "dinov2_vits14"
    assert cfg.qformer_output_dim is None  # falls back to the DiT width when the model is built


def test_omegaconf_interpolations_are_resolved(tmp_path):
    cfg_dict = {
        "vars": {"vlm": "/models/qwen", "horizon": 15},
        "framework": {
            "qwenvl": {"base_vlm": "${vars.vlm}"},
            "action_model": {"future_action_window_size": "${vars.horizon}"},
        },
    }
    cfg = _write(tmp_path, cfg_dict)
    assert cfg.base_vlm == "/models/qwen" and cfg.action_horizon == 16


def test_bad_configs_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        load_run_config(tmp_path)
    with pytest.raises(ConfigError, match="no 'framework' section"):
        _write(tmp_path, {"trainer": {}})
    bad = {"framework": {"action_model": {"past_action_window_size": 2}}}
    with pytest.raises(ConfigError, match="past_action_window_size must be 0"):
        M1Config.from_dict(bad, tmp_path)
    with pytest.raises(ConfigError, match="not InternVLA-M1"):
        M1Config.from_dict({"framework": {"framework_py": "QwenGR00T"}}, tmp_path)


def test_base_vlm_relative_to_the_run_dir(tmp_path):
    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "config.json").write_text("{}")
    assert resolve_base_vlm("vlm", tmp_path) == (tmp_path / "vlm").resolve()
    assert resolve_base_vlm(str(tmp_path / "vlm"), tmp_path / "elsewhere") == tmp_path / "vlm"


def test_missing_training_cluster_path_falls_back_to_a_copy_next_to_the_run(tmp_path):
    (tmp_path / "my-vlm").mkdir()
    (tmp_path / "my-vlm" / "config.json").write_text("{}")
    assert resolve_base_vlm("/mnt/cluster/models/my-vlm", tmp_path) == (tmp_path / "my-vlm").resolve()
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        resolve_base_vlm("/mnt/cluster/models/other", tmp_path)


def test_uncached_hub_id_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        resolve_base_vlm("SomeOrg/not-cached-model", tmp_path)
    with pytest.raises(ConfigError, match="neither a directory"):
        resolve_base_vlm("no_such_dir", tmp_path)
