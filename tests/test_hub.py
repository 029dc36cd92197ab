import shutil

import pytest

from course_utils import load_model, load_tokenizer
from course_utils.hub import ModelUnavailableError, draft_model_name, model_name, resolve


def test_names_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    monkeypatch.delenv("COURSE_DRAFT_MODEL", raising=False)
    assert model_name() == "shakespeare-gpt" and draft_model_name() == "shakespeare-gpt-draft"
    monkeypatch.setenv("COURSE_MODEL", "gpt2")
    monkeypatch.setenv("COURSE_DRAFT_MODEL", "distilgpt2")
    assert model_name() == "gpt2" and draft_model_name() == "distilgpt2"
    assert model_name("explicit") == "explicit"


def test_unavailable_hub_id_is_one_clear_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ModelUnavailableError) as raised:
        load_model("gpt2")
    message = str(raised.value)
    assert message.count(". ") == 0 and message.endswith(".")
    assert "COURSE_MODEL" in message and "'gpt2'" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_local_folder_via_course_model(monkeypatch, tmp_path, random_gpt2_dirs):
    folder = tmp_path / "my-model"
    shutil.copytree(random_gpt2_dirs[0], folder)
    shutil.copy(resolve("shakespeare-gpt") + "/tokenizer.json", folder)
    shutil.copy(resolve("shakespeare-gpt") + "/tokenizer_config.json", folder)
    monkeypatch.setenv("COURSE_MODEL", str(folder))
    model, tokenizer = load_model()
    assert model.config.n_positions == 48 and not model.training
    assert load_tokenizer().encode("To be") == tokenizer.encode("To be")


def test_a_flipped_byte_in_a_bundled_model_is_caught_on_load(monkeypatch, tmp_path):
    """A bit-flipped model.safetensors once loaded and generated <|endoftext|>: now load_model
    names the file and how to restore it. Checked once per process, again when the file changes."""
    from course_utils import hub

    assets = tmp_path / "assets"
    shutil.copytree(hub.ASSETS, assets)
    monkeypatch.setattr(hub, "ASSETS", assets)
    monkeypatch.setattr(hub, "CHECKSUMS", assets / "SHA256SUMS")
    monkeypatch.setattr(hub.verify_bundled, "__defaults__", (assets, assets / "SHA256SUMS"))
    model, _ = load_model("shakespeare-gpt", device="cpu")  # intact: loads
    weights = assets / "shakespeare-gpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailableError, match=r"model\.safetensors does not match its SHA-256 in "
                                                    r"SHA256SUMS.*git checkout -- course_utils/assets/"
                                                    r"shakespeare-gpt/model\.safetensors"):
        load_model("shakespeare-gpt", device="cpu")
    resolve("shakespeare-gpt-draft")  # the other model is untouched


def test_a_missing_bundled_file_is_named(tmp_path):
    """The doctor and load_model share one check (bundled.damaged_files): a deleted file is named as missing."""
    from course_utils import bundled

    assets = tmp_path / "assets"
    shutil.copytree(bundled.ASSETS, assets)
    (assets / "shakespeare-gpt-draft" / "config.json").unlink()
    listed, missing, changed = bundled.damaged_files("shakespeare-gpt-draft", assets, assets / "SHA256SUMS")
    assert missing == ["shakespeare-gpt-draft/config.json"] and changed == [] and len(listed) > 1
    with pytest.raises(ModelUnavailableError, match=r"config\.json is missing.*git checkout"):
        bundled.verify_bundled("shakespeare-gpt-draft", assets, assets / "SHA256SUMS")
    bundled.verify_bundled("shakespeare-gpt", assets, assets / "SHA256SUMS")  # the other model is intact
