"""A pretraining run end to end: texts in; a model folder with its held-out figures, baselines and card out.

`train_run` is what both the command line (`python -m gpt pretrain`) and the app's Train tab call:
tokenizer, training (resumable, stoppable), the held-out score of the whole held-out text beside
`xz -9` and a byte n-gram on the same text, and a model card written from those figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt.checkpoint import CARD_FILE
from gpt.config import GPTConfig
from gpt.data.corpus import join_documents
from gpt.files import write_text_atomic
from gpt.pretrain.baselines import heldout_baselines
from gpt.pretrain.trainer import PretrainConfig, export_model, prepare_tokenizer, pretrain
from gpt.training.distributed import Distributed
from gpt.training.events import TrainingMonitor


@dataclass(frozen=True)
class PretrainRun:
    """What a finished (or stopped) run reports: the held-out figures of its exported model.

    Module level and plain values: it crosses from the app's training process to the server.
    """

    steps: int
    max_steps: int
    tokens_seen: int
    train_time_s: float
    held_out_loss: float
    held_out_perplexity: float
    held_out_bits_per_byte: float
    held_out_bytes: int
    baselines: dict[str, float]  # bits per byte of `xz -9` and the n-grams on the same held-out text
    model_dir: str

    @property
    def finished(self) -> bool:
        """False when it stopped before its last step: it can be resumed."""
        return self.steps >= self.max_steps


def train_run(cfg: PretrainConfig, train_texts: list[str], val_texts: list[str], tokenizer_spec: str,
              out_dir: str | Path, data_name: str, ddp: Distributed | None = None, resume: bool = False,
              time_limit_s: float | None = None, monitor: TrainingMonitor | None = None,
              progress: bool = False, baseline_orders: tuple[int, ...] = (3, 5),
              fit_to_time: bool = False) -> PretrainRun | None:
    """Train (or resume), then export `OUT/model/` and `OUT/MODEL_CARD.md`; returns the held-out figures.

    A run stopped early is exported too (its card says how far it got). Returns None on the other
    processes of a data-parallel run, and when it was stopped before its first step (nothing to export).
    `fit_to_time` (one process, with `time_limit_s`): the schedule ends sooner if the machine slows; the returned
    `max_steps` is the schedule's end as it stood at the last step.
    """
    out_dir = Path(out_dir)
    ddp = ddp or Distributed()
    tokenizer = prepare_tokenizer(tokenizer_spec, train_texts, cfg.model.vocab_size, out_dir, ddp, resume, progress)
    result = pretrain(cfg, train_texts, val_texts, tokenizer, out_dir, ddp, resume=resume, time_limit_s=time_limit_s,
                      monitor=monitor, fit_to_time=fit_to_time)
    if not ddp.is_main or result.step == 0:
        return None
    baselines = heldout_baselines(join_documents(train_texts), join_documents(val_texts), baseline_orders)
    meta = export_model(result, result.cfg, tokenizer, val_texts, out_dir, data_name, baselines)
    write_text_atomic(out_dir / CARD_FILE, run_card(meta))
    return PretrainRun(steps=meta["steps"], max_steps=meta["max_steps"], tokens_seen=meta["tokens_seen"],
                       train_time_s=meta["train_time_s"], held_out_loss=meta["held_out_loss"],
                       held_out_perplexity=meta["held_out_perplexity"],
                       held_out_bits_per_byte=meta["held_out_bits_per_byte"], held_out_bytes=meta["held_out_bytes"],
                       baselines=meta["baselines"], model_dir=str(out_dir / "model"))


def run_card(meta: dict[str, Any]) -> str:
    """A model card made only from the run's own figures (nothing typed by hand)."""
    tc = meta["train_config"]
    m = tc["model"]
    n_params = meta.get("params")
    rows = [("model's loss (perplexity)", f"{meta['held_out_loss']:.3f} ({meta['held_out_perplexity']:.1f})"),
            ("model", f"**{meta['held_out_bits_per_byte']:.3f}** bits per byte")]
    rows += [(name, f"{bpb:.3f} bits per byte") for name, bpb in meta.get("baselines", {}).items()]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    stopped = "" if meta["steps"] >= meta["max_steps"] else f" (stopped early, of {meta['max_steps']} planned)"
    size = f"{n_params / 1e6:.2f}M parameters, " if n_params else ""
    optimizer = "Muon for the blocks' matrices with AdamW for the rest" if tc.get("optimizer") == "muon" else "AdamW"
    return f"""# A GPT pretrained from scratch

{size}{m['n_layers']} layers, {m['n_heads']} heads, {m['emb_dim']} wide, context {m['context_length']} tokens,
vocabulary {m['vocab_size']:,} tokens
({"GPT-2's BPE" if meta.get('tokenizer') == 'gpt2' else 'a BPE trained on the training text'}).
Architecture: {GPTConfig.from_dict(m).architecture() or "GPT-2's"}.

## Data

{meta['corpus']}: {meta['train_tokens']:,} training tokens; {meta['held_out_bytes']:,} bytes held out
({meta['held_out_tokens']:,} tokens), never trained on.

## Training

{meta['steps']:,} steps{stopped} of {tc['batch_size']} x {m['context_length']} tokens:
{meta['tokens_seen']:,} tokens seen in {meta['train_time_s']:.0f} s. {optimizer}, learning rate {tc['lr']:g}
(warmup {tc['warmup_steps']} steps, cosine to {tc['min_lr']:g}), weight decay {tc['weight_decay']:g},
dropout {m['drop_rate']:g}, seed {tc['seed']}, {meta.get('arithmetic', tc['autocast'])} arithmetic;
torch {meta['torch']}.

## Held-out figures (the whole held-out text)

| | |
|---|---|
{table}

Bits per byte compare models whatever their tokenizer; `xz -9` after the training text and the
byte n-gram (fit on the training text) are what a model that learned nothing beyond local
statistics would reach.
"""
