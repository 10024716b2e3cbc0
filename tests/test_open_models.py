"""Open models of the Llama layout (issue 32): Qwen3, Llama (with Llama 3 rope scaling), SmolLM2, Qwen2, Mistral.

No Hub access here: transformers builds tiny random models of each family with its own classes,
`save_pretrained` writes the files the Hub serves (sharded too), and `load_model` reads them from a
folder, or by repo id from a cache laid out like the Hub's (offline mode), or over a mocked HTTP
transport. Our logits must equal transformers' with and without the KV cache, and greedy tokens too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import types
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.utils import _http, httpx
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import gpt.memory
from gpt import open_models
from gpt.checkpoint import CheckpointError
from gpt.generate import SamplingConfig, generate
from gpt.memory import InsufficientResourcesError
from gpt.model import GPTModel
from gpt.open_models import (
    CATALOGUE,
    SHARD_INDEX,
    GatedModelError,
    IncompleteModelError,
    ModelNotFoundError,
    OpenModel,
    TooLargeError,
    UnsupportedModelError,
    WeightsUnavailableError,
    config_from_hub,
    is_hub_folder,
)
from gpt.pretrained import load_model
from gpt.quantize import to_precision
from tests.helpers import COMMIT
from tests.hub_models import FAMILIES, put_folder_in_hub_cache, random_hf, save_hf

REPO = "test-org/tiny-qwen3"
IDS = [[5, 17, 42, 99, 3, 250, 7, 7, 64, 311, 128, 2, 90, 18, 33, 201, 76, 12, 5, 140]]


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    """A byte-level BPE of 300 tokens with ChatML's special tokens, trained here (never downloaded)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["Every effort moves you forward, and the quick brown fox jumps over it."] * 50, trainer)
    return tok.to_str()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer_json) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Every family's random model and its saved folder."""
    root = tmp_path_factory.mktemp("hf")
    return {family: (hf := random_hf(family), save_hf(hf, root / family, tokenizer_json)) for family in FAMILIES}


def cached_logits(model: GPTModel, ids: list[int], split: int) -> torch.Tensor:
    """Logits of every position through the KV cache: a prefill, then one token at a time."""
    cache = model.new_cache(1)
    with torch.no_grad():
        rows = [model(torch.tensor([ids[:split]]), cache)[0]]
        rows += [model(torch.tensor([[t]]), cache)[0] for t in ids[split:]]
    return torch.cat(rows)


def max_differences(model: GPTModel, hf: torch.nn.Module) -> tuple[float, float]:
    """max |our logits - transformers'| without and with the KV cache."""
    with torch.no_grad():
        expected = hf(torch.tensor(IDS)).logits[0]
        full = (model(torch.tensor(IDS))[0] - expected).abs().max().item()
    return full, (cached_logits(model, IDS[0], split=5) - expected).abs().max().item()


def greedy_tokens_match(model: GPTModel, hf: torch.nn.Module, n_new: int = 10) -> bool:
    expected = hf.generate(torch.tensor(IDS), max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                           pad_token_id=0)[0, len(IDS[0]):].tolist()
    greedy = SamplingConfig(max_new_tokens=n_new, temperature=0, stop_at_eot=False)
    return all(generate(model, IDS[0], greedy, use_cache=c) == expected for c in (True, False))


# -- parity with transformers --------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_loads_with_logits_and_greedy_parity(family: str, saved) -> None:
    hf, folder = saved[family]
    ckpt = load_model(folder)
    full, cached = max_differences(ckpt.model, hf)
    print(f"\n{family}: max |logits - transformers'| {full:.2e} without cache, {cached:.2e} with it")  # pytest -s
    assert full <= 1e-4 and cached <= 1e-4, (full, cached)
    assert greedy_tokens_match(ckpt.model, hf)
    hub = json.loads((folder / "config.json").read_text())
    assert ckpt.meta | {"weights": None} == {
        "hub": str(folder), "family": open_models.FAMILIES[hub["model_type"]], "model_type": hub["model_type"],
        "architectures": hub["architectures"], "max_context": 128, "context_length": 128, "chat_template": True,
        "weights": None}
    assert (ckpt.model.out_head.weight is ckpt.model.tok_emb.weight) == hub["tie_word_embeddings"]
    assert ckpt.model.n_params() == ckpt.model.cfg.n_params() == sum(p.numel() for p in hf.parameters())


def test_the_switches_each_family_turns_on(saved) -> None:
    cfgs = {family: load_model(folder).model.cfg for family, (_, folder) in saved.items()}
    assert cfgs["qwen3"].qk_norm and cfgs["qwen3"].head_width == 32 and cfgs["qwen3"].q_dim == 128
    assert cfgs["qwen3"].norm_eps == 1e-6 and cfgs["llama"].norm_eps == 1e-5
    assert (cfgs["llama"].kv_heads, cfgs["llama"].rope_base, cfgs["llama"].rope_scaling) == (2, 500000.0, None)
    assert (cfgs["llama3-scaled"].rope_scaling, cfgs["llama3-scaled"].rope_original_context) == (8.0, 16)
    assert cfgs["smollm2"].kv_heads == 1 and cfgs["smollm2"].head_width is None
    assert (cfgs["qwen2"].qkv_bias, cfgs["qwen2"].bias) == (True, False)
    assert not any(cfg.qkv_bias or cfg.bias for family, cfg in cfgs.items() if family != "qwen2")


def test_a_sharded_checkpoint_loads_and_a_missing_shard_is_named(tmp_path, tokenizer_json) -> None:
    hf = random_hf("qwen3", seed=1)
    folder = save_hf(hf, tmp_path / "sharded", tokenizer_json, max_shard_size="40KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 2 and (folder / SHARD_INDEX).is_file()
    full, cached = max_differences(load_model(folder).model, hf)
    assert full <= 1e-4 and cached <= 1e-4
    shards[1].unlink()
    with pytest.raises(IncompleteModelError, match=rf"shard {shards[1].name} of {len(shards)} is missing") as err:
        load_model(folder)
    assert "\n" not in str(err.value)


def test_int8_and_bfloat16_follow_float32(saved) -> None:
    hf, folder = saved["qwen3"]
    with torch.no_grad():
        expected = hf(torch.tensor(IDS)).logits[0]
    for precision, tolerance in (("bfloat16", 0.05), ("int8", 0.1)):
        model = to_precision(load_model(folder).model, precision)
        with torch.no_grad():
            got = model(torch.tensor(IDS))[0].float()
        assert (got - expected).abs().max() <= tolerance * expected.abs().max(), precision


def test_the_llama3_frequencies_are_transformers(saved) -> None:
    """The stretched table itself, beside transformers' own computation of it."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf, folder = saved["llama3-scaled"]
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](hf.config, "cpu")
    cos = load_model(folder).model.rope_cos  # (T, hd/2)
    expected = torch.outer(torch.arange(cos.shape[0], dtype=torch.float64), inv_freq.double()).cos()
    assert (cos.double() - expected).abs().max() < 1e-5
    plain = torch.outer(torch.arange(cos.shape[0], dtype=torch.float64), 1 / 500000.0 ** (
        torch.arange(0, 16, 2, dtype=torch.float64) / 16)).cos()
    assert (cos.double() - plain).abs().max() > 0.1  # the slow pairs were stretched


# -- the Hub: cache, offline, errors -------------------------------------------------------------------

def test_loads_by_repo_id_from_the_hub_cache_offline(offline_hub, saved) -> None:
    hf, folder = saved["qwen3"]
    put_folder_in_hub_cache(offline_hub, REPO, folder)
    ckpt = load_model(REPO)
    assert ckpt.meta["hub"] == REPO and ckpt.meta["revision"] == COMMIT and ckpt.tokenizer.name == REPO
    assert max(max_differences(ckpt.model, hf)) <= 1e-4
    assert ckpt.tokenizer.render_chat([{"role": "user", "content": "hi"}]).startswith("<|im_start|>user\nhi")


def test_a_catalogue_name_loads_its_repo(offline_hub, saved, monkeypatch) -> None:
    hf, folder = saved["smollm2"]
    hub = json.loads((folder / "config.json").read_text())
    monkeypatch.setitem(CATALOGUE, "tiny-smollm2", OpenModel("tiny-smollm2", "test-org/tiny-smollm2", "SmolLM2", hub,
                                                             chat=False))
    put_folder_in_hub_cache(offline_hub, "test-org/tiny-smollm2", folder)
    ckpt = load_model("tiny-smollm2", context_length=32)
    assert (ckpt.meta["catalogue"], ckpt.meta["family"], ckpt.meta["hub"]) == ("tiny-smollm2", "SmolLM2",
                                                                               "test-org/tiny-smollm2")
    assert ckpt.model.cfg.context_length == 32 and ckpt.meta["max_context"] == 128
    assert max(max_differences(ckpt.model, hf)) <= 1e-4


def test_the_catalogue_knows_each_model_before_any_download() -> None:
    sizes = {name: model.config().n_params() for name, model in CATALOGUE.items()}
    assert sizes["smollm2-135m"] == 134_515_008 and sizes["smollm2-360m"] == 361_821_120
    assert sizes["qwen3-0.6b"] == 596_049_920 and sizes["qwen3-1.7b"] == 1_720_574_976
    qwen = CATALOGUE["qwen3-0.6b"].config()
    assert (qwen.head_dim, qwen.q_dim, qwen.emb_dim, qwen.context_length) == (128, 2048, 1024, 2048)
    assert CATALOGUE["qwen3-0.6b"].describe().startswith("qwen3-0.6b (Qwen/Qwen3-0.6B): 596M parameters, needs")


def test_an_uncached_repo_offline_is_one_immediate_line(offline_hub, monkeypatch) -> None:
    monkeypatch.setattr(gpt.memory, "available_memory", lambda: 10**12)
    for name, repo in (("test-org/nothing-here", "test-org/nothing-here"), ("qwen3-0.6b", "Qwen/Qwen3-0.6B")):
        start = time.perf_counter()
        with pytest.raises(WeightsUnavailableError) as err:
            load_model(name)
        message = str(err.value)
        assert time.perf_counter() - start < 5 and "\n" not in message
        assert message.startswith(f"{repo} is not in the Hugging Face cache") and "HF_HUB_OFFLINE is set" in message
        assert f"`hf download {repo}`" in message
    assert not any(offline_hub.iterdir())  # nothing written


def test_an_unreachable_hub_is_one_immediate_line_and_a_cached_model_needs_no_hub(offline_hub, saved,
                                                                                 monkeypatch) -> None:
    """No HF_HUB_OFFLINE, no network: one quick question to the Hub instead of huggingface_hub's retries."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    asked = []

    def no_network(*args, **kwargs):
        asked.append(args)
        raise httpx.ConnectError("Name or service not known")

    monkeypatch.setattr(open_models, "get_session", lambda: types.SimpleNamespace(head=no_network))
    monkeypatch.setattr(open_models, "hf_hub_download", lambda *a, **k: pytest.fail("asked the Hub for a file"))
    with pytest.raises(WeightsUnavailableError, match=rf"^{REPO} is not in the Hugging Face cache \(.*\) and the Hub "
                                                      r"cannot be reached; on a machine with internet run"):
        load_model(REPO)
    assert len(asked) == 1
    hf, folder = saved["qwen3"]
    put_folder_in_hub_cache(offline_hub, REPO, folder)
    assert max(max_differences(load_model(REPO).model, hf)) <= 1e-4 and len(asked) == 1


def test_a_model_above_the_size_asked_is_refused_before_its_weights(offline_hub, saved, monkeypatch) -> None:
    """A shared server bounds what one visitor loads: a catalogue model from what it knows, a repo from its config."""
    with pytest.raises(TooLargeError, match=r"^qwen3-1.7b has 1.7B parameters; here models of up to 1.0B load"):
        load_model("qwen3-1.7b", max_params=10**9)
    assert not any(offline_hub.iterdir())
    hf, folder = saved["llama"]
    put_folder_in_hub_cache(offline_hub, "test-org/tiny-llama", folder)
    monkeypatch.setattr(open_models, "load_hub_weights", lambda *a: pytest.fail("read the weights"))
    with pytest.raises(TooLargeError, match=r"^test-org/tiny-llama has [\d,]+ parameters; here models of up to 1,000 "):
        load_model("test-org/tiny-llama", max_params=1000)
    with pytest.raises(TooLargeError):
        load_model(folder, max_params=1000)


def test_a_model_too_large_for_memory_is_refused_before_anything_is_read(offline_hub, saved, monkeypatch) -> None:
    monkeypatch.setattr(gpt.memory, "available_memory", lambda: 2 * 10**9)
    with pytest.raises(InsufficientResourcesError, match=r"^qwen3-1.7b in float32 needs about .* GB of memory; "
                                                         r"this machine has 2.00 GB free$"):
        load_model("qwen3-1.7b")
    assert not any(offline_hub.iterdir())
    monkeypatch.setattr(gpt.memory, "available_memory", lambda: 10**5)
    with pytest.raises(InsufficientResourcesError, match="needs about"):
        load_model(saved["llama"][1])


def test_a_download_that_does_not_fit_on_disk_is_refused_before_it_starts(offline_hub, saved, monkeypatch) -> None:
    """Only config.json is cached: its size is known, the weights would have to be downloaded."""
    folder = saved["llama"][1]
    put_folder_in_hub_cache(offline_hub, "test-org/tiny-llama", folder)
    for shard in (offline_hub / "models--test-org--tiny-llama" / "snapshots" / COMMIT).glob("*.safetensors"):
        shard.unlink()
    monkeypatch.setattr(gpt.memory.shutil, "disk_usage", lambda _: types.SimpleNamespace(free=1000))
    monkeypatch.setattr(open_models, "hub_reachable", lambda: True)  # online: the weights would be fetched
    with pytest.raises(InsufficientResourcesError, match=r"^downloading test-org/tiny-llama needs 0.00 GB of disk; "
                                                         r"0.00 GB are free$"):
        load_model("test-org/tiny-llama")


@pytest.fixture
def hub_transport(monkeypatch, tmp_path):
    """Serve huggingface_hub's HTTP requests with a handler (online, an empty cache); undone after."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))

    def serve(handler) -> None:
        huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(handler)))

    yield serve
    huggingface_hub.set_client_factory(_http.default_client_factory)


def fake_hub(folder: Path):
    """A handler answering like the Hub for REPO: the tree listing, then HEAD and GET for each file."""
    files = {f.name: f.read_bytes() for f in folder.iterdir()}
    tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for name, data in files.items()]

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in (f"/api/models/{REPO}/revision/main", f"/api/models/{REPO}"):
            return httpx.Response(200, json={"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]})
        if path.startswith(f"/api/models/{REPO}/tree/"):
            return httpx.Response(200, json=tree)
        name = path.removeprefix(f"/{REPO}/resolve/{COMMIT}/").removeprefix(f"/{REPO}/resolve/main/")
        if name not in files:
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(files[name]).hexdigest()}"',
                   "Content-Length": str(len(files[name]))}
        return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else files[name])

    return handle


def test_a_download_through_the_hub_client(hub_transport, saved, tmp_path) -> None:
    hf, folder = saved["qwen3"]
    hub_transport(fake_hub(folder))
    ckpt = load_model(REPO, progress=False)
    assert max(max_differences(ckpt.model, hf)) <= 1e-4
    assert Path(ckpt.meta["weights"][0]).is_relative_to(tmp_path / "hub-cache" / "models--test-org--tiny-qwen3")


@pytest.mark.parametrize("answer, error, message", [
    (lambda request: httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}), ModelNotFoundError,
     rf"^{REPO}: no such model on the Hugging Face Hub \(or a private one: log in with `hf auth login`\)$"),
    (lambda request: httpx.Response(403, headers={"X-Error-Code": "GatedRepo"}), GatedModelError,
     rf"^{REPO} is gated: accept its licence on its Hugging Face page, then log in here with `hf auth login`"),
    (lambda request: httpx.Response(200, text="<html>please log in</html>"), WeightsUnavailableError,  # a portal
     rf"^{REPO} is not in the Hugging Face cache \(.*\) and the Hub cannot be reached; on a machine with internet "
     rf"run `hf download {REPO}`"),
])
def test_hub_refusals_are_one_line(hub_transport, tmp_path, answer, error, message) -> None:
    hub_transport(answer)
    with pytest.raises(error, match=message) as err:
        load_model(REPO, progress=False)
    assert "\n" not in str(err.value) and not list((tmp_path / "hub-cache").rglob("*.safetensors"))


def test_a_repo_without_config_json_is_not_a_transformers_model(hub_transport, tmp_path) -> None:
    hub_transport(lambda request: httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"}))
    with pytest.raises(UnsupportedModelError, match=rf"^{REPO}: no config.json on the Hub: not a transformers model$"):
        load_model(REPO, progress=False)


def test_a_transfer_that_fails_is_one_line_and_leaves_no_weights(hub_transport, saved, tmp_path) -> None:
    serve = fake_hub(saved["qwen3"][1])

    def weights_fail(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith(".safetensors"):
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"})
        return serve(request)

    hub_transport(weights_fail)
    with pytest.raises(WeightsUnavailableError, match=rf"^{REPO}: could not download \(.*\); try again") as err:
        load_model(REPO, progress=False)
    assert "\n" not in str(err.value) and not list((tmp_path / "hub-cache").rglob("*.safetensors"))


# -- what cannot be represented, or is not safe to read ---------------------------------------------

def rewrite_config(folder: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of a saved folder whose config.json has `changes`."""
    copy = shutil.copytree(folder, tmp_path / f"changed-{len(list(tmp_path.iterdir()))}")
    hub = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**hub, **changes}))
    return copy


@pytest.mark.parametrize("changes, message", [
    ({"hidden_act": "gelu_pytorch_tanh", "rope_parameters": {"rope_type": "yarn", "factor": 4.0}},
     r"unsupported: hidden_act 'gelu_pytorch_tanh' \(only silu: the SwiGLU MLP\); rope_scaling of type 'yarn' "
     r"\(only llama3\)$"),
    ({"model_type": "gemma3"}, r"unsupported: model_type 'gemma3' \(supported: llama, mistral, qwen2, qwen3\)$"),
    ({"attention_bias": True}, r"unsupported: attention_bias True with mlp_bias False"),
    ({"quantization_config": {"quant_method": "gptq"}}, r"unsupported: quantization_config"),
    ({"vocab_size": 10**7}, r"unsupported: GPTConfig.vocab_size must be between 1 and 262144, got 10000000$"),
])
def test_an_unsupported_setting_is_named_in_one_line(saved, tmp_path, changes, message) -> None:
    with pytest.raises(UnsupportedModelError, match=message) as err:
        load_model(rewrite_config(saved["llama"][1], tmp_path, **changes))
    assert "\n" not in str(err.value)


def test_a_sliding_window_shorter_than_the_context_is_refused_unless_the_context_fits(saved, tmp_path) -> None:
    folder = rewrite_config(saved["mistral"][1], tmp_path, sliding_window=32)
    with pytest.raises(UnsupportedModelError, match=r"sliding_window 32 .*ask for at most 32 tokens"):
        load_model(folder)
    assert load_model(folder, context_length=32).model.cfg.context_length == 32
    with pytest.raises(UnsupportedModelError, match=r"context of 4096 tokens is longer than the model's "
                                                    r"max_position_embeddings \(128\)"):
        load_model(folder, context_length=4096)


def test_pickled_weights_are_refused_without_being_opened(saved, tmp_path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(saved["llama"][1] / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle that must never be read")
    with pytest.raises(UnsupportedModelError, match=r"its weights are pickles \(pytorch_model.bin\), which are never "
                                                    r"loaded here"):
        load_model(folder)


def test_a_tensor_missing_or_misshapen_is_named_by_the_hubs_name(saved, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(saved["qwen3"][1], tmp_path / "damaged")
    state = load_file(str(folder / "model.safetensors"))
    state.pop("model.layers.1.self_attn.k_proj.weight")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor 'model.layers.1.self_attn.k_proj.weight' missing "
                                              r"\(expected shape \(64, 64\)\)"):
        load_model(folder)
    state["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(3, 64)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor 'model.layers.1.self_attn.k_proj.weight' is torch.float32 "
                                              r"\(3, 64\), expected float \(64, 64\)"):
        load_model(folder)


def test_our_checkpoints_and_transformers_folders_are_told_apart(saved, tmp_path) -> None:
    from gpt.checkpoint import save_checkpoint
    from gpt.config import GPTConfig
    from gpt.tokenizer import load_tokenizer

    cfg = GPTConfig.preset("tiny", vocab_size=50257)
    ours = save_checkpoint(GPTModel(cfg), tmp_path / "ours", load_tokenizer("gpt2"))
    assert not is_hub_folder(ours) and is_hub_folder(saved["llama"][1]) and not is_hub_folder(tmp_path / "nothing")
    assert load_model(ours).model.cfg == cfg
    with pytest.raises(ValueError, match="is none of gpt2-small"):
        load_model("no such model")


def test_config_from_hub_caps_the_context_and_reads_either_rope_spelling() -> None:
    hub = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 96, "vocab_size": 320, "max_position_embeddings": 131072, "rope_theta": 500000.0,
           "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192}}
    old = config_from_hub(hub)
    assert (old.context_length, old.rope_base, old.rope_scaling, old.rope_original_context) == (2048, 500000.0,
                                                                                               32.0, 8192)
    new = {**{k: v for k, v in hub.items() if k not in ("rope_theta", "rope_scaling")},
           "rope_parameters": {**hub["rope_scaling"], "rope_theta": 500000.0}}
    assert config_from_hub(new) == old and config_from_hub(new, 8192).context_length == 8192
    assert old.architecture() == ("RMSNorm · norm eps 1e-06 · rotary positions (base 500,000) · Llama 3 RoPE "
                                  "scaling x32 · SwiGLU · MLP 96 wide · no biases · untied output head")
