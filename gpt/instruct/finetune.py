"""Instruction finetuning (the book's chapter 7): Alpaca prompts, a padding/masking collate, a
training loop, response extraction, local evaluation metrics and multi-turn chat.

`python -m gpt finetune-instruct` finetunes a checkpoint (the shipped base model by default, or
`--model gpt2-small`) on the shipped instruction dataset or the book's, then scores the untuned
and the tuned model on the same held-out split. `--evaluate A B ...` only scores.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import requests
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gpt.checkpoint import Checkpoint, load_model, save_checkpoint
from gpt.config import GPT2_SIZES
from gpt.generate import SamplingConfig, stream
from gpt.instruct_data import Entry, resolve_data, split_entries
from gpt.model import GPTModel
from gpt.tokenizer import ASSETS, END_OF_TEXT, Tokenizer
from gpt.train import autocast_context

PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")
RESPONSE_HEADER = "\n\n### Response:\n"
IGNORE_INDEX = -100  # cross_entropy skips these targets
DEFAULT_BASE = ASSETS / "models" / "base"
NEW_SECTION = re.compile(r"\n\s*###")


# -- the Alpaca prompt ---------------------------------------------------------------------------

def format_input(entry: Entry) -> str:
    """The Alpaca prompt up to (not including) the response header: preamble, instruction, optional input."""
    text = f"{PREAMBLE}\n\n### Instruction:\n{entry['instruction']}"
    if entry.get("input"):
        text += f"\n\n### Input:\n{entry['input']}"
    return text


def format_prompt(entry: Entry) -> str:
    """What the model reads before it writes the response."""
    return format_input(entry) + RESPONSE_HEADER


def extract_response(generated_text: str) -> str:
    """The response in a generated text: after the last response header, before any new `###` section."""
    _, header, response = generated_text.rpartition("### Response:")
    text = response if header else generated_text
    text = text.split(END_OF_TEXT, 1)[0]
    text = NEW_SECTION.split(text, maxsplit=1)[0]  # the model starting a new instruction ends it
    return text.strip()


# -- data ----------------------------------------------------------------------------------------

class InstructionDataset(Dataset):
    """Pre-tokenized entries: (prompt + response ids, prompt length), for the collate to pad and mask.

    Prompt and response are encoded apart: the response header ends in a newline, which GPT-2's
    pre-tokenizer always splits off, so this equals encoding the whole text and tells us exactly
    where the response starts.
    """

    def __init__(self, entries: Sequence[Entry], tokenizer: Tokenizer):
        self.items = []
        for entry in entries:
            prompt = tokenizer.encode(format_prompt(entry))
            self.items.append((prompt + tokenizer.encode(entry["output"]), len(prompt)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.items[i]


def collate(batch: Sequence[tuple[list[int], int]], pad_token_id: int, ignore_index: int = IGNORE_INDEX,
            allowed_max_length: int | None = None, mask_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch with end-of-text, shift targets by one, and mask what the loss must not see.

    Each sequence gets one end-of-text appended; it stays a target (the model learns to stop), every
    later padding target becomes `ignore_index`. With `mask_prompt` the prompt's targets are ignored
    too, so only the response is learned. Both tensors are cropped to `allowed_max_length`.
    """
    width = max(len(ids) for ids, _ in batch) + 1
    inputs = torch.full((len(batch), width - 1), pad_token_id, dtype=torch.long)
    targets = torch.full((len(batch), width - 1), ignore_index, dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(batch):
        n = len(ids)
        inputs[row, :n] = torch.tensor(ids)
        targets[row, : n - 1] = torch.tensor(ids[1:])
        targets[row, n - 1] = pad_token_id  # the first end-of-text: kept
        if mask_prompt:
            targets[row, : prompt_len - 1] = ignore_index  # position prompt_len-1 predicts the response
    if allowed_max_length is not None:
        inputs, targets = inputs[:, :allowed_max_length], targets[:, :allowed_max_length]
    return inputs, targets


# -- training ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparameters of a finetuning run."""

    epochs: int = 2
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.1
    mask_prompt: bool = False
    seed: int = 123
    autocast: bool = True  # bfloat16 matmuls on CPU (master weights stay float32)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


PRESETS = {
    # The small shipped model: a larger rate than GPT-2's, and the loss on responses only, so that
    # the few steps a CPU affords go to answers rather than to the 54-token prompt template.
    # A second epoch lowered the validation loss from 3.39 to 3.34 on the shipped data.
    "shipped": FinetuneConfig(epochs=2, batch_size=16, lr=1e-3, mask_prompt=True),
    "gpt2": FinetuneConfig(epochs=2, batch_size=8, lr=5e-5),  # the book's settings
}


@dataclass
class TrainResult:
    train_losses: list[float] = field(default_factory=list)  # mean training loss of each epoch
    val_losses: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    seconds: float = 0.0


def batch_loss(model: GPTModel, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def _autocast(enabled: bool):
    return autocast_context("bfloat16" if enabled else "float32", "cpu")


@torch.no_grad()
def loader_loss(model: GPTModel, loader: DataLoader, autocast: bool = False) -> float:
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in loader:
        with _autocast(autocast):
            total += batch_loss(model, inputs, targets).item() * len(inputs)
        count += len(inputs)
    return total / max(count, 1)


def make_loader(entries: Sequence[Entry], tokenizer: Tokenizer, context_length: int, batch_size: int,
                mask_prompt: bool, shuffle: bool, seed: int = 123) -> DataLoader:
    def collate_batch(batch):
        return collate(batch, tokenizer.eot_id, allowed_max_length=context_length, mask_prompt=mask_prompt)

    return DataLoader(InstructionDataset(entries, tokenizer), batch_size=batch_size, shuffle=shuffle,
                      drop_last=shuffle, collate_fn=collate_batch,
                      generator=torch.Generator().manual_seed(seed))


def finetune(checkpoint: Checkpoint, train_entries: Sequence[Entry], val_entries: Sequence[Entry],
             cfg: FinetuneConfig, out_dir: str | Path | None = None, meta: dict[str, Any] | None = None,
             save_dtype: torch.dtype | None = torch.bfloat16) -> TrainResult:
    """AdamW over the entries for `cfg.epochs` epochs; a checkpoint is written after every epoch."""
    torch.manual_seed(cfg.seed)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    ctx = model.cfg.context_length
    train_loader = make_loader(train_entries, tokenizer, ctx, cfg.batch_size, cfg.mask_prompt, True, cfg.seed)
    val_loader = make_loader(val_entries, tokenizer, ctx, cfg.batch_size, cfg.mask_prompt, False)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_entries)} training entries make no full batch of {cfg.batch_size}")
    model.float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result, start = TrainResult(), time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, bar = 0.0, tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch")
        for inputs, targets in bar:
            optimizer.zero_grad(set_to_none=True)
            with _autocast(cfg.autocast):
                loss = batch_loss(model, inputs, targets)
            loss.backward()
            optimizer.step()
            total += loss.item()
            result.tokens_seen += inputs.numel()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        result.train_losses.append(total / len(train_loader))
        result.val_losses.append(loader_loss(model, val_loader, cfg.autocast) if len(val_loader) else math.nan)
        result.seconds = time.perf_counter() - start
        tqdm.write(f"epoch {epoch}: train loss {result.train_losses[-1]:.3f}, val loss {result.val_losses[-1]:.3f}")
        if out_dir is not None:
            save_checkpoint(model, out_dir, tokenizer, {**(meta or {}), "finetune": asdict(cfg),
                                                        "epochs_done": epoch, **asdict(result)}, dtype=save_dtype)
    model.eval()
    return result


# -- generation and chat -------------------------------------------------------------------------

def respond(model: GPTModel, tokenizer: Tokenizer, prompt: str, cfg: SamplingConfig) -> Iterator[str]:
    """The growing response to an Alpaca prompt; stops at end-of-text or when a new `###` section starts."""
    ids: list[int] = []
    shown = ""
    for token in stream(model, tokenizer.encode(prompt), cfg, eot_id=tokenizer.eot_id, vocab_size=tokenizer.n_vocab):
        ids.append(token)
        raw = tokenizer.decode(ids)
        if raw.endswith("\ufffd"):
            continue  # the token ends inside a UTF-8 character: wait for the rest
        text = extract_response(raw)
        if text != shown:
            shown = text
            yield text
        if NEW_SECTION.search(raw):
            return
    final = extract_response(tokenizer.decode(ids))
    if final != shown:
        yield final


def message_text(message: dict) -> str:
    """A chat message's text. Content is a string, or a list of typed parts (the role/content format
    of Gradio 6 and OpenAI-style clients): its "text" parts are joined, files and images skipped."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def build_chat_prompt(history: Sequence[dict], message: str, tokenizer: Tokenizer, context_length: int,
                      max_new_tokens: int) -> str:
    """One Alpaca prompt for a conversation: the new message is the instruction, earlier turns the input.

    The oldest turns are dropped until prompt + `max_new_tokens` fit the context window.
    """
    message = (message or "").strip()
    if not message:
        raise ValueError("the message is empty")
    budget = context_length - max_new_tokens
    if budget <= 0:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) must be below the context length ({context_length})")
    turns = [(m["role"], message_text(m).strip()) for m in history or []
             if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    lines = [f"{'User' if role == 'user' else 'Assistant'}: {text}" for role, text in turns if text]
    for start in range(len(lines) + 1):
        prompt = format_prompt({"instruction": message, "input": "\n".join(lines[start:])})
        n_tokens = len(tokenizer.encode(prompt))
        if n_tokens <= budget:
            return prompt
    raise ValueError(f"the message is too long: its prompt takes {n_tokens} tokens, and {budget} fit "
                     f"(context {context_length} minus {max_new_tokens} new tokens)")


def chat_prompt(checkpoint: Checkpoint, history: Sequence[dict], message: str, sampling_cfg: SamplingConfig) -> str:
    """The exact Alpaca prompt `chat_stream` sends for this conversation."""
    return build_chat_prompt(history, message, checkpoint.tokenizer, checkpoint.model.cfg.context_length,
                             sampling_cfg.max_new_tokens)


def chat_stream(checkpoint: Checkpoint, history: Sequence[dict], message: str,
                sampling_cfg: SamplingConfig) -> Iterator[str]:
    """The assistant's reply to `message` after `history` (role/content dicts), as growing text."""
    prompt = chat_prompt(checkpoint, history, message, sampling_cfg)
    yield from respond(checkpoint.model, checkpoint.tokenizer, prompt, replace(sampling_cfg, stop_at_eot=True))


# -- evaluation ----------------------------------------------------------------------------------

SHORT_ANSWER_WORDS = 3  # references this short are scored by exact match; longer ones by ROUGE-L


def normalize(text: str) -> list[str]:
    """Lowercased words, punctuation dropped: what the metrics compare."""
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the bag of words (SQuAD's answer F1)."""
    pred, ref = normalize(prediction), normalize(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of words, as precision and recall."""
    pred, ref = normalize(prediction), normalize(reference)
    if not pred or not ref:
        return float(pred == ref)
    previous = [0] * (len(ref) + 1)
    for p in pred:
        current = [0]
        for j, r in enumerate(ref):
            current.append(previous[j] + 1 if p == r else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def is_short(reference: str) -> bool:
    return len(normalize(reference)) <= SHORT_ANSWER_WORDS


def score(prediction: str, reference: str) -> dict[str, float]:
    """All metrics for one answer; `score` is exact match for short references and ROUGE-L otherwise."""
    em, f1, rl = exact_match(prediction, reference), token_f1(prediction, reference), rouge_l(prediction, reference)
    return {"exact_match": em, "token_f1": f1, "rouge_l": rl, "score": em if is_short(reference) else rl}


def summarize(entries: Sequence[Entry], predictions: Sequence[str]) -> dict[str, Any]:
    """Mean metrics overall, on short and long references, and per task (percentages)."""
    rows = [score(p, e["output"]) | {"task": e.get("task", "all"), "short": is_short(e["output"])}
            for e, p in zip(entries, predictions)]

    def mean(selected: list[dict], key: str) -> float:
        return round(100 * sum(r[key] for r in selected) / len(selected), 1) if selected else math.nan

    short = [r for r in rows if r["short"]]
    long = [r for r in rows if not r["short"]]
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    return {
        "n": len(rows), "score": mean(rows, "score"), "exact_match_short": mean(short, "exact_match"),
        "rouge_l_long": mean(long, "rouge_l"), "token_f1": mean(rows, "token_f1"),
        "n_short": len(short), "n_long": len(long),
        "tasks": {task: {"n": len(rs), "score": mean(rs, "score")} for task, rs in sorted(by_task.items())},
    }


def generate_responses(checkpoint: Checkpoint, entries: Sequence[Entry], max_new_tokens: int = 64,
                       desc: str = "generating") -> list[str]:
    """Greedy responses to the entries, each stopped at end-of-text."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    responses = []
    for entry in tqdm(entries, desc=desc, unit="entry"):
        text = ""
        for text in respond(checkpoint.model, checkpoint.tokenizer, format_prompt(entry), cfg):
            pass
        responses.append(text)
    return responses


JUDGE_PROMPT = ("Given the input `{prompt}` and correct output `{reference}`, score the model response "
                "`{response}` on a scale from 0 to 100, where 100 is the best score. Respond with the integer only.")


class JudgeUnavailableError(ValueError):
    """No Ollama server answered at the given address."""


def ollama_scores(entries: Sequence[Entry], responses: Sequence[str], model: str = "llama3",
                  url: str = "http://localhost:11434/api/chat", timeout: float = 120) -> list[int | None]:
    """Scores 0-100 from an LLM judge on a local Ollama server (optional; the metrics above need none)."""
    scores: list[int | None] = []
    for entry, response in zip(entries, responses):
        payload = {"model": model, "stream": False, "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
                   "messages": [{"role": "user", "content": JUDGE_PROMPT.format(
                       prompt=format_input(entry), reference=entry["output"], response=response)}]}
        try:
            reply = requests.post(url, json=payload, timeout=timeout)
            reply.raise_for_status()
            text = reply.json()["message"]["content"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as err:
            raise JudgeUnavailableError(f"no Ollama judge at {url} ({type(err).__name__}): start `ollama serve` "
                                        f"and `ollama pull {model}`, or evaluate without --judge") from err
        number = re.search(r"\d+", text)
        scores.append(min(int(number.group()), 100) if number else None)
    return scores


def evaluate(checkpoint: Checkpoint, entries: Sequence[Entry], max_new_tokens: int = 64, judge: str | None = None,
             desc: str = "generating") -> dict[str, Any]:
    responses = generate_responses(checkpoint, entries, max_new_tokens, desc)
    report = summarize(entries, responses)
    if judge:
        judged = [s for s in ollama_scores(entries, responses, judge) if s is not None]
        report["judge"] = {"model": judge, "mean": round(sum(judged) / len(judged), 1) if judged else math.nan}
    report["examples"] = [{"instruction": e["instruction"], "input": e["input"], "reference": e["output"],
                           "response": r} for e, r in list(zip(entries, responses))[:5]]
    return report


def format_report(reports: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one column per model: overall figures, then one row per task."""
    names = list(reports)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    first = reports[names[0]]
    rows = [("score (EM short / ROUGE-L long)", "score"), (f"exact match, {first['n_short']} short answers",
                                                           "exact_match_short"),
            (f"ROUGE-L, {first['n_long']} long answers", "rouge_l_long"), ("token F1, all", "token_f1")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(f"{reports[n][key]:.1f}" for n in names) + " |")
    if all("judge" in r for r in reports.values()):
        lines.append(f"| judge ({first['judge']['model']}) | " + " | ".join(f"{reports[n]['judge']['mean']:.1f}"
                                                                          for n in names) + " |")
    for task, info in first["tasks"].items():
        lines.append(f"| {task} ({info['n']}) | " + " | ".join(f"{reports[n]['tasks'][task]['score']:.1f}"
                                                              for n in names) + " |")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(DEFAULT_BASE), help="checkpoint folder, or gpt2-small ... gpt2-xl")
    parser.add_argument("--data", default="shipped", help="shipped | book (downloaded, cached) | a .json(.gz) file")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: gpt2 for GPT-2 models, else shipped")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--mask-prompt", action=argparse.BooleanOptionalAction,
                        help="learn the response only (default: the preset's choice)")
    parser.add_argument("--max-train", type=int, help="use only the first N training entries")
    parser.add_argument("--seed", type=int, default=123, help="seeds the split and the training")
    parser.add_argument("--out", type=Path, default=Path("runs/instruct"))
    parser.add_argument("--evaluate", nargs="+", metavar="MODEL", help="only score these models on the test split")
    parser.add_argument("--eval-limit", type=int, help="score only the first N test entries")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--judge", metavar="OLLAMA_MODEL", help="also score with an LLM judge on a local Ollama")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 suits the small shipped model: on a shared CPU, "
                             "threads that wait on each other are several times slower)")


def run(args: argparse.Namespace) -> None:
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    entries = resolve_data(args.data)
    train_entries, test_entries, val_entries = split_entries(entries, args.seed)
    train_entries = train_entries[: args.max_train] if args.max_train else train_entries
    test_entries = test_entries[: args.eval_limit] if args.eval_limit else test_entries
    print(f"data {args.data}: {len(train_entries)} train / {len(test_entries)} test / {len(val_entries)} validation")
    reports: dict[str, dict[str, Any]] = {}
    if args.evaluate:
        for name in args.evaluate:
            reports[name] = evaluate(load_model(name), test_entries, args.max_new_tokens, args.judge, desc=name)
    else:
        preset = args.preset or ("gpt2" if args.model in GPT2_SIZES else "shipped")
        overrides = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                       "mask_prompt": args.mask_prompt}.items()
                     if v is not None}
        cfg = replace(PRESETS[preset], seed=args.seed, **overrides)
        checkpoint = load_model(args.model)
        if not args.no_eval:  # evaluation only reads the weights: the same model is then finetuned
            reports[f"{args.model} (untuned)"] = evaluate(checkpoint, test_entries, args.max_new_tokens, args.judge,
                                                          desc="untuned")
        meta = {"base_model": str(args.model), "data": args.data, "split_seed": args.seed,
                "n_train": len(train_entries), "n_test": len(test_entries), "n_val": len(val_entries)}
        result = finetune(checkpoint, train_entries, val_entries, cfg, args.out, meta)
        print(f"finetuned in {result.seconds:.0f} s, {result.tokens_seen:,} tokens; checkpoint: {args.out}")
        if not args.no_eval:
            reports[f"{args.out} (finetuned)"] = evaluate(checkpoint, test_entries, args.max_new_tokens,
                                                          args.judge, desc="finetuned")
    if reports:
        print(format_report(reports))
        path = Path(args.out) / "instruct_eval.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(reports, indent=1) + "\n")
        print(f"scores and example responses: {path}")
