"""Open models in the app, continued (issue 32): the size cap before a download, a chat template around a view's
text, the BOS every view reads, a folder without checksums said in the summary, and the Spam and Chat tabs
finetuning from SmolLM2-135M (-Instruct) once it is on disk. Tiny random models in an offline Hugging Face cache
(`tests/ui/open_models.py`); the catalogue's SmolLM2 repo ids hold tiny SmolLM2-shaped models here."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

import gpt.open_models
from gpt.checkpoint import CHECKSUMS, CONFIG_FILE, UnverifiedWarning, read_config
from gpt.generate import SamplingConfig, encode_prompt, prompt_pieces
from gpt.instruct.finetune import InstructConfig, finetune_memory_bytes
from gpt.instruct.prompt import (
    CHAT_PROMPT_FORMAT,
    TEMPLATE_FORMAT,
    chat_format,
    fold_chat,
    format_prompt,
    is_chat_prompt,
    message_prompt,
    wrap_in_chat_prompt,
)
from gpt.open_models import CATALOGUE, TooLargeError
from tests.helpers import HUB_SMOL
from tests.hub_models import (
    LLAMA2_LIKE_TEMPLATE,
    metaspace_json,
    put_folder_in_hub_cache,
    random_hf,
    save_hf,
    tiny_smollm2_in_cache,
)
from tests.ui import open_models
from ui import attention_tab, chat_tab, lens_view, picker, spam_tab, surprisal_view
from ui import registry as registry_module
from ui.generation import Settings, make_request
from ui.inside import chat_prompt_shown, model_text
from ui.jobs import JobRunner, TrainLimits

hub_cache, registry = open_models.hub_cache, open_models.registry
HUB_LLAMA = "test-org/tiny-llama-bos"  # a Llama 2-shaped tokenizer: `<s>` starts every text
SMOL_BASE, SMOL_INSTRUCT = CATALOGUE["smollm2-135m"].repo_id, CATALOGUE["smollm2-135m-instruct"].repo_id
TEXT = "Every effort moves you forward"
QUIET = {"progress": lambda *a, **k: None}


@pytest.fixture(scope="module")
def more_models(hub_cache, tmp_path_factory):
    """A Llama-shaped model whose tokenizer puts a BOS first, and SmolLM2-135M and its -Instruct as tiny models of
    SmolLM2's shape (larger than the test's shipped `base`, so LoRA is their default) under the catalogue's ids."""
    root = tmp_path_factory.mktemp("more")
    llama = save_hf(random_hf("llama", vocab_size=660), root / "llama", metaspace_json())
    (llama / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                            "chat_template": LLAMA2_LIKE_TEMPLATE}))
    put_folder_in_hub_cache(hub_cache, HUB_LLAMA, llama)
    tiny_smollm2_in_cache(hub_cache, root)
    return root


# -- 1. the size cap comes before the weights ---------------------------------------------------------------------

def test_an_open_model_above_the_apps_cap_is_refused_before_its_weights(registry, monkeypatch):
    asked = []
    real = registry_module.load_model
    monkeypatch.setattr(registry_module, "load_model", lambda *a, **k: asked.append(k) or real(*a, **k))
    monkeypatch.setattr(registry_module, "MAX_OPEN_MODEL_PARAMS", 1_000)
    monkeypatch.setattr(gpt.open_models, "load_hub_weights", lambda *a: pytest.fail("weights read"))
    with pytest.raises(TooLargeError, match=rf"^{HUB_SMOL} has [\d,]+ parameters; here models of up to 1,000 load"):
        registry.load(HUB_SMOL)
    assert asked[-1]["max_params"] == 1_000


# -- 2. "Wrap in the chat prompt" with a chat template ------------------------------------------------------------

def test_an_open_instruct_model_reads_its_chat_template_in_every_view(registry):
    ckpt = registry.load(HUB_SMOL)
    rendered = ckpt.tokenizer.render_chat([{"role": "user", "content": TEXT}], add_generation_prompt=True)
    assert chat_format(ckpt.meta, ckpt.tokenizer) == TEMPLATE_FORMAT
    read = model_text(ckpt, HUB_SMOL, TEXT, True)
    assert read.text == rendered == message_prompt(ckpt.meta, ckpt.tokenizer, TEXT) and read.wrapped and read.special
    assert wrap_in_chat_prompt(ckpt.meta, read.text, tokenizer=ckpt.tokenizer) == read.text  # never nested
    assert chat_prompt_shown(registry, [HUB_SMOL], TEXT, True) == rendered  # beside the box, no weights loaded
    assert model_text(ckpt, HUB_SMOL, TEXT, False).notice.startswith(f"{HUB_SMOL} is a chat model")
    # the special tokens are read as such: the ids the Chat tab sends for the same first message
    first = fold_chat(ckpt, [], TEXT, SamplingConfig(max_new_tokens=8))
    req = make_request(registry, HUB_SMOL, TEXT, Settings(0, 0, 1, 4, 0, wrap=True))
    assert req.prompt == first.text and req.ids == ckpt.tokenizer.encode(first.text, allow_special=True)
    grid, trace, info = lens_view.lens(registry, HUB_SMOL, TEXT, 0, wrap=True)
    assert "chat prompt around your text" in info
    assert "<|im_start|>" in grid.layout.xaxis.ticktext and "<|im_start|>" not in TEXT
    _, _, info, _ = surprisal_view.surprisal(registry, HUB_SMOL, TEXT, "none", wrap=True)
    assert "chat prompt around your text" in info


def test_the_one_rule_a_recorded_format_wins_over_a_template(registry):
    tokenizer = registry.load(HUB_SMOL).tokenizer
    assert chat_format({"prompt_format": CHAT_PROMPT_FORMAT}, tokenizer) == CHAT_PROMPT_FORMAT
    assert chat_format({}, tokenizer) == TEMPLATE_FORMAT and chat_format({}, None) is None
    assert message_prompt({"prompt_format": "alpaca"}, tokenizer, " hi ") == format_prompt({"instruction": "hi"})
    assert is_chat_prompt(format_prompt({"instruction": "x"})) and not is_chat_prompt(TEXT, tokenizer)


# -- 3. the BOS in every view ---------------------------------------------------------------------------------------

def test_attention_lens_and_surprisal_read_the_bos_generate_reads(registry, more_models):
    ckpt = registry.load(HUB_LLAMA)
    tokenizer = ckpt.tokenizer
    ids = encode_prompt(tokenizer, TEXT)
    assert ids[0] == tokenizer.bos_id == 1 and [p.id for p in prompt_pieces(tokenizer, TEXT)] == ids
    labels, maps, _ = attention_tab.attention_for(registry, HUB_LLAMA, TEXT)
    assert labels[0] == "<s>" and len(labels) == len(ids) and maps[0].shape[-1] == len(ids)
    grid, _, _ = lens_view.lens(registry, HUB_LLAMA, TEXT, 0)
    assert list(grid.layout.xaxis.ticktext)[0] == "<s>" and len(grid.layout.xaxis.ticktext) == len(ids)
    assert make_request(registry, HUB_LLAMA, TEXT, Settings(0, 0, 1, 4, 0)).ids == ids
    scored = surprisal_view.score(ckpt, HUB_LLAMA, TEXT)
    assert [p.id for p in scored.pieces] == ids[1:]  # the tokens after the BOS, each scored after what came before


# -- 6. a folder without checksums -------------------------------------------------------------------------------------

def test_a_local_folder_without_checksums_says_so_in_the_summary(registry):
    folder = registry.root / "unverified"
    shutil.copytree(registry.root / "base", folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config[CHECKSUMS]
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedWarning)
        summary = picker.show_model(registry, "local:unverified", **QUIET)
    assert "⚠️ unverified/config.json records no sha256 checksums, so its files cannot be verified" in summary
    assert "checksums" not in picker.show_model(registry, "base", **QUIET)
    assert summary == picker.show_model(registry, "local:unverified", **QUIET)  # said again once cached


# -- 4. finetuning from SmolLM2-135M --------------------------------------------------------------------------------

def test_the_finetune_panels_offer_smollm2_once_on_disk(registry, hub_cache, more_models):
    assert "smollm2-135m" in registry.base_names(spam_tab.OPEN_BASES)
    assert {"smollm2-135m", "smollm2-135m-instruct"} <= set(registry.base_names(chat_tab.OPEN_BASES))
    assert registry.open_bases_missing(chat_tab.OPEN_BASES) == "" and "smollm2-135m" not in registry.base_names()
    missing = registry.open_bases_missing(("smollm2-360m",))
    assert "`hf download HuggingFaceTB/SmolLM2-360M`" in missing
    with pytest.raises(ValueError, match="is not on disk: on a machine with internet run `hf download"):
        registry.base_model("smollm2-360m")
    base = registry.base_model("smollm2-135m")
    assert base.source.endswith(CONFIG_FILE) is False and base.config.n_params() > 150_000
    assert registry.lora_by_default("smollm2-135m") and not registry.lora_by_default("base")
    assert spam_tab.base_trains(registry, "smollm2-135m") == "LoRA"
    rank, digits = chat_tab.base_defaults(registry, "smollm2-135m-instruct")
    assert rank.value == chat_tab.DEFAULT_LORA_RANK and digits.value is False


def test_a_base_is_bounded_by_what_trains(registry, tmp_path, more_models):
    from ui.training_panel import finetune_base

    runner = JobRunner(TrainLimits(runs_dir=tmp_path, max_params=200_000, max_lora_params=1_000_000))
    with pytest.raises(ValueError, match=r"the limit here is 200,000 when every weight trains. Turn LoRA on: a frozen "
                                         r"base may have up to 1M\."):
        finetune_base(runner, registry, "smollm2-135m")
    assert finetune_base(runner, registry, "smollm2-135m", lora=True).name == "smollm2-135m"


def test_lora_needs_less_memory_than_every_weight():
    cfg = CATALOGUE["smollm2-135m"].config()
    full, lora = finetune_memory_bytes(cfg, 8, 128, False), finetune_memory_bytes(cfg, 8, 128, True)
    assert full - lora == 12 * cfg.n_params() and lora < 3e9  # 135M with LoRA on 128-token batches: under 3 GB
    assert finetune_memory_bytes(cfg, 8, 10**6, False) == finetune_memory_bytes(cfg, 8, cfg.context_length, False)


def test_finetuning_refuses_what_the_memory_cannot_hold(registry, runner, more_models, monkeypatch):
    monkeypatch.setattr("gpt.memory.available_memory", lambda: 10_000_000)
    form = chat_tab.ChatFinetuneForm(**{**chat_tab.DEFAULT_FORM.__dict__, "base": "smollm2-135m-instruct",
                                        "lora_rank": 8, "digits": False})
    with pytest.raises(ValueError, match=r"^Finetuning smollm2-135m-instruct \(LoRA, batches of 8 x \d+ tokens\) "
                                         r"needs about"):
        chat_tab.start_finetune(runner, registry, "t" * 16, form)
    with pytest.raises(ValueError, match="untick \\*Numbers digit by digit\\*"):
        chat_tab.plan_finetune(runner, registry, chat_tab.ChatFinetuneForm(**{**form.__dict__, "digits": True}))


def test_a_finetuned_checkpoint_records_the_format_it_was_taught(registry):
    meta = {"prompt_format": CHAT_PROMPT_FORMAT, "finetune": {"lora_rank": 8, "epochs": 1}}
    assert chat_tab.finetune_method(meta["finetune"]) == "LoRA rank 8 on all layers"
    assert chat_tab.finetune_method({"lora_rank": "8"}) == "settings not recorded"  # typed, as every config read
    assert InstructConfig.from_dict({"lora_rank": 8, "from_the_future": 1}, ignore_unknown=True).lora_rank == 8


@pytest.mark.slow
def test_the_panels_time_a_step_of_smollm2_before_starting(registry, runner, more_models):
    form = chat_tab.ChatFinetuneForm(**{**chat_tab.DEFAULT_FORM.__dict__, "base": "smollm2-135m-instruct",
                                        "lora_rank": 8, "digits": False, "max_entries": 64})
    line = chat_tab.check_finetune(runner, registry, None, form)
    assert line.startswith("**smollm2-135m-instruct**") and "LoRA adapters train" in line and "s per step" in line
    spam = spam_tab.FinetuneForm(base="smollm2-135m", head_token="last", trains="LoRA", blocks=1, lora_rank=8,
                                 lora_alpha=16, epochs=1, lr=1e-3, seed=1, data_choice=spam_tab.SMS_DATA, file=None)
    assert "MB** of memory" in spam_tab.check_finetune(runner, registry, None, spam)


@pytest.mark.slow
def test_a_chat_finetune_of_an_open_instruct_model_talks_in_alpaca(registry, runner, more_models):
    """The whole path: the Chat tab's job on SmolLM2-135M-Instruct (tiny here), its checkpoint in the picker, and
    the Chat tab reading it in the Alpaca prompt it learnt, though it keeps the Hub tokenizer's chat template."""
    from gpt.instruct.runs import finetune_run

    base = registry.base_model("smollm2-135m-instruct")
    cfg = InstructConfig(epochs=1, batch_size=4, lr=1e-3, lora_rank=4)
    out = runner.limits.runs_dir / "chat-smol" / "model"
    finetune_run(base.source, "shipped", cfg, out, max_train=8, max_val=4, eval_questions=2, max_new_tokens=4,
                 families=["small talk"], base_name="smollm2-135m-instruct")
    meta = read_config(out)["meta"]
    assert meta["prompt_format"] == CHAT_PROMPT_FORMAT and meta["base_model"] == "smollm2-135m-instruct"
    chat_registry = registry_module.ModelRegistry(registry.root, runs_root=runner.limits.runs_dir)
    assert "run:chat-smol" in chat_registry.chat_names()
    ckpt = chat_tab.chat_model(chat_registry, "run:chat-smol")
    assert ckpt.tokenizer.chat_template is not None
    prompt = fold_chat(ckpt, [], "Hello", SamplingConfig(max_new_tokens=4)).text
    assert prompt == format_prompt({"instruction": "Hello"})
