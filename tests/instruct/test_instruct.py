"""Instruction finetuning: prompt format, collate masking, response extraction, training, metrics, chat, data."""

from __future__ import annotations

import gzip
import http.server
import json
import re
import threading
from fractions import Fraction

import pytest
import torch

from gpt import instruct, instruct_data
from gpt.__main__ import main
from gpt.bpe import BytePairEncoder
from gpt.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from gpt.config import GPTConfig
from gpt.generate import SamplingConfig
from gpt.instruct import (IGNORE_INDEX, InstructionDataset, FinetuneConfig, build_chat_prompt, chat_prompt,
                          chat_stream, collate, exact_match, extract_response, finetune, format_input,
                          format_prompt, rouge_l, token_f1)
from gpt.model import GPTModel

WORDNET = instruct_data.WORDNET_DIR
ENTRIES = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": str(a + b)} for a in range(2, 9) for b in range(3, 7)
] + [
    {"instruction": "Give a synonym for \"fast\".", "input": "", "output": "quick"},
    {"instruction": "Sort the following words alphabetically.", "input": "pear, apple, fig",
     "output": "apple, fig, pear"},
]


@pytest.fixture(scope="module")
def tokenizer():
    text = "\n".join(format_prompt(e) + e["output"] for e in ENTRIES) + " User: Assistant: hello there"
    return BytePairEncoder.train(text, 400).to_tokenizer("instruct-test")


def small_checkpoint(tokenizer, context_length: int = 96, tie_weights: bool = True) -> Checkpoint:
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny", vocab_size=tokenizer.n_vocab, context_length=context_length, tie_weights=tie_weights)
    return Checkpoint(GPTModel(cfg).eval(), tokenizer, {})


# -- prompt format -------------------------------------------------------------------------------

def test_format_input_with_and_without_input():
    without = format_input({"instruction": "Name a colour.", "input": "", "output": "red"})
    assert without.startswith("Below is an instruction that describes a task. Write a response that "
                              "appropriately completes the request.\n\n### Instruction:\nName a colour.")
    assert "### Input:" not in without and "### Response:" not in without
    with_input = format_input({"instruction": "Sort.", "input": "b, a", "output": "a, b"})
    assert with_input.endswith("### Instruction:\nSort.\n\n### Input:\nb, a")
    assert format_prompt({"instruction": "Sort.", "input": "b, a"}).endswith("b, a\n\n### Response:\n")


def test_dataset_splits_prompt_and_response_where_the_full_text_would(tokenizer):
    dataset = InstructionDataset(ENTRIES, tokenizer)
    for entry, (ids, prompt_len) in zip(ENTRIES, dataset):
        assert ids == tokenizer.encode(format_prompt(entry) + entry["output"])
        assert tokenizer.decode(ids[prompt_len:]) == entry["output"]


# -- collate -------------------------------------------------------------------------------------

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


# -- response extraction -------------------------------------------------------------------------

def test_extract_response():
    prompt = format_prompt({"instruction": "What is 2 + 3?", "input": ""})
    assert extract_response(prompt + "5<|endoftext|>garbage") == "5"
    assert extract_response(prompt + " five \n\n### Instruction:\nWhat is 1 + 1?") == "five"
    assert extract_response("  plain answer \n") == "plain answer"


# -- metrics on known pairs ----------------------------------------------------------------------

def test_metrics_on_known_pairs():
    assert exact_match("Pride and Prejudice.", "pride and prejudice") == 1.0
    assert exact_match("Pride", "Pride and Prejudice") == 0.0
    # 3 of 3 predicted words are right, 3 of 4 reference words are found: F1 = 2*1*0.75/1.75
    assert token_f1("the cat sat", "the cat sat down") == pytest.approx(6 / 7)
    assert token_f1("dog", "the cat") == 0.0
    # LCS of "a b c d" and "a c d e" is "a c d": precision = recall = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    # word order matters to ROUGE-L but not to token F1
    assert rouge_l("d c b a", "a b c d") == pytest.approx(0.25)
    assert token_f1("d c b a", "a b c d") == 1.0


def test_summary_scores_short_answers_by_exact_match_and_long_by_rouge():
    entries = [{"instruction": "q", "input": "", "output": "42", "task": "arithmetic"},
               {"instruction": "q", "input": "", "output": "a b c d e", "task": "definition"}]
    report = instruct.summarize(entries, ["42.", "a b c x y"])
    assert report["exact_match_short"] == 100.0
    assert report["rouge_l_long"] == pytest.approx(60.0)
    assert report["score"] == pytest.approx(80.0)
    assert report["tasks"]["definition"] == {"n": 1, "score": pytest.approx(60.0)}


# -- training ------------------------------------------------------------------------------------

def test_short_training_run_lowers_the_loss_and_writes_a_checkpoint(tokenizer, tmp_path):
    checkpoint = small_checkpoint(tokenizer)
    val_loader = instruct.make_loader(ENTRIES, tokenizer, 96, 8, False, shuffle=False)
    before = instruct.loader_loss(checkpoint.model, val_loader)
    cfg = FinetuneConfig(epochs=3, batch_size=4, lr=3e-3, autocast=False)
    result = finetune(checkpoint, ENTRIES, ENTRIES[:8], cfg, tmp_path / "ft", meta={"data": "test"})
    after = instruct.loader_loss(checkpoint.model, val_loader)
    assert after < before - 1.0
    assert result.train_losses[-1] < result.train_losses[0]
    saved = load_checkpoint(tmp_path / "ft")
    assert saved.meta["epochs_done"] == 3 and saved.meta["data"] == "test"
    assert len(saved.meta["train_losses"]) == 3


# -- chat ----------------------------------------------------------------------------------------

HISTORY = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"},
           {"role": "user", "content": "Give a synonym for \"fast\"."}, {"role": "assistant", "content": "quick"}]


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



def test_chat_history_with_typed_content_parts(tokenizer):
    """Gradio 6 (and OpenAI-style clients) send content as a list of typed parts: only the text is read."""
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "5"}, {"type": "file", "file": {"path": "x.png"}}]},
             {"role": "user", "content": [{"type": "file", "file": {"path": "y.png"}}]}]
    prompt = build_chat_prompt(parts, "And 4 + 4?", tokenizer, context_length=400, max_new_tokens=20)
    assert prompt == format_prompt({"instruction": "And 4 + 4?", "input": "User: What is 2 + 3?\nAssistant: 5"})

def rigged_checkpoint(tokenizer, winner: int) -> Checkpoint:
    """A model whose every next token is `winner`: zeroed norm, bias pointing at one output row."""
    checkpoint = small_checkpoint(tokenizer, tie_weights=False)
    model = checkpoint.model
    with torch.no_grad():
        model.final_norm.weight.zero_()
        model.final_norm.bias.fill_(1.0)
        model.out_head.weight.zero_()
        model.out_head.weight[winner] = 1.0
    return checkpoint


def test_chat_stream_grows_the_response_and_stops_at_end_of_text(tokenizer):
    letter = tokenizer.encode("a")[0]
    checkpoint = rigged_checkpoint(tokenizer, letter)
    cfg = SamplingConfig(max_new_tokens=4, temperature=0.0)
    assert list(chat_stream(checkpoint, HISTORY, "Say a.", cfg)) == ["a", "aa", "aaa", "aaaa"]
    assert chat_prompt(checkpoint, HISTORY, "Say a.", cfg).endswith("### Instruction:\nSay a.\n\n### Input:\n"
                                                                     "User: What is 2 + 3?\nAssistant: 5\nUser: Give "
                                                                     "a synonym for \"fast\".\nAssistant: quick\n\n"
                                                                     "### Response:\n")
    silent = rigged_checkpoint(tokenizer, tokenizer.eot_id)
    assert list(chat_stream(silent, [], "Say a.", SamplingConfig(max_new_tokens=10, temperature=0.0))) == []


def test_generation_stops_when_the_model_starts_a_new_section(tokenizer, monkeypatch):
    """Generation ends at the new section itself: no tokens are drawn past it."""
    script = tokenizer.encode("cats\n\n### Instruction:\nName a dog.")
    drawn = []

    def scripted_stream(model, prompt_ids, cfg, eot_id=None, vocab_size=None):
        for token in script:
            drawn.append(token)
            yield token

    monkeypatch.setattr(instruct, "stream", scripted_stream)
    texts = list(instruct.respond(None, tokenizer, "prompt", SamplingConfig(max_new_tokens=50)))
    assert texts[-1] == "cats"
    assert tokenizer.decode(drawn).endswith("###") and len(drawn) < len(script)


# -- data ----------------------------------------------------------------------------------------

def test_split_is_seeded_85_10_5_and_disjoint():
    entries = [{"instruction": f"q{i}", "input": "", "output": str(i)} for i in range(200)]
    train, test, val = instruct_data.split_entries(entries, seed=1)
    assert (len(train), len(test), len(val)) == (170, 20, 10)
    assert instruct_data.split_entries(entries, seed=1) == (train, test, val)
    assert instruct_data.split_entries(entries, seed=2)[0] != train
    ids = [e["instruction"] for e in train + test + val]
    assert sorted(ids) == sorted(e["instruction"] for e in entries)


def test_deduplicate_drops_prompts_with_conflicting_answers():
    entries = [{"instruction": "A?", "input": "", "output": "1"}, {"instruction": "a?", "input": "", "output": "1"},
               {"instruction": "B?", "input": "", "output": "1"}, {"instruction": "B?", "input": "", "output": "2"}]
    assert instruct_data.deduplicate(entries) == [entries[0]]


def test_inflection_rules():
    assert [instruct_data.regular_plural(w) for w in ("box", "city", "day", "piano", "cat")] == \
        ["boxes", "cities", "days", None, "cats"]
    assert [instruct_data.regular_past(w) for w in ("bake", "carry", "play", "stop", "walk")] == \
        ["baked", "carried", "played", None, "walked"]
    assert [instruct_data.regular_ing(w) for w in ("bake", "die", "see", "walk")] == \
        ["baking", "dying", "seeing", "walking"]
    assert instruct_data.format_number(Fraction(5, 2)) == "2.5"
    assert instruct_data.format_number(Fraction(1, 3)) is None


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_builder_answers_are_right_and_unique():
    entries = instruct_data.build_dataset(instruct_data.PRESETS["tiny"])
    assert len(entries) > 200
    assert len({(e["instruction"].lower(), e["input"].lower()) for e in entries}) == len(entries)
    for e in entries:
        m = re.fullmatch(r"What is (\d+) (\+|-|times|divided by) (\d+)\?", e["instruction"])
        if m:
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            assert int(e["output"]) == {"+": a + b, "-": a - b, "times": a * b, "divided by": a // b}[op]
            if op == "divided by":
                assert a % b == 0
        if e["task"] == "rewrite" and e["instruction"].startswith("Sort"):
            assert e["output"].split(", ") == sorted(e["input"].split(", "))
    tasks = {e["task"] for e in entries}
    assert {"definition", "synonym", "antonym", "arithmetic", "conversion", "bible book", "austen novel"} <= tasks
    assert {"instruction": 'What is the opposite of "good"?', "input": "", "output": "bad", "task": "antonym"} \
        in instruct_data.build_dataset(instruct_data.BuildConfig(n_common_words=100, antonyms=10_000))


def test_shipped_dataset_is_valid_and_small():
    path = instruct_data.SHIPPED_DATA
    assert path.stat().st_size < 3_000_000
    entries = instruct_data.load_entries(path)
    assert len(entries) >= 3000
    assert len({(e["instruction"].lower(), e["input"].lower()) for e in entries}) == len(entries)
    assert all(e["output"].strip() and e["task"] for e in entries)


def test_save_and_load_entries_round_trip(tmp_path):
    path = instruct_data.save_entries(ENTRIES, tmp_path / "d.json.gz")
    assert instruct_data.load_entries(path) == ENTRIES
    assert gzip.decompress(path.read_bytes()).startswith(b"[\n{")
    (tmp_path / "bad.json").write_text('[{"input": "no instruction"}]')
    with pytest.raises(ValueError, match="entry 0"):
        instruct_data.load_entries(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        instruct_data.load_entries(tmp_path / "missing.json")


class _Server:
    """A local HTTP server in a thread: GET serves `body`, POST answers like Ollama's /api/chat."""

    def __init__(self, body: bytes = b"", reply: str = ""):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                outer.requests += 1
                json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps({"message": {"role": "assistant", "content": reply}}).encode())

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_caches_the_book_data(tmp_path):
    server = _Server(json.dumps(ENTRIES).encode())
    cache = tmp_path / "instruction-data.json"
    try:
        assert instruct_data.download_instruction_data(server.url + "/data.json", cache) == cache
    finally:
        server.close()
    assert instruct_data.load_entries(cache) == ENTRIES
    assert instruct_data.download_instruction_data(server.url + "/data.json", cache) == cache  # server gone: cache
    assert server.requests == 1
    with pytest.raises(instruct_data.InstructDataUnavailableError, match="cannot download"):
        instruct_data.download_instruction_data(server.url + "/data.json", tmp_path / "other.json", timeout=2)


def test_ollama_judge_scores_and_reports_a_missing_server():
    server = _Server(reply="85")
    try:
        assert instruct.ollama_scores(ENTRIES[:2], ["5", "6"], url=server.url + "/api/chat") == [85, 85]
    finally:
        server.close()
    with pytest.raises(instruct.JudgeUnavailableError, match="ollama serve"):
        instruct.ollama_scores(ENTRIES[:1], ["5"], url=server.url + "/api/chat", timeout=2)


def test_cli_finetunes_and_evaluates(tokenizer, tmp_path, capsys):
    base = small_checkpoint(tokenizer, context_length=128)
    save_checkpoint(base.model, tmp_path / "base", tokenizer)
    instruct_data.save_entries(ENTRIES * 2, tmp_path / "data.json.gz")
    out = tmp_path / "out"
    assert main(["finetune-instruct", "--model", str(tmp_path / "base"), "--data", str(tmp_path / "data.json.gz"),
                 "--epochs", "1", "--batch-size", "4", "--out", str(out), "--max-new-tokens", "8"]) == 0
    report = json.loads((out / "instruct_eval.json").read_text())
    assert len(report) == 2 and all(r["n"] == 6 for r in report.values())
    assert load_checkpoint(out).meta["n_train"] == 51
    assert "| score (EM short / ROUGE-L long) |" in capsys.readouterr().out
    assert main(["finetune-instruct", "--evaluate", str(out), "--data", str(tmp_path / "missing.json"),
                 "--out", str(out)]) == 2


def test_gpt2_models_come_from_the_weight_loader(tokenizer, monkeypatch):
    import gpt.weights

    loaded = []
    checkpoint = small_checkpoint(tokenizer)
    monkeypatch.setattr(gpt.weights, "load_pretrained", lambda name, **kw: loaded.append(name) or checkpoint)
    assert load_model("gpt2-small") is checkpoint and loaded == ["gpt2-small"]


SHIPPED_INSTRUCT = instruct_data.ASSETS / "models" / "instruct"


@pytest.mark.skipif(not (SHIPPED_INSTRUCT / "config.json").is_file(), reason="no shipped instruct model yet")
def test_shipped_instruct_model_is_small_and_answers_briefly():
    from gpt.generate import generate

    assert sum(f.stat().st_size for f in SHIPPED_INSTRUCT.iterdir()) <= 12_000_000
    assert (SHIPPED_INSTRUCT / "MODEL_CARD.md").is_file()
    checkpoint = load_checkpoint(SHIPPED_INSTRUCT)
    _, test, _ = instruct_data.split_entries(instruct_data.load_entries(instruct_data.SHIPPED_DATA))
    cfg = SamplingConfig(max_new_tokens=64, temperature=0.0)
    prompts = [checkpoint.tokenizer.encode(format_prompt(e)) for e in test[:10]]
    lengths = [len(generate(checkpoint.model, ids, cfg, checkpoint.tokenizer.eot_id)) for ids in prompts]
    assert sum(n < 64 for n in lengths) >= 8  # it answers briefly and ends with end-of-text
