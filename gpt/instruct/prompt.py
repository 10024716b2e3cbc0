"""The Alpaca prompt (the book's chapter 7), the response read back out of generated text, and chat.

A chat is folded into one Alpaca prompt: the new message is the instruction, the earlier turns the
input, as many as the model was trained on and its context holds (`ChatPrompt` says how many were
left out, and why). The instruct model is trained on prompts of this one shape.

A Hub instruct model (Qwen3, SmolLM2-Instruct) brings its own chat template instead: the conversation is
rendered by it as role/content messages (`build_template_prompt`), the oldest turns dropped until it fits,
and the reply ends at any of the tokenizer's stop ids.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
    for token in stream(model, tokenizer.encode(prompt), cfg, eot_id=tokenizer.stop_ids, vocab_size=tokenizer.n_vocab):
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
    of Gradio 6 and OpenAI-style clients): its "text" parts are joined, files and images skipped, and
    anything else (a number, None, a malformed part) reads as no text."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def chat_line(role: str, text: str) -> str:
    """One earlier message as the prompt's input shows it ("User: ..." or "Assistant: ..."); the instruction
    data writes its chat histories with this too, so the model is trained on the format it is sent."""
    return f"{'User' if role == 'user' else 'Assistant'}: {text}"


MAX_TURNS = 25  # the most earlier turns a chat prompt reads, whatever the model: more never fit a small context
MAX_MESSAGES = 2 * MAX_TURNS  # the messages looked at, from the end: a long history is cut before it is read


def turn_messages(messages: Sequence[Any]) -> list[list[dict[str, str]]]:
    """The turns of a conversation, oldest first: each a user message and the replies to it, as role/content
    messages with their text stripped.

    A turn starts at each user message (replies before the first one are a turn of their own). Anything
    that is not a user or assistant message with text is skipped: API callers can send anything.
    """
    turns: list[list[dict[str, str]]] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            continue
        text = message_text(message).strip()
        if text:
            if message["role"] == "user" or not turns:
                turns.append([])
            turns[-1].append({"role": message["role"], "content": text})
    return turns


def chat_turns(messages: Sequence[Any]) -> list[list[str]]:
    """The turns of a conversation, oldest first, each as the Alpaca prompt's lines ("User: ...")."""
    return [[chat_line(m["role"], m["content"]) for m in turn] for turn in turn_messages(messages)]


def turns_were(n: int, which: str) -> str:
    """'the 3 oldest turns were', 'the oldest turn was', '2 more turns were', 'the earlier turn was'..."""
    if which == "more":
        return f"{n:,} more {'turn was' if n == 1 else 'turns were'}"
    return f"the {which} turn was" if n == 1 else f"the {n:,} {which} turns were"


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation folded into one prompt, with the earlier turns it left out and why: the page says so."""

    text: str
    turns: int  # earlier turns in the conversation
    over_limit: int  # the oldest ones left out because they are more than `limit`
    no_room: int  # then the oldest ones left out to fit the context window
    limit: int  # the most earlier turns read
    model_limit: bool  # `limit` is the model's (the most it was trained on), not this module's MAX_TURNS
    context_length: int
    max_new_tokens: int

    @property
    def kept(self) -> int:
        return self.turns - self.over_limit - self.no_room

    def notice(self) -> str:
        """What was left out of the prompt and why, in a sentence or two; empty when nothing was."""
        said = []
        if self.over_limit and self.model_limit and self.limit == 0:
            said.append("This model was trained on single questions, not conversations: "
                        f"{turns_were(self.over_limit, 'earlier')} left out of its prompt.")
        elif self.over_limit:
            why = (f"This model was trained on conversations of up to {self.limit} earlier "
                   f"turn{'s' * (self.limit != 1)}" if self.model_limit
                   else f"The prompt holds at most the last {self.limit} earlier turns")
            said.append(f"{why}: {turns_were(self.over_limit, 'oldest')} left out of its prompt.")
        if self.no_room:
            fit = (f"To fit the model's context of {self.context_length} tokens ({self.max_new_tokens} kept for "
                   "the reply)")
            if not self.kept:
                said.append(f"{fit}, no earlier turn was kept: the model reads your message alone.")
            elif self.over_limit:
                said.append(f"{fit}, {turns_were(self.no_room, 'more')} left out.")
            else:
                said.append(f"{fit}, {turns_were(self.no_room, 'oldest')} left out of its prompt.")
        return " ".join(said)


def trained_turns(meta: dict[str, Any]) -> int | None:
    """The most earlier turns the model was trained on (its `chat_turns`), None when not recorded."""
    turns = meta.get("chat_turns")
    return turns if isinstance(turns, int) and not isinstance(turns, bool) and turns >= 0 else None


def _checked(history: Any, message: Any, tokenizer: Tokenizer, context_length: int, max_new_tokens: int
             ) -> tuple[str, int, int]:
    """(the message stripped, the prompt's token budget, the most characters that could fit it); a message that is
    empty or too long, or a history that is no list, is refused in a sentence before anything is encoded."""
    if not isinstance(message, str) or not message.strip():
        raise ValueError("The message is empty: type something first.")
    if history is not None and not isinstance(history, (list, tuple)):
        raise ValueError(f"The conversation must be a list of messages, got {type(history).__name__}.")
    message = message.strip()
    budget = context_length - max_new_tokens
    if budget <= 0:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) must be below the context length ({context_length})")
    most_chars = budget * tokenizer.longest_token_bytes  # more characters than this are more than `budget` tokens
    if len(message) > most_chars:
        raise ValueError(f"The message is too long for this model: {len(message):,} characters, and its prompt "
                         f"has room for {budget} tokens (a context of {context_length}, less {max_new_tokens} for "
                         "the reply). Shorten it.")
    return message, budget, most_chars


def _recent(history: Sequence[Any]) -> tuple[Sequence[Any], Sequence[Any]]:
    """(the messages past the last MAX_MESSAGES, those last ones), a turn cut in two by the cap counted with the
    older ones."""
    older, recent = history[:-MAX_MESSAGES], history[-MAX_MESSAGES:]
    if older:
        while recent and not (isinstance(recent[0], dict) and recent[0].get("role") == "user"):
            recent = recent[1:]
    return older, recent


def build_chat_prompt(history: Sequence[dict], message: str, tokenizer: Tokenizer, context_length: int,
                      max_new_tokens: int, max_turns: int | None = None) -> ChatPrompt:
    """One Alpaca prompt for a conversation: the new message is the instruction, earlier turns the input.

    Only the last `max_turns` turns (a user message and its replies) are read, at most `MAX_TURNS`,
    and the oldest of those are dropped, whole turns as the instruction data drops them, until prompt
    + `max_new_tokens` fit the context window. Nothing is encoded before the history and the message
    are cut to what could fit (a token holds at most the characters of the longest in the vocabulary),
    and the prompt is encoded once: each turn starts a line, and GPT-2's pre-tokenizer splits at a
    newline before a letter, so the tokens from a turn on are those the prompt keeps when the turns
    before it are dropped.
    """
    message, budget, most_chars = _checked(history, message, tokenizer, context_length, max_new_tokens)
    older, recent = _recent(history or [])
    turns = chat_turns(recent)
    n_turns = sum(isinstance(m, dict) and m.get("role") == "user" for m in older) + len(turns)
    limit = MAX_TURNS if max_turns is None else min(max_turns, MAX_TURNS)
    turns = turns[-limit:] if limit else []
    room: list[list[str]] = []
    chars = 0
    for turn in reversed(turns):  # the newest turns whose characters could fit
        chars += sum(len(line) + 1 for line in turn)
        if chars > most_chars:
            break
        room.insert(0, turn)
    fold = functools.partial(ChatPrompt, turns=n_turns, over_limit=n_turns - len(turns), limit=limit,
                             model_limit=max_turns is not None and max_turns <= MAX_TURNS,
                             context_length=context_length, max_new_tokens=max_new_tokens)
    if room:
        lines = [line for turn in room for line in turn]
        full = format_prompt({"instruction": message, "input": "\n".join(lines)})
        head = len(format_input({"instruction": message, "input": "x"})) - 1  # where the first turn starts
        starts = [head]
        for turn in room[:-1]:
            starts.append(starts[-1] + sum(len(line) + 1 for line in turn))
        token_starts = [piece.start for piece in tokenizer.pieces(full)]
        n_head = bisect.bisect_left(token_starts, head)
        for dropped, start in enumerate(starts):  # the tokens kept when the turns before `start` are dropped
            if n_head + len(token_starts) - bisect.bisect_left(token_starts, start) <= budget:
                prompt = full[:head] + full[start:]
                if len(tokenizer.encode(prompt)) <= budget:  # a check: the count above is exact for BPE
                    return fold(text=prompt, no_room=len(turns) - len(room) + dropped)
    bare = format_prompt({"instruction": message, "input": ""})
    n_tokens = len(tokenizer.encode(bare))
    if n_tokens <= budget:
        return fold(text=bare, no_room=len(turns))
    raise ValueError(f"The message is too long for this model: its prompt takes {n_tokens:,} tokens, and {budget} "
                     f"fit (a context of {context_length}, less {max_new_tokens} for the reply). Shorten it.")


# What a chat template is handed beside the messages: Qwen3's switches its reasoning block off (the reply then
# comes at once); templates that do not know the variable ignore it.
TEMPLATE_SWITCHES = {"enable_thinking": False}


def has_chat_template(tokenizer: Tokenizer | None) -> bool:
    """Whether the tokenizer brings a chat template (a Hub instruct model's)."""
    return getattr(tokenizer, "chat_template", None) is not None


def render_template(tokenizer: Tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """Role/content messages as the tokenizer's chat template writes them for the model to answer: the assistant's
    header after them (`add_generation_prompt`), Qwen3's reasoning block switched off (`TEMPLATE_SWITCHES`)."""
    return tokenizer.render_chat(list(messages), add_generation_prompt=True, **TEMPLATE_SWITCHES)


def build_template_prompt(history: Sequence[dict], message: str, tokenizer: Tokenizer, context_length: int,
                          max_new_tokens: int) -> ChatPrompt:
    """The conversation rendered by the tokenizer's chat template: the earlier turns (at most `MAX_TURNS`) and the
    new message as role/content messages, with the assistant's header after them (`add_generation_prompt`).

    The oldest turns are dropped, whole, until the prompt and `max_new_tokens` fit the context window; the
    prompt is encoded with its special tokens read as such, as transformers' `apply_chat_template` does.
    """
    message, budget, most_chars = _checked(history, message, tokenizer, context_length, max_new_tokens)
    older, recent = _recent(history or [])
    turns = turn_messages(recent)
    n_turns = sum(isinstance(m, dict) and m.get("role") == "user" for m in older) + len(turns)
    turns = turns[-MAX_TURNS:]
    room = turns
    while sum(len(m["content"]) for turn in room for m in turn) > most_chars:  # could never fit: not rendered
        room = room[1:]
    fold = functools.partial(ChatPrompt, turns=n_turns, over_limit=n_turns - len(turns), limit=MAX_TURNS,
                             model_limit=False, context_length=context_length, max_new_tokens=max_new_tokens)
    for dropped in range(len(room) + 1):
        kept = [m for turn in room[dropped:] for m in turn]
        text = render_template(tokenizer, [*kept, {"role": "user", "content": message}])
        n_tokens = len(tokenizer.encode(text, allow_special=True))
        if n_tokens <= budget:
            return fold(text=text, no_room=len(turns) - len(room) + dropped)
    raise ValueError(f"The message is too long for this model: its prompt takes {n_tokens:,} tokens, and {budget} "
                     f"fit (a context of {context_length}, less {max_new_tokens} for the reply). Shorten it.")


def respond_in_template(model: GPTModel, tokenizer: Tokenizer, prompt: str, cfg: SamplingConfig) -> Iterator[str]:
    """The growing reply to a prompt a chat template wrote: the tokens after it, until one of the stop ids."""
    ids: list[int] = []
    shown = ""
    for token in stream(model, tokenizer.encode(prompt, allow_special=True), cfg, eot_id=tokenizer.stop_ids,
                        vocab_size=tokenizer.n_vocab):
        ids.append(token)
        raw = tokenizer.decode(ids)
        if raw.endswith("\ufffd"):
            continue  # the token ends inside a UTF-8 character: wait for the rest
        if raw.strip() != shown:
            shown = raw.strip()
            yield shown


def fold_chat(checkpoint: Checkpoint, history: Sequence[dict], message: str,
              sampling_cfg: SamplingConfig) -> ChatPrompt:
    """The conversation as the prompt `chat_stream` sends, in the format the model reads (`chat_format`): rendered
    by its chat template, or one Alpaca prompt read to the most earlier turns the model was trained on (its
    `chat_turns`); with what was left out."""
    tokenizer, context = checkpoint.tokenizer, checkpoint.model.cfg.context_length
    if chat_format(checkpoint.meta, tokenizer) == TEMPLATE_FORMAT:
        return build_template_prompt(history, message, tokenizer, context, sampling_cfg.max_new_tokens)
    return build_chat_prompt(history, message, tokenizer, context, sampling_cfg.max_new_tokens,
                             trained_turns(checkpoint.meta))


def chat_prompt(checkpoint: Checkpoint, history: Sequence[dict], message: str, sampling_cfg: SamplingConfig) -> str:
    """The exact prompt `chat_stream` sends for this conversation."""
    return fold_chat(checkpoint, history, message, sampling_cfg).text


def chat_stream(checkpoint: Checkpoint, history: Sequence[dict], message: str,
                sampling_cfg: SamplingConfig) -> Iterator[str]:
    """The assistant's reply to `message` after `history` (role/content dicts), as growing text."""
    prompt = chat_prompt(checkpoint, history, message, sampling_cfg)
    reply = respond_in_template if chat_format(checkpoint.meta, checkpoint.tokenizer) == TEMPLATE_FORMAT else respond
    yield from reply(checkpoint.model, checkpoint.tokenizer, prompt, replace(sampling_cfg, stop_at_eot=True))


# -- which prompt a model reads, and a text for it outside the Chat tab (Generate, Compare, Surprisal, the lens) --

CHAT_PROMPT_FORMAT = "alpaca"  # the `prompt_format` an instruction finetune records (`gpt.instruct.runs`)
TEMPLATE_FORMAT = "chat_template"  # a model that reads its tokenizer's chat template (a Hub instruct model)
_TEMPLATE_MARK = "\x00message\x00"  # a message no one types: where the user's text sits in a rendered template


def chat_format(meta: dict | None, tokenizer: Tokenizer | None = None) -> str | None:
    """The prompt format a model was tuned to read, by one rule: the format its metadata records (every
    instruction finetune records `prompt_format`, "alpaca" here, whatever its base: a Hub instruct model finetuned
    on Alpaca data keeps its tokenizer and chat template, yet answers in Alpaca), else its tokenizer's chat template
    where it brings one (TEMPLATE_FORMAT), else None: a plain language model."""
    recorded = meta.get("prompt_format") if isinstance(meta, dict) else None
    if isinstance(recorded, str) and recorded:
        return recorded
    return TEMPLATE_FORMAT if has_chat_template(tokenizer) else None


def is_chat_model(meta: dict | None, tokenizer: Tokenizer | None = None) -> bool:
    """Whether a model was tuned to read a chat prompt (`chat_format`): handed bare text, it writes gibberish (an
    Alpaca model learnt to write after `### Response:`), so whatever sends it text must wrap it first
    (`wrap_in_chat_prompt`)."""
    return chat_format(meta, tokenizer) in (CHAT_PROMPT_FORMAT, TEMPLATE_FORMAT)


def template_tail(tokenizer: Tokenizer) -> str:
    """What a chat template writes after one user message (its end, the assistant's header), stripped."""
    rendered = render_template(tokenizer, [{"role": "user", "content": _TEMPLATE_MARK}])
    return rendered.rpartition(_TEMPLATE_MARK)[2].strip()


def is_chat_prompt(text: str, tokenizer: Tokenizer | None = None) -> bool:
    """Whether the text is a chat prompt already (the Alpaca response header, or what the tokenizer's chat template
    writes after a message): wrapping it again would nest two."""
    if RESPONSE_HEADER.strip() in text:
        return True
    if not has_chat_template(tokenizer):
        return False
    tail = template_tail(tokenizer)
    return bool(tail) and tail in text


def message_prompt(meta: dict | None, tokenizer: Tokenizer | None, text: str) -> str:
    """A model's chat prompt for one message: the Alpaca prompt with the text as its instruction, or the text as
    one user message in the model's chat template (what the Chat tab sends for a first message); the text as it
    is for a plain language model."""
    fmt = chat_format(meta, tokenizer)
    if fmt == CHAT_PROMPT_FORMAT:
        return format_prompt({"instruction": text.strip(), "input": ""})
    if fmt == TEMPLATE_FORMAT:
        return render_template(tokenizer, [{"role": "user", "content": text.strip()}])
    return text


def wrap_in_chat_prompt(meta: dict | None, text: str, wrap: bool = True, tokenizer: Tokenizer | None = None) -> str:
    """The text as the model should read it: a chat model's prompt for one message (`message_prompt`) when `wrap`
    is asked for; a plain language model, or a text that is a chat prompt already, reads the text as it is."""
    if wrap and is_chat_model(meta, tokenizer) and not is_chat_prompt(text, tokenizer):
        return message_prompt(meta, tokenizer, text)
    return text


def reads_special_tokens(meta: dict | None, tokenizer: Tokenizer | None, text: str) -> bool:
    """Whether the model reads the text's special tokens as such: a prompt in its chat template (`<|im_start|>`)
    is encoded as `apply_chat_template` encodes it; any other text's special-looking strings are plain text."""
    return chat_format(meta, tokenizer) == TEMPLATE_FORMAT and is_chat_prompt(text, tokenizer)
