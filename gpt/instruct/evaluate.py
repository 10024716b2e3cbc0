"""Scoring an instruction model on held-out entries, offline: exact match for short answers,
ROUGE-L for long ones, token F1 for all; optionally an LLM judge on a local Ollama server.

Most answers in the shipped data are a word or a number, where exact match is the honest measure;
definitions and facts are sentences, where word overlap in order (ROUGE-L) is. The split is per
entry, so a held-out question can ask a fact that training asked in other words (12 x 7 and "What
is 12 times 7?"); entries that carry a `fact` are therefore also scored apart by whether training
saw their fact, which tells recall from generalisation. A model's own report is kept beside it as
`eval.json`, which the app's Chat tab shows.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence, Set
from pathlib import Path
from typing import Any

import requests

from gpt.checkpoint import WEIGHTS_FILE, Checkpoint
from gpt.files import sha256_of, write_text_atomic
from gpt.generate import SamplingConfig
from gpt.instruct.data import Entry
from gpt.instruct.prompt import chat_prompt, format_input, format_prompt, respond

SHORT_ANSWER_WORDS = 3  # references this short are scored by exact match; longer ones by ROUGE-L
EXAMPLES_PER_TASK = 3  # right and wrong responses kept per task, to show what the model does
MODEL_EVAL_FILE = "eval.json"  # a model folder's own held-out report
OLLAMA_URL = "http://localhost:11434/api/chat"
JUDGE_PROMPT = ("Given the input `{prompt}` and correct output `{reference}`, score the model response "
                "`{response}` on a scale from 0 to 100, where 100 is the best score. Respond with the integer only.")


# -- metrics -------------------------------------------------------------------------------------

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


def summarize(entries: Sequence[Entry], predictions: Sequence[str], seen_facts: Set[str] = frozenset()
              ) -> dict[str, Any]:
    """Mean metrics overall, on short and long references, and per task (percentages).

    Per task also: its exact match on every entry, the share of entries whose `fact` is in
    `seen_facts` (the facts of the training entries), the score on the others (`unseen_score`, NaN
    when there are none), and a few right and wrong responses.
    """
    rows = [score(p, e["output"]) | {"task": e.get("task", "all"), "short": is_short(e["output"]),
                                     "seen": e.get("fact") in seen_facts, "entry": e, "response": p}
            for e, p in zip(entries, predictions, strict=True)]

    def mean(selected: list[dict], key: str) -> float:
        return round(100 * sum(r[key] for r in selected) / len(selected), 1) if selected else math.nan

    def examples(selected: list[dict]) -> list[dict[str, str]]:
        return [{"instruction": r["entry"]["instruction"], "input": r["entry"]["input"],
                 "reference": r["entry"]["output"], "response": r["response"]} for r in selected[:EXAMPLES_PER_TASK]]

    def stats(selected: list[dict]) -> dict[str, Any]:
        unseen = [r for r in selected if not r["seen"]]
        return {"n": len(selected), "score": mean(selected, "score"), "exact_match": mean(selected, "exact_match"),
                "seen": mean(selected, "seen"), "n_unseen": len(unseen), "unseen_score": mean(unseen, "score")}

    short = [r for r in rows if r["short"]]
    long = [r for r in rows if not r["short"]]
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    return {
        **stats(rows), "exact_match_short": mean(short, "exact_match"), "rouge_l_long": mean(long, "rouge_l"),
        "token_f1": mean(rows, "token_f1"), "n_short": len(short), "n_long": len(long),
        "tasks": {task: stats(rs) | {"right": examples([r for r in rs if r["score"] == 1]),
                                     "wrong": examples([r for r in rs if r["score"] < 1])}
                  for task, rs in sorted(by_task.items())},
    }


# -- generating and judging ----------------------------------------------------------------------

def generate_responses(checkpoint: Checkpoint, entries: Sequence[Entry], max_new_tokens: int = 64,
                       on_response: Callable[[str], None] | None = None) -> list[str]:
    """Greedy responses to the entries, each stopped at end-of-text; `on_response` sees each as it is done
    (the command line counts them on a progress bar)."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    responses = []
    for entry in entries:
        growing = deque(respond(checkpoint.model, checkpoint.tokenizer, format_prompt(entry), cfg), maxlen=1)
        text = growing[0] if growing else ""  # the last of the growing texts is the whole response
        responses.append(text)
        if on_response is not None:
            on_response(text)
    return responses


def conversation_responses(checkpoint: Checkpoint, entries: Sequence[Entry], turns: int, max_new_tokens: int = 64,
                           on_response: Callable[[str], None] | None = None) -> list[str]:
    """Greedy replies to the entries asked one after another, `turns + 1` questions to a conversation:
    each question is sent as the Chat tab sends it, after the earlier questions and the model's own
    replies to them, so a wrong or rambling reply stays in the history it reads next."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    responses: list[str] = []
    history: list[dict[str, str]] = []
    for i, entry in enumerate(entries):
        if i % (turns + 1) == 0:
            history = []
        prompt = chat_prompt(checkpoint, history, entry["instruction"], cfg)
        growing = deque(respond(checkpoint.model, checkpoint.tokenizer, prompt, cfg), maxlen=1)
        text = growing[0] if growing else ""
        history += [{"role": "user", "content": entry["instruction"]}, {"role": "assistant", "content": text}]
        responses.append(text)
        if on_response is not None:
            on_response(text)
    return responses


class JudgeUnavailableError(ValueError):
    """No Ollama server answered at the given address."""


def ollama_scores(entries: Sequence[Entry], responses: Sequence[str], model: str = "llama3",
                  url: str = OLLAMA_URL, timeout: float = 120) -> list[int | None]:
    """Scores 0-100 from an LLM judge on a local Ollama server (optional; the metrics above need none)."""
    scores: list[int | None] = []
    for entry, response in zip(entries, responses, strict=True):
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


def evaluate_instructions(checkpoint: Checkpoint, entries: Sequence[Entry], max_new_tokens: int = 64,
                          judge: str | None = None, on_response: Callable[[str], None] | None = None,
                          seen_facts: Set[str] = frozenset(), conversation_turns: int = 0) -> dict[str, Any]:
    """The `summarize` report of the model's greedy responses, the judge's mean if asked, and 5 examples.

    With `conversation_turns`, the entries without earlier turns are also scored on their own
    (`single`: one question per chat) and asked again one after another in conversations of
    `conversation_turns + 1` questions (`conversation`): the same questions, so the two compare.
    """
    responses = generate_responses(checkpoint, entries, max_new_tokens, on_response)
    report = summarize(entries, responses, seen_facts)
    if conversation_turns:
        singles = [(e, r) for e, r in zip(entries, responses, strict=True) if not e["input"]]
        questions = [e for e, _ in singles]
        report["single"] = summarize(questions, [r for _, r in singles], seen_facts)
        in_chats = conversation_responses(checkpoint, questions, conversation_turns, max_new_tokens, on_response)
        report["conversation"] = summarize(questions, in_chats, seen_facts) | {
            "turns": conversation_turns,  # and each question's score, so a prefix of the chats can be re-measured
            "scores": [round(score(r, e["output"])["score"], 3) for e, r in zip(questions, in_chats, strict=True)]}
    if judge:
        judged = [s for s in ollama_scores(entries, responses, judge) if s is not None]
        report["judge"] = {"model": judge, "mean": round(sum(judged) / len(judged), 1) if judged else math.nan}
    report["examples"] = [{"instruction": e["instruction"], "input": e["input"], "reference": e["output"],
                           "response": r} for e, r in list(zip(entries, responses, strict=True))[:5]]
    return report


def save_model_eval(folder: str | Path, report: dict[str, Any], **about: Any) -> Path:
    """Write a model's report beside its weights as `eval.json`, with the weights' sha256 (so that a
    reader can tell whether the scores are still those of the weights there) and `about` (data, split)."""
    folder = Path(folder)
    record = {"weights_sha256": sha256_of(folder / WEIGHTS_FILE), **about, **report}
    return write_text_atomic(folder / MODEL_EVAL_FILE, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def load_model_eval(folder: str | Path) -> dict[str, Any] | None:
    """The model folder's `eval.json`, or None if it has none or it was measured on other weights."""
    folder = Path(folder)
    path = folder / MODEL_EVAL_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("weights_sha256") == sha256_of(folder / WEIGHTS_FILE) else None


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


def format_task_report(report: dict[str, Any]) -> str:
    """A markdown table of one model's held-out scores per task, with how many of the entries ask a
    fact that training asked in other words and the score on the others."""
    lines = ["| task | held-out entries | score | exact match | fact seen in training | unseen: entries | "
             "unseen: score |", "|---|---|---|---|---|---|---|"]
    for task, t in [*report["tasks"].items(), ("all", report)]:
        lines.append(f"| {task} | {t['n']} | {t['score']:.1f} | {t['exact_match']:.1f} | {t['seen']:.0f}% | "
                     f"{t['n_unseen']} | {t['unseen_score']:.1f} |")
    return "\n".join(lines).replace("| nan |", "| – |")  # no unseen entries: no score


def format_base_comparison(report: dict[str, Any], name: str = "this model") -> str:
    """A markdown table of a model's held-out score per task beside its base model's, measured on the same
    questions (the `base` report that `gpt.instruct.runs.finetune_run` saves in eval.json)."""
    base = report["base"]
    lines = [f"| task | held-out questions | base: {base['model']} | {name} |", "|---|---|---|---|"]
    for task, t in [*report["tasks"].items(), ("all", report)]:
        base_score = (base if task == "all" else base["tasks"].get(task, {})).get("score", math.nan)
        lines.append(f"| {task} | {t['n']} | {base_score:.1f} | **{t['score']:.1f}** |")
    return "\n".join(lines)
