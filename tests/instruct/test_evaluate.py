"""Scoring instruction models: the metrics on known pairs, the report, generation for scoring, the judge."""

from __future__ import annotations

import pytest

from gpt.checkpoint import WEIGHTS_FILE, load_checkpoint
from gpt.files import SHIPPED_MODELS
from gpt.generate import SamplingConfig, generate
from gpt.instruct import evaluate as evaluate_module
from gpt.instruct.data import SHIPPED_DATA, load_entries, split_entries
from gpt.instruct.evaluate import (
    JudgeUnavailableError,
    conversation_responses,
    evaluate_instructions,
    exact_match,
    format_report,
    format_task_report,
    generate_responses,
    load_model_eval,
    ollama_scores,
    rouge_l,
    save_model_eval,
    summarize,
    token_f1,
)
from gpt.instruct.prompt import format_prompt
from tests.helpers import LocalServer

SHIPPED_INSTRUCT = SHIPPED_MODELS / "instruct"


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
    report = summarize(entries, ["42.", "a b c x y"])
    assert report["exact_match_short"] == 100.0
    assert report["rouge_l_long"] == pytest.approx(60.0)
    assert report["score"] == pytest.approx(80.0)
    assert report["tasks"]["definition"]["n"] == 1 and report["tasks"]["definition"]["score"] == pytest.approx(60.0)
    assert report["tasks"]["arithmetic"]["right"] == [{"instruction": "q", "input": "", "reference": "42",
                                                       "response": "42."}]
    with pytest.raises(ValueError):
        summarize(entries, ["42."])  # a missing response is an error, not a shorter report


def test_held_out_entries_whose_fact_training_saw_are_scored_apart():
    entries = [{"instruction": "7 x 12 =", "input": "", "output": "84", "task": "multiplication", "fact": "mul:7x12"},
               {"instruction": "What is 3 times 4?", "input": "", "output": "12", "task": "multiplication",
                "fact": "mul:3x4"},
               {"instruction": "Plural of mouse?", "input": "", "output": "mice", "task": "plural",
                "fact": "plural:mouse"},
               {"instruction": "Plural of goose?", "input": "", "output": "geese", "task": "plural",
                "fact": "plural:goose"}]
    report = summarize(entries, ["84", "7", "mice", "geese"], seen_facts={"mul:7x12", "mul:3x4", "plural:mouse"})
    mul, plural = report["tasks"]["multiplication"], report["tasks"]["plural"]
    assert (mul["seen"], mul["n_unseen"], mul["score"]) == (100.0, 0, 50.0) and mul["unseen_score"] != \
        mul["unseen_score"]  # NaN: no unseen entries
    assert (plural["seen"], plural["n_unseen"], plural["unseen_score"]) == (50.0, 1, 100.0)
    assert (report["seen"], report["n_unseen"], report["unseen_score"], report["exact_match"]) == (75.0, 1, 100.0, 75.0)
    assert mul["wrong"][0]["response"] == "7"
    table = format_task_report(report)
    assert "| multiplication | 2 | 50.0 | 50.0 | 100% | 0 | – |" in table
    assert "| plural | 2 | 100.0 | 100.0 | 50% | 1 | 100.0 |" in table
    assert table.splitlines()[-1].startswith("| all | 4 | 75.0 | 75.0 | 75% | 1 | 100.0 |")
    assert summarize(entries[:1], ["84"])["seen"] == 0.0  # no training facts given: nothing counts as seen


def test_a_model_eval_is_only_read_back_for_the_weights_it_measured(tmp_path):
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights")
    assert load_model_eval(tmp_path) is None
    report = summarize([{"instruction": "q", "input": "", "output": "42", "task": "addition"}], ["42"])
    path = save_model_eval(tmp_path, report, data="shipped", split_seed=123)
    assert path == tmp_path / "eval.json"
    record = load_model_eval(tmp_path)
    assert record["tasks"]["addition"]["score"] == 100.0 and record["data"] == "shipped" and len(
        record["weights_sha256"]) == 64
    (tmp_path / WEIGHTS_FILE).write_bytes(b"other weights")
    assert load_model_eval(tmp_path) is None


def test_evaluation_reports_every_entry_and_calls_back(entries, make_checkpoint):
    checkpoint = make_checkpoint()
    seen = []
    responses = generate_responses(checkpoint, entries[:4], max_new_tokens=3, on_response=seen.append)
    assert seen == responses and len(responses) == 4
    report = evaluate_instructions(checkpoint, entries[:4], max_new_tokens=3)
    assert report["n"] == 4 and len(report["examples"]) == 4
    assert [x["response"] for x in report["examples"]] == responses  # greedy: the same responses again
    table = format_report({"a": report, "b": report})
    assert table.splitlines()[0] == "| | a | b |" and "| score (EM short / ROUGE-L long) |" in table


def test_conversations_ask_the_same_questions_after_the_model_s_own_replies(entries, make_checkpoint, monkeypatch):
    checkpoint = make_checkpoint()
    questions = [e for e in entries if not e["input"]][:7]
    seen: list[str] = []
    report = evaluate_instructions(checkpoint, questions, max_new_tokens=3, conversation_turns=2,
                                   on_response=seen.append)
    assert len(seen) == 14 and report["single"]["n"] == report["conversation"]["n"] == 7
    assert report["conversation"]["turns"] == 2
    replies = conversation_responses(checkpoint, questions, turns=2, max_new_tokens=3)
    assert replies == seen[7:]  # greedy: the same replies again
    sent: list[str] = []
    original = evaluate_module.chat_prompt

    def spy(ckpt, history, message, cfg):  # what each question is sent after
        sent.append(" | ".join(m["content"] for m in history))
        return original(ckpt, history, message, cfg)

    monkeypatch.setattr(evaluate_module, "chat_prompt", spy)
    conversation_responses(checkpoint, questions, turns=2, max_new_tokens=3)
    first_chat = [f"{q['instruction']} | {r}" for q, r in zip(questions[:2], replies[:2], strict=True)]
    assert sent[:4] == ["", first_chat[0], " | ".join(first_chat), ""]  # three to a chat, then a new one


def test_ollama_judge_scores_and_reports_a_missing_server(entries):
    with LocalServer(reply="85") as server:
        assert ollama_scores(entries[:2], ["5", "6"], url=server.url + "/api/chat") == [85, 85]
        assert server.requests == 2
    with pytest.raises(JudgeUnavailableError, match="ollama serve"):
        ollama_scores(entries[:1], ["5"], url=server.url + "/api/chat", timeout=2)


@pytest.mark.skipif(not (SHIPPED_INSTRUCT / "config.json").is_file(), reason="no shipped instruct model yet")
def test_shipped_instruct_model_is_small_and_answers_briefly():
    assert sum(f.stat().st_size for f in SHIPPED_INSTRUCT.iterdir()) <= 12_000_000
    assert (SHIPPED_INSTRUCT / "MODEL_CARD.md").is_file()
    checkpoint = load_checkpoint(SHIPPED_INSTRUCT)
    test = split_entries(load_entries(SHIPPED_DATA), checkpoint.meta["split_seed"]).test
    assert len(test) == checkpoint.meta["n_test"]  # measured on this very split
    cfg = SamplingConfig(max_new_tokens=64, temperature=0.0)
    prompts = [checkpoint.tokenizer.encode(format_prompt(e)) for e in test[:10]]
    lengths = [len(generate(checkpoint.model, ids, cfg, checkpoint.tokenizer.eot_id)) for ids in prompts]
    assert sum(n < 64 for n in lengths) >= 8  # it answers briefly and ends with end-of-text
