"""RenderSpec: its key hashes exactly the pixel-determining parameters."""

from __future__ import annotations

from sdfarm.spec import RenderSpec

BASE = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, width=64, height=64)


def test_the_key_changes_with_every_pixel_determining_parameter():
    changes = dict(model="other", prompt="a dog", seed=2, negative_prompt="x", sampler="DDIM",
                   steps=21, cfg=7.5, width=128, height=128, clip_skip=2, model_hash="0123456789")
    keys = {BASE.key} | {BASE.replace(**{k: v}).key for k, v in changes.items()}
    assert len(keys) == len(changes) + 1


def test_two_paths_to_the_same_weights_share_a_key_once_the_hash_is_known():
    a = BASE.replace(model="/models/a.safetensors", model_hash="0123456789")
    b = BASE.replace(model="/other/link.safetensors", model_hash="0123456789")
    assert a.key == b.key
    assert a.replace(model_hash=None).key != b.replace(model_hash=None).key


def test_cfg_written_as_int_or_float_is_the_same_key():
    assert BASE.replace(cfg=7).key == BASE.replace(cfg=7.0).key
