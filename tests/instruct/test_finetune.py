"""Instruction finetuning: tokenized entries, the padding/masking collate, the loss, and the training loop."""

from __future__ import annotations

import pytest
import torch

from gpt.checkpoint import load_checkpoint
from gpt.config import GPTConfig
from gpt.instruct.finetune import (
    INSTRUCT_PRESETS,
    InstructConfig,
    InstructionDataset,
    LengthGroupedBatches,
    batch_loss,
    collate,
    finetune_instruct,
    loader_loss,
    make_loader,
)
from gpt.instruct.prompt import format_prompt
from gpt.lora import LoRALinear, load_adapters
from gpt.model import GPTModel
from gpt.training.events import TrainingMonitor
from gpt.training.loop import PAD_MULTIPLE, padded_width
from gpt.training.loss import IGNORE_INDEX, lm_loss

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_dataset_splits_prompt_and_response_where_the_full_text_would(entries, tokenizer):
    dataset = InstructionDataset(entries, tokenizer)
    for entry, (ids, prompt_len) in zip(entries, dataset, strict=True):
        assert ids == tokenizer.encode(format_prompt(entry) + entry["output"])
        assert tokenizer.decode(ids[prompt_len:]) == entry["output"]


def test_collate_pads_shifts_and_keeps_the_first_end_of_text():
    pad = 99
    inputs, targets = collate([([1, 2, 3, 4, 5], 2), ([6, 7], 1)], pad_token_id=pad)
    assert inputs.tolist() == [[1, 2, 3, 4, 5], [6, 7, pad, pad, pad]]
    assert targets.tolist() == [[2, 3, 4, 5, pad], [7, pad, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]


def test_collate_masks_the_prompt_and_crops():
    pad = 99
    _, targets = collate([([1, 2, 3, 4, 5], 3), ([6, 7], 1)], pad_token_id=pad, mask_prompt=True)
    # prompt [1, 2, 3]: predicting 2 and 3 is masked; position 2 predicts the response's first token
    assert targets.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 4, 5, pad], [7, pad] + [IGNORE_INDEX] * 3]
    inputs, targets = collate([([1, 2, 3, 4, 5], 3), ([6, 7], 1)], pad_token_id=pad, allowed_max_length=3)
    assert inputs.shape == targets.shape == (2, 3)
    assert targets[0].tolist() == [2, 3, 4]


def test_a_rounded_width_only_adds_ignored_targets_and_keeps_the_loss():
    """A training batch is padded to a few widths (memory stays flat over a run); what it adds is padding
    input and ignored targets, so the loss is the book's padding's loss."""
    pad = 99
    rows = [([1, 2, 3, 4, 5], 2), ([6, 7], 1)]
    inputs, targets = collate(rows, pad_token_id=pad)
    wide_inputs, wide_targets = collate(rows, pad_token_id=pad, round_width=True)
    assert wide_inputs.shape == wide_targets.shape == (2, PAD_MULTIPLE)
    assert torch.equal(wide_inputs[:, :5], inputs) and wide_inputs[:, 5:].eq(pad).all()
    assert torch.equal(wide_targets[:, :5], targets) and wide_targets[:, 5:].eq(IGNORE_INDEX).all()
    model = GPTModel(GPTConfig.preset("tiny", vocab_size=100, context_length=32)).eval()
    assert torch.allclose(lm_loss(model(wide_inputs), wide_targets), lm_loss(model(inputs), targets), atol=1e-6)
    cropped, _ = collate(rows, pad_token_id=pad, allowed_max_length=3, round_width=True)
    assert cropped.shape == (2, 3)
    assert [padded_width(n) for n in (1, 16, 17)] == [16, 16, 32] and padded_width(17, 20) == 20
    assert padded_width(300, 256) == 300  # never below the longest entry: cropping is the collate's


def test_length_grouped_batches_cover_the_epoch_with_less_padding():
    lengths = [5 if i % 3 else 40 for i in range(100)]  # one long entry in three, as facts among words
    batches = LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(0), group=4)
    epoch = list(batches)
    assert len(epoch) == len(batches) == 12 and all(len(b) == 8 for b in epoch)
    assert len({i for b in epoch for i in b}) == 96  # each entry at most once; the last partial batch is dropped
    padded = sum(8 * max(lengths[i] for i in b) for b in epoch)
    shuffled = torch.randperm(100, generator=torch.Generator().manual_seed(0)).tolist()
    assert padded < 0.7 * sum(8 * max(lengths[i] for i in shuffled[k:k + 8]) for k in range(0, 96, 8))
    assert list(batches) != epoch  # a new order every epoch ...
    again = LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(0), group=4)
    assert list(again) == epoch  # ... the same for the same seed


def test_the_shipped_preset_groups_by_length(entries, tokenizer):
    assert INSTRUCT_PRESETS["shipped"].group_by_length and not InstructConfig().group_by_length
    loader = make_loader(entries * 2, tokenizer, 96, 4, True, shuffle=True, group_by_length=True)
    assert len(loader) == 15 and sum(len(x) for x, _ in loader) == 60


def test_batch_loss_skips_the_masked_targets(entries, tokenizer, make_checkpoint):
    model = make_checkpoint().model
    inputs, targets = next(iter(make_loader(entries, tokenizer, 96, 4, mask_prompt=True, shuffle=False)))
    kept = targets != IGNORE_INDEX
    logits = model(inputs)
    expected = torch.nn.functional.cross_entropy(logits[kept], targets[kept])
    assert batch_loss(model, inputs, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_config_checks_its_values():
    assert InstructConfig().autocast == "auto"  # bfloat16 where the machine multiplies it faster
    assert INSTRUCT_PRESETS["shipped"].mask_prompt and not INSTRUCT_PRESETS["gpt2"].mask_prompt
    for bad in ({"epochs": 0}, {"lr": 0.0}, {"autocast": "float16"}, {"lora_rank": -1},
                {"lora_rank": 4, "lora_alpha": 0.0}, {"lora_rank": 4, "trainable_blocks": 0},
                {"trainable_blocks": -1}, {"eval_every": -1}):
        with pytest.raises(ValueError):
            InstructConfig(**bad)
    assert InstructConfig(trainable_blocks=0).method == "the last 0 blocks"
    assert InstructConfig(lora_rank=8, trainable_blocks=1).method == "LoRA rank 8 on the last 1 block"


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_short_training_run_lowers_the_loss_reports_and_writes_a_checkpoint(entries, tokenizer, make_checkpoint,
                                                                           tmp_path, device):
    checkpoint = make_checkpoint()
    val_loader = make_loader(entries, tokenizer, 96, 8, False, shuffle=False)
    before = loader_loss(checkpoint.model, val_loader)
    events = []
    cfg = InstructConfig(epochs=3, batch_size=4, lr=3e-3, autocast="float32")
    result = finetune_instruct(checkpoint, entries, entries[:8], cfg, tmp_path / "ft", meta={"data": "test"},
                               device=device, monitor=TrainingMonitor(events.append))
    assert next(checkpoint.model.parameters()).device.type == device
    after = loader_loss(checkpoint.model, val_loader)
    assert after < before - 1.0
    assert result.train_losses[-1] < result.train_losses[0] and not result.stopped
    assert result.steps == 3 * 7 and result.tokens_seen > 0  # 30 entries make 7 full batches of 4
    kinds = [e.kind for e in events]
    assert kinds == ["start"] + (["step"] * 7 + ["epoch", "checkpoint"]) * 3 + ["done"]
    assert all(e.total_steps == 21 for e in events)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.metrics["val_loss"] for e in epochs] == result.val_losses and epochs[-1].epoch == 3
    assert all("train_loss" in e.metrics for e in events if e.kind == "step")
    assert {e.path for e in events if e.kind == "checkpoint"} == {str(tmp_path / "ft")}
    saved = load_checkpoint(tmp_path / "ft")
    assert saved.meta["epochs_done"] == 3 and saved.meta["data"] == "test"
    assert len(saved.meta["train_losses"]) == 3 and saved.meta["finetune"]["autocast"] == "float32"


@pytest.mark.slow
def test_a_stop_request_returns_normally_with_a_checkpoint(entries, make_checkpoint, tmp_path):
    checkpoint = make_checkpoint()
    monitor = TrainingMonitor()
    events = []

    def listener(event):
        events.append(event)
        if event.kind == "step" and event.step == 2:
            monitor.request_stop()  # as the app's stop button does, from another thread

    monitor.listeners.append(listener)
    cfg = InstructConfig(epochs=3, batch_size=4, lr=3e-3, autocast="float32")
    result = finetune_instruct(checkpoint, entries, entries[:8], cfg, tmp_path / "ft", monitor=monitor)
    assert result.stopped and result.steps == 2 and result.train_losses == []
    assert [e.kind for e in events] == ["start", "step", "step", "checkpoint", "stopped"]
    assert "stop requested" in events[-1].text
    saved = load_checkpoint(tmp_path / "ft")
    assert saved.meta["stopped"] and saved.meta["steps"] == 2 and saved.meta["epochs_done"] == 0
    expected = checkpoint.model.tok_emb.weight.detach().to(torch.bfloat16).float()
    assert torch.equal(saved.model.tok_emb.weight, expected)  # the weights of the moment it stopped


def test_a_stop_before_any_step_writes_nothing(entries, make_checkpoint, tmp_path):
    monitor = TrainingMonitor()
    monitor.request_stop()
    result = finetune_instruct(make_checkpoint(), entries, entries[:8], InstructConfig(batch_size=4),
                               tmp_path / "ft", monitor=monitor)
    assert result.stopped and result.steps == 0 and not (tmp_path / "ft").exists()


def test_too_few_entries_for_one_batch(entries, make_checkpoint):
    with pytest.raises(ValueError, match="no full batch"):
        finetune_instruct(make_checkpoint(), entries[:3], entries[:3], InstructConfig(batch_size=4))


FAST = dict(epochs=2, batch_size=4, lr=3e-3, autocast="float32")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_lora_trains_only_the_adapters_and_saves_the_merged_model_and_the_adapters(entries, tokenizer,
                                                                                  make_checkpoint, tmp_path, device):
    checkpoint = make_checkpoint()
    before = snapshot(checkpoint.model)
    ids = torch.tensor([tokenizer.encode(format_prompt(entries[-1]))], device=device)
    seen = {}

    def at_the_last_checkpoint(event):  # the model as it trains: adapters around frozen layers
        if event.kind == "checkpoint" and event.epoch == 2:
            model = checkpoint.model
            seen["adapters"] = sum(isinstance(m, LoRALinear) for m in model.modules())
            seen["frozen"] = {k.replace(".base.", "."): v.to("cpu", copy=True) for k, v in model.state_dict().items()
                              if "lora_" not in k}
            adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
            seen["lora_b"] = [m.lora_b.detach().abs().sum().item() for m in adapters]
            with torch.no_grad():
                seen["logits"] = model.eval()(ids).cpu()
            model.train()

    cfg = InstructConfig(**FAST, lora_rank=4, lora_alpha=8)
    result = finetune_instruct(checkpoint, entries, entries[:8], cfg, tmp_path / "ft", save_dtype=None, device=device,
                               monitor=TrainingMonitor(at_the_last_checkpoint), base_sha256="b" * 64)
    assert seen["adapters"] == 4 * 2  # qkv, out_proj, fc, proj in both blocks
    assert seen["frozen"].keys() == before.keys()
    assert all(torch.equal(seen["frozen"][k], before[k]) for k in before)  # no weight of the base moved
    assert all(b > 0 for b in seen["lora_b"])  # every adapter learned (B starts at zero)
    assert result.trainable_params == 2 * 4 * ((64 + 192) + (64 + 64) + (64 + 256) + (256 + 64))
    assert result.train_losses[-1] < result.train_losses[0]
    saved = load_checkpoint(tmp_path / "ft")  # a plain checkpoint: loads anywhere
    assert not any(isinstance(m, LoRALinear) for m in saved.model.modules())
    torch.testing.assert_close(saved.model(ids.cpu()), seen["logits"], rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # merged in place too
        torch.testing.assert_close(checkpoint.model(ids).cpu(), seen["logits"], rtol=1e-4, atol=1e-4)
    assert saved.meta["finetune"]["lora_rank"] == 4 and saved.meta["trainable_params"] == result.trainable_params
    fresh = make_checkpoint().model  # the same base weights
    load_adapters(fresh, tmp_path / "ft", "b" * 64)
    torch.testing.assert_close(fresh.eval()(ids.cpu()), seen["logits"], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="another base model"):
        load_adapters(make_checkpoint().model, tmp_path / "ft", "c" * 64)


@pytest.mark.slow
def test_trainable_blocks_trains_only_the_last_blocks(entries, make_checkpoint, tmp_path):
    checkpoint = make_checkpoint(tie_weights=False)
    before = snapshot(checkpoint.model)
    result = finetune_instruct(checkpoint, entries, entries[:8], InstructConfig(**FAST, trainable_blocks=1))
    after = checkpoint.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("trf_blocks.1.", "final_norm.", "out_head.")) for k in changed)
    assert any(k.startswith("trf_blocks.1.") for k in changed) and "out_head.weight" in changed
    assert result.trainable_params == sum(v.numel() for k, v in before.items()
                                          if k.startswith(("trf_blocks.1.", "final_norm.", "out_head.")))
    with pytest.raises(ValueError, match="cannot unfreeze 3 blocks"):
        finetune_instruct(make_checkpoint(), entries, entries[:8], InstructConfig(**FAST, trainable_blocks=3))


@pytest.mark.slow
def test_lora_on_the_last_block_leaves_the_first_untouched(entries, make_checkpoint):
    checkpoint = make_checkpoint()
    before = snapshot(checkpoint.model)
    finetune_instruct(checkpoint, entries, entries[:8], InstructConfig(**FAST, lora_rank=2, trainable_blocks=1))
    after = checkpoint.model.state_dict()
    assert after.keys() == before.keys()  # merged back into plain layers
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"trf_blocks.1.{name}.weight" for name in ("att.qkv", "att.out_proj", "ff.fc", "ff.proj")}
    with pytest.raises(ValueError, match="cannot adapt 3 blocks"):
        finetune_instruct(make_checkpoint(), entries, entries[:8], InstructConfig(**FAST, lora_rank=2,
                                                                                  trainable_blocks=3))


@pytest.mark.slow
def test_eval_every_reports_validation_losses_within_an_epoch(entries, make_checkpoint):
    events = []
    finetune_instruct(make_checkpoint(), entries, entries[:8], InstructConfig(**FAST, eval_every=3),
                      monitor=TrainingMonitor(events.append))
    evals = [e for e in events if e.kind == "eval"]
    assert [e.step for e in evals] == [3, 6, 9, 12]  # not at 7 and 14, the epochs' ends, which report their own
    assert all(e.metrics["val_loss"] > 0 for e in evals)


@pytest.mark.slow
def test_a_new_pretokenizer_trains_and_is_saved_with_the_model(entries, make_checkpoint, tmp_path):
    """`pretokenizer="digits"`: the sums are learnt on digit tokens, and the saved model keeps the cut."""
    entries = [*entries, {"instruction": "What is 12 + 30?", "input": "", "output": "42"}]
    checkpoint = make_checkpoint()
    assert checkpoint.tokenizer.pretokenizer == "gpt2"
    finetune_instruct(checkpoint, entries, entries[:8], InstructConfig(**{**FAST, "epochs": 1}, pretokenizer="digits"),
                      tmp_path / "ft")
    assert checkpoint.tokenizer.pretokenizer == "digits"  # evaluation after training cuts the same way
    saved = load_checkpoint(tmp_path / "ft").tokenizer
    assert saved.pretokenizer == "digits" and saved.encode("42") == [saved.encode("4")[0], saved.encode("2")[0]]
    with pytest.raises(ValueError, match="pretokenizer must be one of"):
        InstructConfig(pretokenizer="words")
