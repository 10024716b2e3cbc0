"""OpenAI GPT-2 weights: Hub download and cache, name/layout mapping, parity with transformers.

No Hub access here: transformers builds random GPT-2s, `save_pretrained` writes the same file the
Hub serves, and `load_pretrained` reads it through huggingface_hub exactly as it would a real
download: from a cache laid out like the Hub's (offline mode), or over a mocked HTTP transport.
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.utils import _http, httpx  # httpx: the HTTP client the hub uses (httpx2)
from safetensors.torch import load_file, save_file
from transformers import GPT2LMHeadModel

from gpt import pretrained
from gpt.checkpoint import WEIGHTS_FILE, CheckpointError, state_for_saving
from gpt.config import GPTConfig
from gpt.generate import SamplingConfig, generate
from gpt.kernels import DecodeAttention, OutputHead
from gpt.model import GPTModel
from gpt.pretrained import PretrainedModel, WeightsUnavailableError, load_pretrained
from gpt.tokenizer import load_tokenizer
from tests.helpers import COMMIT, PROMPTS, TINY, TINY_NAME, TINY_REPO, put_in_hub_cache, random_hf_gpt2


@pytest.fixture
def hub_transport(monkeypatch):
    """Serve huggingface_hub's HTTP requests with a handler (online, tiny model registered); undone after."""
    monkeypatch.setitem(pretrained.PRETRAINED, TINY_NAME, PretrainedModel(TINY_REPO, TINY))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def serve(handler) -> None:
        huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(handler)))

    yield serve
    huggingface_hub.set_client_factory(_http.default_client_factory)


def fake_hub(data: bytes, gets: list[httpx.Request]):
    """A handler answering like the Hub for TINY_REPO's file: HEAD with metadata, GET (ranges too) with bytes."""
    url_path = f"/{TINY_REPO}/resolve/main/{WEIGHTS_FILE}"
    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path != url_path:
            return httpx.Response(404)
        if request.method == "HEAD":
            return httpx.Response(200, headers={**headers, "Content-Length": str(len(data))})
        gets.append(request)
        start = int(request.headers.get("Range", "bytes=0-").removeprefix("bytes=").split("-")[0])
        return httpx.Response(206 if start else 200, headers=headers, content=data[start:])

    return handle


def hf_logits(model: GPT2LMHeadModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def cached_logits(model, ids: list[int], split: int) -> torch.Tensor:
    """Logits of every position computed through the KV cache: a prefill, then one token at a time."""
    cache = model.new_cache(1)
    with torch.no_grad():
        rows = [model(torch.tensor([ids[:split]]), cache)[0]]
        rows += [model(torch.tensor([[t]]), cache)[0] for t in ids[split:]]
    return torch.cat(rows)


def test_loads_from_the_hub_cache_with_logits_parity(tiny_cached, tiny_hf):
    hf, _ = tiny_hf
    ckpt = load_pretrained(TINY_NAME, progress=False)
    assert ckpt.meta["weights"] == str(tiny_cached) and ckpt.meta["repo_id"] == TINY_REPO
    assert ckpt.model.out_head.weight is ckpt.model.tok_emb.weight
    assert type(ckpt.model.out_head) is OutputHead and type(ckpt.model.trf_blocks[0].att) is DecodeAttention
    assert_parity(ckpt.model, hf, PROMPTS)
    teaching = GPTModel(ckpt.model.cfg).eval()  # the model as the book builds it, without gpt/kernels.py
    teaching.load_state_dict(ckpt.model.state_dict())
    assert_parity(teaching, hf, PROMPTS)


def assert_parity(model, hf: GPT2LMHeadModel, prompts: list[str]) -> None:
    """Our logits equal transformers' within 1e-4 on every prompt, with and without the KV cache."""
    tokenizer = load_tokenizer("gpt2")
    full, cached = [], []
    for prompt in prompts:
        ids = tokenizer.encode(prompt)
        expected = hf_logits(hf, ids)
        with torch.no_grad():
            full.append((model(torch.tensor([ids]))[0] - expected).abs().max().item())
        cached.append((cached_logits(model, ids, split=2) - expected).abs().max().item())
    print(f"\n{model.n_params() / 1e6:.1f}M parameters, {len(prompts)} prompts: max |logits - transformers'| "
          f"{max(full):.2e} without cache, {max(cached):.2e} with the KV cache")  # shown by pytest -s
    assert max(full) <= 1e-4 and max(cached) <= 1e-4, (full, cached)


def test_greedy_generation_matches_transformers(tiny_cached, tiny_hf):
    hf, _ = tiny_hf
    ckpt = load_pretrained(TINY_NAME, progress=False)
    n_new = 16
    for prompt in PROMPTS[:3]:
        ids = ckpt.tokenizer.encode(prompt)
        greedy = SamplingConfig(max_new_tokens=n_new, temperature=0, stop_at_eot=False)
        expected = hf.generate(torch.tensor([ids]), max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                               pad_token_id=0)[0, len(ids):].tolist()
        assert generate(ckpt.model, ids, greedy, use_cache=True) == expected, prompt
        assert generate(ckpt.model, ids, greedy, use_cache=False) == expected, prompt


def test_bfloat16_load_keeps_the_tie_and_follows_float32(tiny_cached):
    fp32 = load_pretrained(TINY_NAME, progress=False).model
    bf16 = load_pretrained(TINY_NAME, dtype=torch.bfloat16, progress=False).model
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert bf16.out_head.weight is bf16.tok_emb.weight
    ids = torch.tensor([load_tokenizer("gpt2").encode(PROMPTS[0])])
    with torch.no_grad():
        a, b = fp32(ids), bf16(ids).float()
    # bfloat16 keeps 8 bits of mantissa: close to, not equal to, float32.
    assert 0 < (a - b).abs().max() <= 0.05 * a.abs().max()


def test_download_through_the_hub_client(hub_transport, tmp_path, tiny_hf):
    """The real download path, with only the HTTP transport mocked: HEAD for metadata, GET for bytes."""
    data, gets = tiny_hf[1].read_bytes(), []
    hub_transport(fake_hub(data, gets))
    ckpt = load_pretrained(TINY_NAME, progress=False, cache_dir=tmp_path)
    again = load_pretrained(TINY_NAME, progress=False, cache_dir=tmp_path)  # cached: HEAD only
    assert len(gets) == 1
    path = Path(ckpt.meta["weights"])
    assert path == Path(again.meta["weights"]) and path.read_bytes() == data
    assert path.is_relative_to(pretrained.cache_folder(TINY_NAME, tmp_path))
    ids = ckpt.tokenizer.encode(PROMPTS[0])
    with torch.no_grad():
        assert (ckpt.model(torch.tensor([ids]))[0] - hf_logits(tiny_hf[0], ids)).abs().max() <= 1e-4


def test_a_dropped_connection_resumes_where_it_stopped(hub_transport, monkeypatch, tmp_path, tiny_hf):
    data, gets = tiny_hf[1].read_bytes(), []
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 2**20)  # the hub writes whole chunks: make them small
    half = 3 * 2**20
    serve = fake_hub(data, gets)

    def drops_once(request: httpx.Request) -> httpx.Response:
        response = serve(request)
        if request.method == "GET" and len(gets) == 1:  # the first transfer breaks halfway

            def broken():
                yield data[:half]
                raise httpx.RemoteProtocolError("peer closed connection", request=request)

            return httpx.Response(200, headers=response.headers, content=broken())
        return response

    hub_transport(drops_once)
    ckpt = load_pretrained(TINY_NAME, progress=False, cache_dir=tmp_path)
    assert [g.headers.get("Range") for g in gets] == [None, f"bytes={half}-"]
    assert Path(ckpt.meta["weights"]).read_bytes() == data


def test_a_proxy_answering_instead_of_the_hub_is_weights_unavailable(hub_transport, tmp_path):
    """A firewall or captive portal answers 200 without the Hub's headers: the file cannot be had."""
    hub_transport(lambda request: httpx.Response(200, text="<html>please log in</html>"))
    with pytest.raises(WeightsUnavailableError) as err:
        load_pretrained(TINY_NAME, progress=False, cache_dir=tmp_path)
    assert str(err.value).startswith(f"{TINY_NAME}: {TINY_REPO}/model.safetensors is not in the Hugging Face cache")


def test_a_failed_transfer_is_one_line_and_leaves_no_file(hub_transport, tmp_path, tiny_hf):
    size = str(tiny_hf[1].stat().st_size)

    def failing_get(request: httpx.Request) -> httpx.Response:
        headers = {"X-Repo-Commit": COMMIT, "ETag": '"abc"', "Content-Length": size}
        return httpx.Response(200 if request.method == "HEAD" else 500, headers=headers)

    hub_transport(failing_get)
    with pytest.raises(WeightsUnavailableError) as err:
        load_pretrained(TINY_NAME, progress=False, cache_dir=tmp_path)
    message = str(err.value)
    assert message.startswith(f"{TINY_NAME}: could not download {TINY_REPO}/model.safetensors (")
    assert "500" in message and "\n" not in message
    assert not list(tmp_path.rglob(WEIGHTS_FILE))


def test_offline_without_cache_names_model_file_and_remedy(offline_hub):
    with pytest.raises(WeightsUnavailableError) as err:
        load_pretrained("gpt2-medium")
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and "\n" not in message
    assert message.startswith("gpt2-medium: openai-community/gpt2-medium/model.safetensors")
    assert str(offline_hub / "models--openai-community--gpt2-medium") in message
    assert "--weights PATH" in message
    assert not any(offline_hub.iterdir())  # nothing written


def test_an_unreachable_hub_is_one_line_without_retries_and_the_cache_needs_no_hub(tiny_cached, monkeypatch):
    """No HF_HUB_OFFLINE and no network: the Hub is asked once (`hub_reachable`), not retried for tens of seconds;
    a cached file is read without asking."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(pretrained, "hub_reachable", lambda: False)
    monkeypatch.setattr(pretrained, "hf_hub_download", lambda *a, **k: pytest.fail("asked the Hub for a file"))
    with pytest.raises(WeightsUnavailableError, match=r"^gpt2-medium: openai-community/gpt2-medium/model.safetensors "
                                                      r"is not in the Hugging Face cache \(.*\) and the Hub cannot be "
                                                      r"reached; on a machine with internet run `hf download "):
        load_pretrained("gpt2-medium")
    assert load_pretrained(TINY_NAME, progress=False).meta["weights"] == str(tiny_cached)


def test_weights_file_in_hub_or_our_layout(tmp_path, tiny_hf, monkeypatch):
    hf, hub_file = tiny_hf
    monkeypatch.setitem(pretrained.PRETRAINED, TINY_NAME, PretrainedModel(TINY_REPO, TINY))
    from_hub_layout = load_pretrained(TINY_NAME, weights=hub_file.parent).model  # the save_pretrained folder
    ours = tmp_path / "ours.safetensors"
    save_file(state_for_saving(from_hub_layout), str(ours))
    from_our_layout = load_pretrained(TINY_NAME, weights=ours).model
    ids = load_tokenizer("gpt2").encode(PROMPTS[1])
    with torch.no_grad():
        a, b = from_hub_layout(torch.tensor([ids])), from_our_layout(torch.tensor([ids]))
    assert torch.equal(a, b)
    assert (a[0] - hf_logits(hf, ids)).abs().max() <= 1e-4


def test_hub_mask_buffers_and_unprefixed_names_are_accepted(tmp_path, tiny_hf, monkeypatch):
    """The Hub's own files are GPT2Model dumps: no `transformer.` prefix, plus a causal-mask buffer per layer."""
    hf, hub_file = tiny_hf
    state = {k.removeprefix("transformer."): v for k, v in load_file(str(hub_file)).items()}
    mask = torch.ones(1, 1, TINY.context_length, TINY.context_length).tril()
    state.update({f"h.{i}.attn.bias": mask.clone() for i in range(TINY.n_layers)})
    path = tmp_path / "hub_original.safetensors"
    save_file(state, str(path))
    monkeypatch.setitem(pretrained.PRETRAINED, TINY_NAME, PretrainedModel(TINY_REPO, TINY))
    model = load_pretrained(TINY_NAME, weights=path).model
    ids = load_tokenizer("gpt2").encode(PROMPTS[2])
    with torch.no_grad():
        assert (model(torch.tensor([ids]))[0] - hf_logits(hf, ids)).abs().max() <= 1e-4


@pytest.mark.parametrize("damage, tensor", [
    (lambda s: s.pop("transformer.h.1.mlp.c_fc.weight"), "trf_blocks.1.ff.fc.weight"),
    (lambda s: s.update({"transformer.h.0.ln_2.bias": torch.zeros(7)}), "trf_blocks.0.norm2.bias"),
    (lambda s: s.update({"transformer.h.0.attn.q_proj.weight": torch.zeros(2)}), "h.0.attn.q_proj.weight"),
])
def test_wrong_file_names_the_first_mismatched_tensor(tmp_path, tiny_hf, monkeypatch, damage, tensor):
    state = load_file(str(tiny_hf[1]))
    damage(state)
    path = tmp_path / "damaged.safetensors"
    save_file(state, str(path))
    monkeypatch.setitem(pretrained.PRETRAINED, TINY_NAME, PretrainedModel(TINY_REPO, TINY))
    with pytest.raises(CheckpointError, match=f"tensor '{tensor}'"):
        load_pretrained(TINY_NAME, weights=path)


def test_a_different_size_is_refused_at_the_first_tensor(tiny_hf):
    wrong_size = r"tensor 'tok_emb.weight' has shape \(50257, 32\), expected \(50257, 768\)"
    with pytest.raises(CheckpointError, match=wrong_size):
        load_pretrained("gpt2-small", weights=tiny_hf[1])


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_pretrained("gpt2-small", weights=path)


def test_memory_is_known_before_loading():
    # 124,439,808 weights and a 1,024-position cache of 12 layers x (keys + values) x 768, 4 bytes each
    small_fp32 = pretrained.memory_needed("gpt2-small")
    assert small_fp32 == (124_439_808 + 12 * 2 * 1024 * 768) * 4
    assert pretrained.memory_needed("gpt2-small", torch.bfloat16) == (124_439_808 + 12 * 2 * 1024 * 768) * 2
    assert pretrained.memory_needed("gpt2-xl") > pretrained.memory_needed("gpt2-large") > small_fp32
    expected = "gpt2-xl: 1558M parameters, needs at least 3.4 GB of memory in bfloat16"
    assert pretrained.describe("gpt2-xl", torch.bfloat16) == expected
    with pytest.raises(ValueError, match="unknown pretrained model 'gpt3'"):
        pretrained.memory_needed("gpt3")
    with pytest.raises(ValueError, match="unsupported dtype"):
        pretrained.memory_needed("gpt2-small", torch.int8)


@pytest.mark.slow
def test_gpt2_small_sized_parity_through_the_real_repo_name(offline_hub, tmp_path):
    """gpt2-small's real architecture and Hub repo name, random weights: the full-size mapping."""
    cfg = GPTConfig.preset("gpt2-small")
    hf = random_hf_gpt2(cfg, seed=1)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    put_in_hub_cache(offline_hub, "openai-community/gpt2", tmp_path / "hf" / WEIGHTS_FILE)
    ckpt = load_pretrained("gpt2-small", progress=False)
    assert_parity(ckpt.model, hf, PROMPTS)
    ids = ckpt.tokenizer.encode(PROMPTS[1])
    greedy = SamplingConfig(max_new_tokens=8, temperature=0, stop_at_eot=False)
    reference = hf.generate(torch.tensor([ids]), max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    assert generate(ckpt.model, ids, greedy) == reference[0, len(ids):].tolist()


def test_a_gpt2_size_that_does_not_fit_in_memory_is_refused_before_loading(offline_hub, monkeypatch):
    """The check needs no download: the size is known from the config."""
    import gpt.memory

    monkeypatch.setattr(gpt.memory, "available_memory", lambda: 2 * 10**9)
    with pytest.raises(gpt.memory.InsufficientResourcesError, match=r"gpt2-xl in float32 needs about .* GB of "
                                                                     r"memory; this machine has 2.00 GB free"):
        load_pretrained("gpt2-xl")
    assert not any(offline_hub.iterdir())


def test_a_download_that_does_not_fit_on_disk_is_refused_before_it_starts(offline_hub, monkeypatch):
    import gpt.memory

    monkeypatch.setattr(gpt.memory.shutil, "disk_usage", lambda _: types.SimpleNamespace(free=10**8))
    with pytest.raises(gpt.memory.InsufficientResourcesError, match=r"downloading gpt2-medium needs 1.42 GB of "
                                                                     r"disk; 0.10 GB are free"):
        load_pretrained("gpt2-medium")
    assert not any(offline_hub.iterdir())
