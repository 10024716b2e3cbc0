"""The Alpaca prompt (the book's chapter 7), the response read back out of generated text, and chat.

A chat is folded into one Alpaca prompt: the new message is the instruction, the earlier turns the
input. The instruct model was only ever trained on single prompts, and this keeps it on them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace

from gpt.checkpoint import Checkpoint
from gpt.generate import SamplingConfig, stream
from gpt.instruct.data import Entry
from gpt.model import GPTModel
from gpt.tokenizer import END_OF_TEXT, Tokenizer

PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")
RESPONSE_HEADER = "\n\n### Response:\n"
NEW_SECTION = re.compile(r"\n\s*###")


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


def chat_line(role: str, text: str) -> str:
    """One earlier turn as the prompt's input shows it ("User: ..." or "Assistant: ..."); the instruction
    data writes its chat histories with this too, so the model is trained on the format it is sent."""
    return f"{'User' if role == 'user' else 'Assistant'}: {text}"


MAX_TURNS = 50  # the most recent messages a chat prompt reads; older ones never fit a small model's context


def build_chat_prompt(history: Sequence[dict], message: str, tokenizer: Tokenizer, context_length: int,
                      max_new_tokens: int) -> str:
    """One Alpaca prompt for a conversation: the new message is the instruction, earlier turns the input.

    Only the last `MAX_TURNS` messages are read, and the oldest of those are dropped until prompt +
    `max_new_tokens` fit the context window. The whole prompt is encoded once: each turn starts a
    line, and GPT-2's pre-tokenizer splits at a newline before a letter, so the tokens from a turn
    on are those the prompt keeps when the turns before it are dropped.
    """
    message = (message or "").strip()
    if not message:
        raise ValueError("the message is empty")
    budget = context_length - max_new_tokens
    if budget <= 0:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) must be below the context length ({context_length})")
    turns = [(m["role"], message_text(m).strip()) for m in (history or [])[-MAX_TURNS:]
             if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    lines = [chat_line(role, text) for role, text in turns if text]
    bare = format_prompt({"instruction": message, "input": ""})
    if lines:
        full = format_prompt({"instruction": message, "input": "\n".join(lines)})
        head = len(format_input({"instruction": message, "input": "x"})) - 1  # where the first turn starts
        starts = [head]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        token_starts = [piece.start for piece in tokenizer.pieces(full)]
        n_head = bisect.bisect_left(token_starts, head)
        for start in starts:  # the tokens kept when the turns before `start` are dropped
            if n_head + len(token_starts) - bisect.bisect_left(token_starts, start) <= budget:
                prompt = full[:head] + full[start:]
                if len(tokenizer.encode(prompt)) <= budget:  # a check: the count above is exact for BPE
                    return prompt
    n_tokens = len(tokenizer.encode(bare))
    if n_tokens <= budget:
        return bare
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
