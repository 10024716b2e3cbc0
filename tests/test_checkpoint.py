from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from gpt import memory
from gpt.bpe import BytePairEncoder
from gpt.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    UnverifiedWarning,
    load_checkpoint,
    load_checkpoint_tokenizer,
    load_state_dict,
    read_config,
    save_checkpoint,
    verify_checksum,
)
from gpt.classify.classifier import CLASSIFIER_WEIGHTS, SHIPPED_DIR, read_classifier_config
from gpt.cli import main
from gpt.config import GPTConfig
from gpt.files import SHIPPED_MODELS, sha256_of
from gpt.kernels import DecodeAttention, Linear, OutputHead, accelerate
from gpt.memory import InsufficientResourcesError
from gpt.model import GPTModel
from gpt.tokenizer import load_tokenizer


@pytest.fixture
def saved(tmp_path, tiny_model: GPTModel):
    bpe = BytePairEncoder.train("the cat sat on the mat; the dog sat on the log. " * 50, vocab_size=300)
    save_checkpoint(tiny_model, tmp_path, bpe.to_tokenizer(), meta={"note": "test"})
    return tmp_path, bpe


def test_round_trip(saved, tiny_model: GPTModel) -> None:
    folder, bpe = saved
    ckpt = load_checkpoint(folder)
    assert ckpt.meta == {"note": "test"} and ckpt.tokenizer.ranks == bpe.ranks
    text = "the dog sat on the cat"
    assert ckpt.tokenizer.encode(text) == bpe.encode(text)
    idx = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(idx), tiny_model(idx))
    assert ckpt.model.out_head.weight is ckpt.model.tok_emb.weight  # tying survives the file
    assert not list(folder.glob("*.tmp"))


def test_a_loaded_checkpoint_has_the_fast_modules(saved) -> None:
    """Loading swaps in gpt/kernels.py's modules (`accelerate`): the saved teaching model, computing faster."""
    model = load_checkpoint(saved[0], dtype=torch.bfloat16).model
    assert type(model.out_head) is OutputHead and model.out_head.weight is model.tok_emb.weight
    for block in model.trf_blocks:
        assert type(block.att) is DecodeAttention
        assert all(type(layer) is Linear for layer in (block.att.qkv, block.att.out_proj, block.ff.fc, block.ff.proj))


def test_bfloat16_file_is_half_the_size(tmp_path) -> None:
    tok = load_tokenizer("gpt2")
    model = GPTModel(GPTConfig.preset("tiny", vocab_size=tok.n_vocab))
    save_checkpoint(model, tmp_path / "f32", tok)
    save_checkpoint(model, tmp_path / "bf16", tok, dtype=torch.bfloat16)
    small, big = (tmp_path / "bf16" / WEIGHTS_FILE).stat().st_size, (tmp_path / "f32" / WEIGHTS_FILE).stat().st_size
    assert small < 0.55 * big
    assert load_checkpoint(tmp_path / "bf16").model.tok_emb.weight.dtype == torch.float32


def test_missing_folder_and_files(tmp_path, saved) -> None:
    saved, _ = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE}: weights file missing"):
        load_checkpoint(saved)


def test_truncated_weights(saved) -> None:
    saved, _ = saved
    path = saved / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(saved)


def test_corrupt_config(saved) -> None:
    saved, _ = saved
    (saved / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid model config"):
        load_checkpoint(saved)


def test_mismatched_shapes_name_the_tensor(saved) -> None:
    saved, _ = saved
    config = json.loads((saved / CONFIG_FILE).read_text())
    config["model"]["emb_dim"] = 32
    (saved / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'tok_emb.weight' has shape"):
        load_checkpoint(saved)


def test_missing_tensor_is_named(tmp_path) -> None:
    tok = load_tokenizer("gpt2")
    cfg = GPTConfig.preset("tiny", n_layers=3, vocab_size=50257)
    save_checkpoint(GPTModel(GPTConfig.preset("tiny", vocab_size=50257)), tmp_path, tok)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["model"] = cfg.to_dict()
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'trf_blocks.2.norm1.weight' missing"):
        load_checkpoint(tmp_path)


def test_tokenizer_larger_than_the_model_is_refused(tmp_path, tiny_model: GPTModel) -> None:
    save_checkpoint(tiny_model, tmp_path, load_tokenizer("gpt2"))
    with pytest.raises(CheckpointError, match="tokenizer has 50257 tokens, model only 512"):
        load_checkpoint(tmp_path)


def test_sinusoidal_model_round_trips_without_a_position_tensor(tmp_path) -> None:
    torch.manual_seed(0)
    model = accelerate(GPTModel(GPTConfig.preset("tiny", vocab_size=300, positions="sinusoidal"))).eval()
    bpe = BytePairEncoder.train("the cat sat on the mat; the dog sat on the log. " * 50, vocab_size=300)
    save_checkpoint(model, tmp_path, bpe.to_tokenizer())
    assert not any(name.startswith("pos") for name in load_state_dict(tmp_path / WEIGHTS_FILE))
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.model.cfg.positions == "sinusoidal"
    idx = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(idx), model(idx), rtol=0, atol=0)


def test_a_config_without_positions_loads_as_learned(saved, tiny_model: GPTModel) -> None:
    """Checkpoints written before sinusoidal positions existed have no `positions` key."""
    folder, _ = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config["model"]["positions"]
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    ckpt = load_checkpoint(folder)
    assert ckpt.model.cfg.positions == "learned"
    idx = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(idx), tiny_model(idx))


@pytest.mark.parametrize("ref", ["../tokenizer.tiktoken", "/etc/passwd", "other.tiktoken"])
def test_a_config_cannot_point_the_tokenizer_outside_the_folder(saved, ref: str) -> None:
    folder, _ = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["tokenizer"] = ref
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tokenizer must be 'gpt2' or 'tokenizer.tiktoken'"):
        load_checkpoint(folder)


def test_a_missing_or_corrupt_tokenizer_is_a_checkpoint_error(saved) -> None:
    folder, _ = saved
    (folder / TOKENIZER_FILE).write_text("not base64 and a rank\n")
    with pytest.raises(CheckpointError, match="tokenizer.tiktoken: the file is damaged"):
        load_checkpoint(folder)
    (folder / TOKENIZER_FILE).unlink()
    with pytest.raises(CheckpointError, match="not a readable tokenizer"):
        load_checkpoint(folder)


def test_flipped_bytes_in_the_weights_are_named_not_loaded(saved) -> None:
    folder, _ = saved
    weights = bytearray((folder / WEIGHTS_FILE).read_bytes())
    weights[-100] ^= 0xFF  # inside a tensor: the file still parses, the numbers are wrong
    (folder / WEIGHTS_FILE).write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match=f"{folder.name}/{WEIGHTS_FILE}: the file is damaged"):
        load_checkpoint(folder)


def test_a_tokenizer_cut_short_is_named_not_loaded(saved) -> None:
    folder, _ = saved
    lines = (folder / TOKENIZER_FILE).read_text().splitlines(keepends=True)
    (folder / TOKENIZER_FILE).write_text("".join(lines[: len(lines) // 2]))  # still a valid ranks file
    with pytest.raises(CheckpointError, match=f"{TOKENIZER_FILE}: the file is damaged"):
        load_checkpoint_tokenizer(folder)


def without_checksums(folder: Path) -> Path:
    """The folder as someone editing or forging it leaves it: the config's sha256 map removed."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config["sha256"]
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    return folder


def test_a_folder_without_checksums_loads_with_a_warning_and_is_refused_from_a_stranger(saved) -> None:
    folder = without_checksums(saved[0])
    with pytest.warns(UnverifiedWarning, match=f"{folder.name}/config.json records no sha256 checksums"):
        load_checkpoint(folder)
    with pytest.warns(UnverifiedWarning):
        load_checkpoint_tokenizer(folder)
    for load in (load_checkpoint, load_checkpoint_tokenizer):
        with pytest.raises(CheckpointError, match="records no sha256 checksums.*must carry them") as err:
            load(folder, require_checksums=True)
        assert "\n" not in str(err.value)


def test_a_folder_without_checksums_is_one_warning_line_on_the_command_line(saved, capsys) -> None:
    folder = without_checksums(saved[0])
    assert main(["generate", "--model", str(folder), "--prompt", "the cat", "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {folder.name}/config.json records no sha256 checksums") and err.count("\n") == 1


def test_a_config_from_another_model_is_refused(saved, tmp_path) -> None:
    """Its checksums are of the other model's files: the weights here do not match them."""
    folder, bpe = saved
    torch.manual_seed(1)
    other = save_checkpoint(GPTModel(GPTConfig.preset("tiny")), tmp_path / "other", bpe.to_tokenizer())
    (folder / CONFIG_FILE).write_bytes((other / CONFIG_FILE).read_bytes())  # same shapes, other weights
    with pytest.raises(CheckpointError, match=f"{folder.name}/{WEIGHTS_FILE}: the file is damaged"):
        load_checkpoint(folder, require_checksums=True)


@pytest.mark.parametrize("name", [WEIGHTS_FILE, TOKENIZER_FILE])
def test_every_file_the_loader_reads_needs_its_checksum(saved, name: str) -> None:
    folder, _ = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config["sha256"][name]  # the other entries stay: a map that skips the file it is meant to guard
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"{folder.name}/{name}: config.json records no sha256 for this file"):
        load_checkpoint(folder)


@pytest.mark.parametrize("checksums, message", [
    ("abc", "sha256 must map file names to sha256 digests, got str"),
    (None, "sha256 must map file names to sha256 digests, got NoneType"),
    (["model.safetensors"], "got list"),
    ({WEIGHTS_FILE: "abc"}, "sha256 of model.safetensors must be 64 lowercase hex digits, got 'abc'"),
    ({WEIGHTS_FILE: "A" * 64}, "must be 64 lowercase hex digits"),
    ({WEIGHTS_FILE: 7}, "must be 64 lowercase hex digits, got '7'"),
    ({"../model.safetensors": "0" * 64}, "sha256 names '../model.safetensors', which is none of this folder's files"),
])
def test_a_malformed_checksum_map_is_refused_not_skipped(saved, checksums, message) -> None:
    folder, _ = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["sha256"] = checksums
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    for load in (load_checkpoint, load_checkpoint_tokenizer):
        with pytest.raises(CheckpointError, match=rf"config.json: not a valid model config \(.*{re.escape(message)}"):
            load(folder)


@pytest.mark.parametrize("folder", sorted(p.parent for p in SHIPPED_MODELS.glob(f"*/{CONFIG_FILE}")),
                         ids=lambda p: p.name)
def test_every_shipped_model_carries_checksums_of_the_files_it_loads(folder: Path) -> None:
    config = read_config(folder)
    read = [WEIGHTS_FILE] + ([config["tokenizer"]] if config["tokenizer"] != "gpt2" else [])
    assert set(read) <= set(config["sha256"])
    for name in config["sha256"]:
        verify_checksum(folder, config["sha256"], name)
    load_checkpoint_tokenizer(folder, require_checksums=True)


def test_the_shipped_classifier_carries_the_checksum_of_its_tensors() -> None:
    config = read_classifier_config(SHIPPED_DIR)
    assert config["sha256"] == {CLASSIFIER_WEIGHTS: sha256_of(SHIPPED_DIR / CLASSIFIER_WEIGHTS)}


@pytest.mark.parametrize("change", [{"vocab_size": 1_000_000_000}, {"n_layers": 1_000_000}])
def test_a_config_out_of_its_bounds_is_refused_before_allocating(saved, change) -> None:
    folder, _ = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["model"].update(change)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"GPTConfig.{next(iter(change))} must be between"):
        load_checkpoint(folder)


def test_a_model_larger_than_the_free_memory_is_refused_before_allocating(saved, monkeypatch) -> None:
    folder, _ = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["model"].update(GPTConfig.preset("gpt2-xl").to_dict())  # within every bound: 1.6B parameters
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    monkeypatch.setattr(memory, "available_memory", lambda: 2**30)  # a machine with 1 GB free
    with pytest.raises(InsufficientResourcesError, match="needs about .* GB of memory; this machine has"):
        load_checkpoint(folder)


def test_the_pretokenizer_is_kept_in_the_config(tmp_path, tiny_model: GPTModel) -> None:
    bpe = BytePairEncoder.train("in 1999 and 2024 the cat sat on 12 mats. " * 50, vocab_size=300)
    save_checkpoint(tiny_model, tmp_path, bpe.to_tokenizer().with_pretokenizer("digits"))
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["pretokenizer"] == "digits"
    tokenizer = load_checkpoint(tmp_path).tokenizer
    assert tokenizer.pretokenizer == "digits" and load_checkpoint_tokenizer(tmp_path).pretokenizer == "digits"
    assert len(tokenizer.encode("1999")) == 4
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["pretokenizer"] = "anything"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="pretokenizer must be one of gpt2, digits"):
        load_checkpoint(tmp_path)


def test_a_gpt2_pattern_checkpoint_has_no_pretokenizer_key(saved) -> None:
    folder, _ = saved
    assert "pretokenizer" not in json.loads((folder / CONFIG_FILE).read_text())
    assert load_checkpoint(folder).tokenizer.pretokenizer == "gpt2"
