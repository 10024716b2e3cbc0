"""The Alpaca prompt, reading the response back, and chat folded into one prompt."""

from __future__ import annotations

import pytest
import torch

from gpt.generate import SamplingConfig
from gpt.instruct import prompt as prompt_module
from gpt.instruct.prompt import (
    build_chat_prompt,
    chat_prompt,
    chat_stream,
    extract_response,
    format_input,
    format_prompt,
    message_text,
    respond,
)

HISTORY = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"},
           {"role": "user", "content": "Give a synonym for \"fast\"."}, {"role": "assistant", "content": "quick"}]


def test_format_input_with_and_without_input():
    without = format_input({"instruction": "Name a colour.", "input": "", "output": "red"})
    assert without.startswith("Below is an instruction that describes a task. Write a response that "
                              "appropriately completes the request.\n\n### Instruction:\nName a colour.")
    assert "### Input:" not in without and "### Response:" not in without
    with_input = format_input({"instruction": "Sort.", "input": "b, a", "output": "a, b"})
    assert with_input.endswith("### Instruction:\nSort.\n\n### Input:\nb, a")
    assert format_prompt({"instruction": "Sort.", "input": "b, a"}).endswith("b, a\n\n### Response:\n")


def test_extract_response():
    prompt = format_prompt({"instruction": "What is 2 + 3?", "input": ""})
    assert extract_response(prompt + "5<|endoftext|>garbage") == "5"
    assert extract_response(prompt + " five \n\n### Instruction:\nWhat is 1 + 1?") == "five"
    assert extract_response("  plain answer \n") == "plain answer"


def test_chat_prompt_folds_history_and_drops_the_oldest_turns(tokenizer):
    full = build_chat_prompt(HISTORY, "And 4 + 4?", tokenizer, context_length=400, max_new_tokens=20)
    assert full == format_prompt({"instruction": "And 4 + 4?", "input": "User: What is 2 + 3?\nAssistant: 5\n"
                                  "User: Give a synonym for \"fast\".\nAssistant: quick"})
    n_full = len(tokenizer.encode(full))
    cropped = build_chat_prompt(HISTORY, "And 4 + 4?", tokenizer, context_length=n_full + 19, max_new_tokens=20)
    assert "What is 2 + 3?" not in cropped and "Assistant: quick" in cropped
    assert len(tokenizer.encode(cropped)) <= n_full - 1
    bare = format_prompt({"instruction": "And 4 + 4?", "input": ""})
    assert build_chat_prompt(HISTORY, "And 4 + 4?", tokenizer, len(tokenizer.encode(bare)) + 20, 20) == bare
    with pytest.raises(ValueError, match="too long"):
        build_chat_prompt([], "And 4 + 4?", tokenizer, context_length=30, max_new_tokens=20)
    with pytest.raises(ValueError, match="empty"):
        build_chat_prompt([], "   ", tokenizer, context_length=300, max_new_tokens=20)
    with pytest.raises(ValueError, match="below the context length"):
        build_chat_prompt([], "Hi", tokenizer, context_length=20, max_new_tokens=20)


def test_chat_history_with_typed_content_parts(tokenizer):
    """Gradio 6 (and OpenAI-style clients) send content as a list of typed parts: only the text is read."""
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "5"},
                                               {"type": "file", "file": {"path": "x.png"}}]},
             {"role": "user", "content": [{"type": "file", "file": {"path": "y.png"}}]}]
    prompt = build_chat_prompt(parts, "And 4 + 4?", tokenizer, context_length=400, max_new_tokens=20)
    assert prompt == format_prompt({"instruction": "And 4 + 4?", "input": "User: What is 2 + 3?\nAssistant: 5"})
    assert message_text({"role": "user", "content": None}) == ""


def rigged(make_checkpoint, winner: int):
    """A model whose every next token is `winner`: zeroed norm, bias pointing at one output row."""
    checkpoint = make_checkpoint(tie_weights=False)
    model = checkpoint.model
    with torch.no_grad():
        model.final_norm.weight.zero_()
        model.final_norm.bias.fill_(1.0)
        model.out_head.weight.zero_()
        model.out_head.weight[winner] = 1.0
    return checkpoint


def test_chat_stream_grows_the_response_and_stops_at_end_of_text(tokenizer, make_checkpoint):
    checkpoint = rigged(make_checkpoint, tokenizer.encode("a")[0])
    cfg = SamplingConfig(max_new_tokens=4, temperature=0.0)
    assert list(chat_stream(checkpoint, HISTORY, "Say a.", cfg)) == ["a", "aa", "aaa", "aaaa"]
    assert chat_prompt(checkpoint, HISTORY, "Say a.", cfg).endswith("### Instruction:\nSay a.\n\n### Input:\n"
                                                                     "User: What is 2 + 3?\nAssistant: 5\nUser: Give "
                                                                     "a synonym for \"fast\".\nAssistant: quick\n\n"
                                                                     "### Response:\n")
    silent = rigged(make_checkpoint, tokenizer.eot_id)
    assert list(chat_stream(silent, [], "Say a.", SamplingConfig(max_new_tokens=10, temperature=0.0))) == []


def test_generation_stops_when_the_model_starts_a_new_section(tokenizer, monkeypatch):
    """Generation ends at the new section itself: no tokens are drawn past it."""
    script = tokenizer.encode("cats\n\n### Instruction:\nName a dog.")
    drawn = []

    def scripted_stream(model, prompt_ids, cfg, eot_id=None, vocab_size=None):
        for token in script:
            drawn.append(token)
            yield token

    monkeypatch.setattr(prompt_module, "stream", scripted_stream)
    texts = list(respond(None, tokenizer, "prompt", SamplingConfig(max_new_tokens=50)))
    assert texts[-1] == "cats"
    assert tokenizer.decode(drawn).endswith("###") and len(drawn) < len(script)



def dropping_one_turn_at_a_time(history, message, tokenizer, budget):
    """The old way, the reference: re-encode the whole prompt after each dropped turn."""
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in history]
    for start in range(len(lines) + 1):
        prompt = format_prompt({"instruction": message, "input": "\n".join(lines[start:])})
        if len(tokenizer.encode(prompt)) <= budget:
            return prompt
    return None


def test_a_long_chat_reads_only_its_last_turns_with_a_bounded_number_of_encodes(tokenizer, monkeypatch):
    """2,000 turns took 27.6 s when each dropped turn re-encoded the whole history; now a few encodes do."""
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"What is {i} + 3? turn {i}"}
               for i in range(2000)]
    last = history[-prompt_module.MAX_TURNS:]
    encode = tokenizer.encode
    calls = []
    monkeypatch.setattr(tokenizer, "encode", lambda text, *a, **kw: calls.append(len(text)) or encode(text, *a, **kw))
    prompt = build_chat_prompt(history, "And 4 + 4?", tokenizer, context_length=10_000, max_new_tokens=20)
    assert len(calls) <= 3
    assert prompt == dropping_one_turn_at_a_time(last, "And 4 + 4?", tokenizer, 10_000)  # the last 50 turns, all
    for context in (300, 200, 120):
        calls.clear()
        prompt = build_chat_prompt(history, "And 4 + 4?", tokenizer, context_length=context, max_new_tokens=20)
        assert len(calls) <= 3
        assert prompt == dropping_one_turn_at_a_time(last, "And 4 + 4?", tokenizer, context - 20)
        assert "turn 1999" in prompt or "### Input:" not in prompt
