"""Tiny open models and Hub tokenizers built offline, for the tests of `gpt.open_models`, `gpt.hub_tokenizer` and
the app's open-model views (no tests of its own): transformers' own classes with random weights for each family
the loader maps, tokenizer.json files trained here (byte-level as Qwen3's and SmolLM2's, metaspace as Llama 2's),
chat templates shaped as theirs, and huggingface_hub's cache layout. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from gpt.hub_tokenizer import CHAT_TEMPLATE_FILE
from tests.helpers import COMMIT

# -- transformers' models, one tiny random one per family ------------------------------------------------------

SHAPE = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 320, "max_position_embeddings": 128, "bos_token_id": 0,
         "eos_token_id": 1}
# One tiny model per family, each with what sets it apart from the others.
FAMILIES: dict[str, tuple[type, type, dict[str, Any]]] = {
    "qwen3": (Qwen3Config, Qwen3ForCausalLM,  # QK-norm, heads wider than hidden / heads, tied head
              {**SHAPE, "head_dim": 32, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": True}),
    "llama": (LlamaConfig, LlamaForCausalLM,  # grouped-query, untied head, Llama 3's base
              {**SHAPE, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}),
    "llama3-scaled": (LlamaConfig, LlamaForCausalLM,  # Llama 3.1's stretched frequencies, from a 16-token original
                      {**SHAPE, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
                       "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
    "smollm2": (LlamaConfig, LlamaForCausalLM,  # SmolLM2's shape: 3 heads sharing one KV head, tied
                {**SHAPE, "hidden_size": 48, "num_attention_heads": 3, "num_key_value_heads": 1,
                 "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM,  # biases on q, k and v only
              {**SHAPE, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}),
    "mistral": (MistralConfig, MistralForCausalLM,  # a sliding window longer than the context: full attention
                {**SHAPE, "sliding_window": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}),
}
def random_hf(family: str, seed: int = 0, **changes: Any) -> torch.nn.Module:
    """transformers' own model of `family`, every tensor random (norm gains too, so each mapping matters)."""
    config_cls, model_cls, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**kwargs, **changes}, attn_implementation="eager")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.1)
    return model


def save_hf(model: torch.nn.Module, folder: Path, tokenizer_json: str, **kwargs: Any) -> Path:
    """`save_pretrained` in safetensors, plus the tokenizer files a Hub repository has beside the weights."""
    model.save_pretrained(folder, **kwargs)
    (folder / "tokenizer.json").write_text(tokenizer_json)
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "chat_template": template}))
    return folder


def put_folder_in_hub_cache(cache_dir: Path, repo_id: str, folder: Path) -> Path:
    """Lay a folder's files out as huggingface_hub's cache holds a download: blobs, snapshot links, a ref."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("../..") / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot



# -- tokenizer.json files and chat templates --------------------------------------------------------------------

CORPUS = [
    "The quick brown fox jumps over the lazy dog. 12 + 30 = 42, and 1999 was a year.",
    "Hello, world!\nA second line\twith a tab, then  two spaces.",
    "Ünïcödé text: café, naïve, Straße, Καλημέρα, Привет, 東京, こんにちは.",
    "def add(a, b):\n    return a + b  # code has indentation\n",
    "Assistants answer questions; users ask them. The system says how to behave.",
] * 20

# ChatML as SmolLM2-Instruct uses it: a default system prompt when the conversation brings none.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a small, helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Shaped as Qwen3's: the last user turn found through a namespace, earlier reasoning dropped, roles checked,
# `enable_thinking=False` writing an empty think block, extra variables through tojson.
QWEN_LIKE_TEMPLATE = """
{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- if extra is defined %}
    {{- '<|im_start|>system\\n' + (extra | tojson) + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_user=-1) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == 'system' %}{% continue %}{% endif %}
    {%- if message.role == 'assistant' %}
        {%- set content = message.content %}
        {%- if '</think>' in content and loop.index0 < ns.last_user %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}
    {%- elif message.role == 'user' %}
        {{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}
    {%- else %}
        {{- raise_exception('Unexpected role ' + message.role) }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

# Shaped as Llama 2's: the BOS written by the template, the system prompt folded into the first turn.
LLAMA2_LIKE_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set rest = messages[1:] %}{% else %}{% set system = '' %}{% set rest = messages %}{% endif %}"
    "{% for message in rest %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Turns must alternate user/assistant') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' }}"
    "{% if loop.first and system %}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{% endif %}"
    "{{ message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

def byte_level_json() -> str:
    """A byte-level BPE as Qwen3's and SmolLM2's: ChatML specials, <think> as a plain added token, and a
    post-processor that trims spaces off offsets (as GPT-2's file has)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens(["<think>", "</think>"])
    return tok.to_str()


def metaspace_json() -> str:
    """A SentencePiece-style BPE as Llama 2's tokenizer.json: '▁' for spaces, prepended to the text, and the
    256 byte tokens `<0x00>`… in the vocabulary after <unk>, <s>, </s>, for characters it lacks."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    shifted = {token: (i if i < 3 else i + 256) for token, i in vocab.items()}
    shifted.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    spec["model"]["vocab"] = shifted
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok.to_str()


def write_folder(folder: Path, tokenizer_json: str, config: dict, generation: dict | None = None,
                 template_file: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    if template_file is not None:
        (folder / CHAT_TEMPLATE_FILE).write_text(template_file, encoding="utf-8")
    return folder


# -- the catalogue's SmolLM2-135M and -Instruct, as tiny models of their shape in a Hub cache -----------------------

SMOLLM2_REPOS = ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct")  # gpt.open_models.CATALOGUE's


def tiny_smollm2_in_cache(cache_dir: Path, root: Path) -> None:
    """Put tiny SmolLM2-shaped models under the catalogue's SmolLM2-135M repo ids (the -Instruct one with ChatML)
    into the Hub cache at `cache_dir`, built in `root`: the app then sees them on disk. Larger than the app tests'
    shipped `base` (so a finetune of them trains LoRA by default), far smaller than the real ones."""
    tokenizer_json = byte_level_json()
    shape = {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 4, "vocab_size": 512,
             "max_position_embeddings": 256, "bos_token_id": None}
    for repo_id, template in zip(SMOLLM2_REPOS, (None, CHATML_TEMPLATE), strict=True):
        folder = save_hf(random_hf("smollm2", **shape), root / repo_id.replace("/", "--"), tokenizer_json)
        config = {"eos_token": "<|im_end|>", "bos_token": None} | ({"chat_template": template} if template else {})
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        put_folder_in_hub_cache(cache_dir, repo_id, folder)
