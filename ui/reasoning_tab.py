"""The Reasoning tab: inference-time scaling on one checkable problem.

A chat model answers the same question N times at a temperature; the verifier reads each reply's
number (`gpt.reasoning.verify`), the replies vote (`gpt.reasoning.scaling.vote`: self-consistency and
best-of-N by the model's own log-probability), and the page puts the majority and the best-of-N answer
beside the greedy one and the right one. Below it, a GRPO run (`gpt.reasoning.runs.rl_run`) trains a chat model on
checkable problems in the app's job runner, as the Chat tab's finetune does (`ui.training_panel.Panel`). All the
model work is in `gpt.reasoning`; this module reads a typed problem's right answer, checks the settings and draws
the votes and the run.
"""

from __future__ import annotations

import ast
import functools
import random
import re
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from gpt.config import bounds
from gpt.reasoning.grpo import RL_PRESETS, TASKS, RLConfig
from gpt.reasoning.problems import ARITHMETIC_QUESTIONS, make_problems
from gpt.reasoning.runs import RLRun, rl_run
from gpt.reasoning.scaling import Vote, VoteConfig, greedy_answer, vote
from gpt.reasoning.verify import Number
from gpt.training.events import TrainEvent
from gpt.training.limits import MAX_SEED
from ui.chat_tab import chat_model
from ui.common import check_number, require_text, user_errors
from ui.figures import Plot
from ui.forms import check_field, number, on_form, slider
from ui.jobs import Job, JobRunner
from ui.registry import RUN_MODEL, RUN_PREFIX, SHIPPED_CHAT, ModelRegistry
from ui.training_panel import (
    Panel,
    Submission,
    asker_of,
    check_memory,
    duration,
    finetune_base,
    may_see,
    owner_of,
    owner_token,
    visible_choices,
)

MAX_N = 16  # replies per vote: 16 replies of a few tokens from the shipped 5M model take about a second on a CPU
N_LOW, _N_HIGH = bounds(VoteConfig, "n")
N_HIGH = min(MAX_N, _N_HIGH)
T_LOW, T_HIGH = bounds(VoteConfig, "temperature")
MAX_REPLY = 24  # tokens per reply here: an arithmetic answer is a few tokens (the library allows more)
R_LOW, _R_HIGH = bounds(VoteConfig, "max_new_tokens")
R_HIGH = min(MAX_REPLY, _R_HIGH)
MAX_QUESTION_CHARS = 300  # a problem is one line; a longer one is refused, not cut (cutting would change it)
MAX_OPERAND_DIGITS = 12  # a typed problem's numbers: enough for any sum a person types, no huge integers
DEFAULT_KIND = "two_step"
KIND_LABELS = {"two_step": "two steps (7 + 5 - 3)", "sum": "sums up to 100", "difference": "differences up to 100",
               "product": "times tables (up to 12 x 12)", "quotient": "divisions of the times tables",
               "three_digit_sum": "three-digit sums", "two_digit_product": "two-digit x one-digit products",
               "hard": "hard kinds, in turn", "easy": "the instruction data's kinds, in turn"}
KIND_CHOICES = [(KIND_LABELS.get(k, k), k) for k in TASKS]
RIGHT, WRONG, NO_NUMBER = "✓ right", "✗ wrong", "no number"
RIGHT_COLOUR, WRONG_COLOUR = "#16a34a", "#94a3b8"

EXPLAIN = (
    "**Inference-time scaling: ask N times, then choose.** A model that samples at a temperature gives a different "
    "reply each time. *Self-consistency* asks the same question N times and takes the answer most replies agree "
    "on: a right answer can be reached in one way only, while wrong ones tend to scatter, so the vote beats one "
    "greedy reply when the right answer is the most common single answer, even if most replies are wrong. "
    "*Best-of-N* takes instead the reply the model itself is surest of (the highest mean log-probability per "
    "token). Neither knows the right answer; the verifier (code that reads the number in a reply and checks it) "
    "only marks them afterwards.\n\n"
    "**What to notice.** On sums and times tables the shipped `instruct` is mostly right, and voting mends its "
    "occasional slip. On two-step and three-digit problems it is mostly wrong, and in a *consistent* way: the "
    "same wrong answer wins the vote, and more samples only make it win more surely. Voting cannot find what the "
    "model does not already reach; when the right answer shows up among the N replies but does not win, a "
    "verifier could pick it (*any of N right*), which is what reinforcement learning on checkable answers "
    "(GRPO, `python -m gpt finetune-rl`) trains towards.")


# -- the right answer of a typed problem ---------------------------------------------------------------

def _template_pattern(template: str) -> re.Pattern[str]:
    """A question template of the instruction data ("Subtract {b} from {a}.") as a pattern capturing a and b."""
    parts = re.split(r"(\{[ab]\})", template.strip())
    body = "".join(rf"(?P<{p[1]}>\d+)" if p in ("{a}", "{b}") else r"\s*".join(map(re.escape, p.split(" ")))
                   for p in parts)
    return re.compile(rf"\s*{body}\s*", re.IGNORECASE)


TEMPLATES = [(op, _template_pattern(t)) for op, templates in ARITHMETIC_QUESTIONS.items() for t in templates]
OPERATIONS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "div": lambda a, b: Fraction(a, b) if b else None}
WORDS = [(re.compile(r"\s*\b(?:multiplied\s+by|times)\b\s*", re.IGNORECASE), " * "),
         (re.compile(r"\s*\bdivided\s+by\b\s*", re.IGNORECASE), " / "),
         (re.compile(r"\s*\bplus\b\s*", re.IGNORECASE), " + "),
         (re.compile(r"\s*\bminus\b\s*", re.IGNORECASE), " - "),
         (re.compile(r"(?<=\d)\s*[x×]\s*(?=\d)"), " * "), (re.compile(r"[÷]"), " / "), (re.compile(r"[−–]"), "-")]
EXPRESSION = re.compile(r"(?<!\w)(?<!\d\.)-?\d+(?:\s*[-+*/]\s*-?\d+)+(?!\w)(?!\.\d)")  # a full stop may end it
BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
          ast.Div: lambda a, b: a / b if b else None}


def _evaluate(node: ast.AST) -> Fraction | None:
    """An expression of integers, + - * / and unary minus, exactly (Fractions); None for anything else."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _evaluate(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        return None if left is None or right is None else BINARY[type(node.op)](left, right)
    return None


def worked_answer(question: str) -> Fraction | None:
    """The exact answer of an arithmetic question: one of the instruction data's phrasings ("Take 5 away from
    12.") or one expression in it ("What is 7 + 5 - 3?", "12 times 4"); None when neither is found."""
    for op, pattern in TEMPLATES:
        match = pattern.fullmatch(question)
        if match:
            result = OPERATIONS[op](int(match["a"]), int(match["b"]))
            return None if result is None else Fraction(result)
    text = question
    for pattern, op in WORDS:
        text = pattern.sub(op, text)
    found = EXPRESSION.findall(text)
    if len(found) != 1:  # no expression, or two: which one is asked is not clear
        return None
    try:
        return _evaluate(ast.parse(found[0].strip(), mode="eval"))
    except (SyntaxError, ValueError):
        return None


def checkable_answer(question: Any) -> int:
    """The right answer of a typed or drawn problem, or a one-line ValueError saying why it cannot be checked."""
    question = require_text(question if isinstance(question, str) else None, "problem")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"The problem is {len(question):,} characters long; keep it under {MAX_QUESTION_CHARS} "
                         "(one question, such as 7 + 5 - 3).")
    numbers = re.findall(r"\d+", question)
    if not numbers:
        raise ValueError("This problem has no number in it, so no answer can be checked: type a sum such as "
                         "“What is 7 + 5 - 3?”, or press New problem.")
    if any(len(n) > MAX_OPERAND_DIGITS for n in numbers):
        raise ValueError(f"The numbers of a problem here have at most {MAX_OPERAND_DIGITS} digits.")
    answer = worked_answer(question)
    if answer is None:
        raise ValueError("No arithmetic to check was found in this problem: ask one sum, difference, product or "
                         "quotient (“What is 7 + 5 - 3?”, “12 times 4”), or press New problem.")
    if answer.denominator != 1:
        raise ValueError(f"The answer of this problem is {float(answer):g}, not a whole number: the chat model "
                         "answers whole numbers only. Ask another one.")
    return int(answer)


# -- drawing a problem, voting -------------------------------------------------------------------------

def draw_problem(kind: Any, seed: int) -> tuple[str, str]:
    """A problem of the kind's held-out split (GRPO trains on the other split), and a line saying what it is."""
    if not isinstance(kind, str) or kind not in TASKS:
        raise ValueError(f"Choose a kind of problem: {', '.join(TASKS)}.")
    kinds = TASKS[kind]  # several kinds ("hard"): the seed picks one
    problem = make_problems([kinds[seed % len(kinds)]], 1, "held_out", seed=seed)[0]
    return problem.question, (f"A held-out problem of the kind *{KIND_LABELS.get(problem.kind, problem.kind)}*: "
                              "reinforcement learning (`finetune-rl`) never trains on it. Its answer is shown "
                              "after the vote.")


def new_problem(kind: Any) -> tuple[str, str]:
    """`draw_problem` with a fresh seed: each press draws another."""
    return draw_problem(kind, random.randrange(MAX_SEED))


def own_chat_names(registry: ModelRegistry) -> list[str]:
    """The chat models that read the Alpaca prompt voting writes: the shipped ones and those finetuned here (an
    open instruct model reads its own chat template instead, and is not offered)."""
    open_names = set(registry.open_chat_names())
    return [n for n in registry.chat_names() if n not in open_names]


def shown_answer(answer: Number | None) -> str:
    if answer is None:
        return "none"
    return str(answer) if isinstance(answer, int) else f"{float(answer):g}"


def verdict(answer: Number | None, expected: int) -> str:
    return NO_NUMBER if answer is None else RIGHT if answer == expected else WRONG


def replies_table(result: Vote) -> pd.DataFrame:
    """One row per reply: what it says, the number the verifier read, right or wrong, and the model's score."""
    best = max(range(len(result.replies)), key=lambda i: (result.answers[i] is not None, result.mean_logprobs[i]))
    rows = [{"#": i + 1, "reply": reply if len(reply) <= 80 else reply[:77] + "...",
             "answer read": shown_answer(answer), "verifier": verdict(answer, result.expected),
             "mean log-prob": round(score, 3), "likeliest": "★ best-of-N" if i == best and answer is not None else ""}
            for i, (reply, answer, score) in enumerate(zip(result.replies, result.answers, result.mean_logprobs,
                                                           strict=True))]
    return pd.DataFrame(rows)


def votes_figure(result: Vote) -> go.Figure:
    """The votes per answer, the right answer's bar green, with the replies that gave no number as a last bar."""
    answers = list(result.votes)
    labels = [shown_answer(a) for a in answers]
    counts = [result.votes[a] for a in answers]
    colours = [RIGHT_COLOUR if a == result.expected else WRONG_COLOUR for a in answers]
    silent = sum(a is None for a in result.answers)
    if silent:
        labels, counts, colours = labels + ["no number"], counts + [silent], colours + ["#e5e7eb"]
    texts = [f"{c}{' · majority' if a == result.majority else ''}" for a, c in zip(answers, counts, strict=False)]
    fig = go.Figure(go.Bar(x=labels, y=counts, marker_color=colours, text=texts + [str(silent)] * bool(silent),
                           textposition="outside", cliponaxis=False,
                           hovertemplate="answer %{x}: %{y} votes<extra></extra>"))
    title = f"Votes of {len(result.replies)} replies (green: the right answer, {shown_answer(result.expected)})"
    fig.update_layout(title=title, height=320, margin={"l": 50, "r": 20, "t": 60, "b": 50},
                      xaxis={"type": "category", "title": "answer read by the verifier"},
                      yaxis={"title": "replies", "rangemode": "tozero", "dtick": 1 if max(counts) <= 8 else None},
                      showlegend=False, bargap=0.6 if len(labels) <= 2 else 0.3)
    return fig


def summary_markdown(result: Vote, greedy_reply: str, greedy: Number | None, temperature: float) -> str:
    """The ways of choosing side by side, the right answer, and one line on what the vote did."""
    n, expected = len(result.replies), result.expected
    right_votes = result.votes.get(expected, 0)

    def mark(answer: Number | None) -> str:
        return verdict(answer, expected)

    any_right = any(result.correct(a) for a in result.answers)
    lines = [f"**Expected answer: {expected}** (worked out from the problem; the model never sees it)", "",
             "| chosen by | answer | verifier |", "|---|---|---|",
             f"| greedy: one reply at temperature 0 | {shown_answer(greedy)} | {mark(greedy)} |",
             f"| majority of {n} at temperature {temperature:g} (self-consistency) | {shown_answer(result.majority)} | "
             f"{mark(result.majority)} |",
             f"| best-of-{n}: the reply the model is surest of | {shown_answer(result.best_of_n)} | "
             f"{mark(result.best_of_n)} |",
             f"| any of the {n} right? (a perfect verifier: a ceiling) | {'yes' if any_right else 'no'} | |", "",
             f"The greedy reply: “{greedy_reply.strip()[:60]}”.", ""]
    if result.correct(result.majority) and not result.correct(greedy):
        said = "The vote helped: the greedy reply is wrong, but the right answer is the most common one."
    elif result.correct(greedy) and not result.correct(result.majority):
        said = "The vote hurt: the greedy reply is right, but at this temperature a wrong answer is more common."
    elif result.correct(result.majority):
        said = f"Both right: {right_votes} of {n} replies give the right answer."
    elif right_votes:
        said = (f"The right answer got {right_votes} of {n} votes but another answer got more: voting cannot "
                "find it; a verifier could.")
    else:
        said = (f"None of the {n} replies is right: no way of choosing among them can be. The model does not reach "
                "this answer yet.")
    return "\n".join(lines + [said])


def vote_view(registry: ModelRegistry, name: Any, question: Any, n: Any, temperature: Any, max_new_tokens: Any,
              seed: Any) -> tuple[go.Figure, str, pd.DataFrame]:
    """N replies to the problem and their vote, beside the greedy reply: the chart, the summary and the replies."""
    expected = checkable_answer(question)
    n = check_number(n, "N (replies)", N_LOW, N_HIGH, integer=True)
    temperature = check_number(temperature, "Temperature", T_LOW, T_HIGH)
    max_new_tokens = check_number(max_new_tokens, "Max new tokens", R_LOW, R_HIGH, integer=True)
    seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
    names = own_chat_names(registry)
    if not isinstance(name, str) or name.strip() not in names:
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise ValueError(f"Pick one of this app's chat models ({', '.join(names[:6]) or 'none yet'}), not {shown!r}: "
                         "voting asks in the Alpaca prompt they were finetuned on.")
    ckpt = chat_model(registry, name.strip())
    cfg = VoteConfig(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    result = vote(ckpt.model, ckpt.tokenizer, question.strip(), cfg, expected)
    greedy_reply, greedy = greedy_answer(ckpt.model, ckpt.tokenizer, question.strip(), max_new_tokens)
    return votes_figure(result), summary_markdown(result, greedy_reply, greedy, temperature), replies_table(result)


def model_choices(registry: ModelRegistry, token: str | None = None, request: gr.Request = None) -> Any:
    """The chat models a picker of this tab offers the asker: on a public server, of the runs only their own."""
    return gr.Dropdown(choices=visible_choices(registry, asker_of(token, request), own_chat_names(registry)))


# -- training it to reason: a GRPO run in the job runner -----------------------------------------------

RL_START = RL_PRESETS["shipped"]  # the preset made for the shipped chat model: its task, batch and learning rate
MAX_RL_STEPS = RL_PRESETS["hard"].steps  # the longest preset; the runner's time limit may stop a run sooner
MAX_GROUP = RL_PRESETS["hard"].group_size  # replies per problem: 8 problems a step make 8 x this many replies
RL_STEPS = RL_START.steps  # the panel's default: the shipped preset's length
DEFAULT_SECONDS = 950  # 20 steps of the preset from the shipped instruct took 95 s (one thread, load 3), 2026-12-07
RL_TOKENS = 96 + RL_START.max_new_tokens  # an Alpaca prompt of one problem and its reply, for the memory check
RL_INTRO = (
    "**Reinforcement learning on checkable answers (GRPO).** Each step asks "
    f"{RL_START.problems_per_step} training problems, samples a group of replies to each, and the verifier scores "
    "them: 1 for a right answer, a little more for a bare number. A reply is made likelier by how much better it "
    "did than its own group (no value network), within PPO's clip, with a small KL penalty to the starting model. "
    f"{RL_START.rehearse:.0%} of the problems rehearse sums, differences, products and quotients the model already "
    "knows, so that it does not unlearn them. "
    f"Held-out accuracy (greedy, {RL_START.eval_problems} problems it never trains on) is measured before, every "
    f"{RL_START.eval_every} steps and at the end. With the defaults ({RL_STEPS} steps, groups of "
    f"{RL_START.group_size}, two-step sums, the shipped `instruct`) a run takes about {DEFAULT_SECONDS // 60} "
    "minutes on one thread of a busy 2-core CPU; from the chat model's seventh stage (the shipped one is its "
    "eighth), three seeds took greedy accuracy on 200 held-out two-step problems from 3.0% to 6.5-9.0%, and the "
    "families it knows moved by at most 1.4 points (measured 2026-12-07). More steps or a larger group take "
    "longer in proportion. The result is a chat model of its own (run:…), in the pickers here and in the Chat tab.")


@dataclass(frozen=True)
class RLForm:
    """The GRPO panel's settings as the page (or an API caller) sends them, unchecked; the field order is the
    order of the values `/reasoning_rl_start` takes."""

    model: str
    task: str
    steps: float
    group_size: float
    seed: float


def rl_config(form: RLForm) -> RLConfig:
    """The shipped preset with the panel's task, steps, group size and seed, every one checked."""
    if not isinstance(form.task, str) or form.task not in TASKS:
        raise ValueError(f"Choose a task: {', '.join(TASKS)}.")
    return replace(RL_START, task=form.task,
                   steps=check_field(RLConfig, "steps", form.steps, "Steps", high=MAX_RL_STEPS),
                   group_size=check_field(RLConfig, "group_size", form.group_size, "Group size", high=MAX_GROUP),
                   seed=check_field(RLConfig, "seed", form.seed, "Seed"))


def start_rl(runner: JobRunner, registry: ModelRegistry, token: str | None, form: RLForm,
             request: gr.Request = None) -> tuple[str, str]:
    """Check every setting, the model (one of this app's chat models the asker may see, within the size limit) and
    the memory, then queue the run; returns the first status line and the owner."""
    owner = owner_of(token, request)
    cfg = rl_config(form)
    names = own_chat_names(registry)
    name = form.model.strip() if isinstance(form.model, str) else ""
    if name not in names or not may_see(registry.runs_root, name, asker_of(token, request)):
        shown = name[:40] if name else type(form.model).__name__
        raise ValueError(f"Pick one of this app's chat models to train ({SHIPPED_CHAT}, or one finetuned here), not "
                         f"{shown!r}: the problems are asked in the Alpaca prompt they were finetuned on.")
    base = finetune_base(runner, registry, name)
    check_memory(base, cfg.problems_per_step * cfg.group_size, RL_TOKENS, lora=False)

    def prepare(folder: Path) -> Submission:
        kwargs = {"model": base.source, "cfg": cfg, "out_dir": folder / RUN_MODEL, "base_name": name}
        return Submission(rl_run, kwargs, f"GRPO on {KIND_LABELS.get(cfg.task, cfg.task)}, {cfg.steps} steps, "
                                          f"groups of {cfg.group_size}")

    return RL_PANEL.start(runner, owner, prepare), owner


def stop_rl(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    return RL_PANEL.stop(runner, token, request)


def resume_rl(runner: JobRunner, token: str | None, request: gr.Request = None) -> str:
    return RL_PANEL.resume(runner, token, request)


def rl_progress(job: Job) -> str:
    """A running GRPO job's status line: its step, mean reward and sampled accuracy, and the time left."""
    steps = [e for e in job.events if e.kind == "step"]
    if not steps:
        return "Loading the model and measuring its held-out accuracy before training…"
    last = steps[-1]
    elapsed = time.time() - (job.started or time.time())
    left = elapsed / len(steps) * (last.total_steps - last.step)
    return (f"Step **{last.step:,} / {last.total_steps:,}**, mean reward {last.metrics['reward']:.2f}, "
            f"{last.metrics['accuracy']:.0f}% of sampled replies right, KL {last.metrics['kl']:.4f}; "
            f"{duration(elapsed)} elapsed, about {duration(left)} left (and the final held-out measure).")


def rl_curve(events: list[TrainEvent], title: str) -> go.Figure:
    """Mean reward per step (left axis) and greedy held-out accuracy at each measure (right axis, percent)."""
    steps = [e for e in events if e.kind == "step"]
    evals = [e for e in events if e.kind == "eval"]
    fig = go.Figure([
        go.Scatter(x=[e.step for e in steps], y=[e.metrics["reward"] for e in steps], name="mean reward of the samples",
                   mode="lines", line={"color": "#2563eb"}),
        go.Scatter(x=[e.step for e in evals], y=[e.metrics["held_out_accuracy"] for e in evals],
                   name="held-out accuracy (%)", mode="lines+markers", yaxis="y2", line={"color": RIGHT_COLOUR})])
    fig.update_layout(title=title, height=340, margin={"l": 60, "r": 60, "t": 60, "b": 50},
                      xaxis={"title": "step", "rangemode": "tozero"},
                      yaxis={"title": "mean reward", "rangemode": "tozero"},
                      yaxis2={"title": "held-out accuracy (%)", "overlaying": "y", "side": "right", "range": [0, 100]},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def rl_result_markdown(result: RLRun, name: str) -> str:
    """What the run trained and its held-out accuracy before and after."""
    stopped = "" if result.finished else " (stopped early: these are the weights it had; Resume goes on)"
    line = "No held-out accuracy was measured."
    if result.evals:
        first, last = result.evals[0], result.evals[-1]
        line = (f"Held-out accuracy (greedy, problems it never trained on): **{first['held_out_accuracy']:.1f}%** "
                f"at step {first['step']:.0f}")
        line += (f", **{last['held_out_accuracy']:.1f}%** at step {last['step']:.0f}." if len(result.evals) > 1 else
                 "; a stopped run is measured again at its next evaluation or at its end.")
    return (f"### {RUN_PREFIX}{name}{stopped}\n\n{result.steps:,} of {result.total_steps:,} GRPO steps from "
            f"{result.base_model} on {KIND_LABELS.get(result.task, result.task)} in {duration(result.seconds)}. "
            f"{line} It is in the chat model pickers (here and in the Chat tab).")


def rl_status(runner: JobRunner, registry: ModelRegistry, token: str | None, request: gr.Request = None
              ) -> tuple[Any, ...]:
    """The owner's GRPO run as the page shows it: status line, curve, result; once it has a result, both pickers
    of the tab get the new model."""
    view = RL_PANEL.view(runner, token, request)
    if not view.finished:
        return view.line, view.figure, "", view.timer, gr.skip(), gr.skip()
    picks = model_choices(registry, token, request)
    return view.line, view.figure, rl_result_markdown(view.job.result, view.job.name), view.timer, picks, picks


RL_PANEL = Panel(kind="reasoning", what="GRPO run", prefix="rl-", title="GRPO", progress=rl_progress, curve=rl_curve,
                 stopping="Stopping: the run saves its weights so far and a resumable state; Resume goes on.")


def _rl_panel(runner: JobRunner, registry: ModelRegistry, picker: gr.Dropdown, token: gr.BrowserState,
              tab: gr.Tab) -> gr.Dropdown:
    form: dict[str, Any] = {}  # RLForm's fields -> their components
    with gr.Accordion("Train it to reason (GRPO)", open=False):
        gr.Markdown(RL_INTRO, elem_id="reasoning-rl-intro")
        with gr.Row():
            names = own_chat_names(registry)
            form["model"] = gr.Dropdown(visible_choices(registry, None, names),
                                        value=SHIPPED_CHAT if SHIPPED_CHAT in names else None, allow_custom_value=True,
                                        label="Chat model to train", elem_id="reasoning-rl-model")
            form["task"] = gr.Dropdown(KIND_CHOICES, value=RL_START.task, label="Task", elem_id="reasoning-rl-task")
        with gr.Row():
            form["steps"] = slider(RLConfig, "steps", "Steps", RL_STEPS, high=MAX_RL_STEPS,
                                   elem_id="reasoning-rl-steps")
            form["group_size"] = slider(RLConfig, "group_size", "Group size (replies per problem)",
                                        RL_START.group_size, high=MAX_GROUP, elem_id="reasoning-rl-group")
            form["seed"] = number(RLConfig, "seed", "Seed", RL_START.seed, elem_id="reasoning-rl-seed")
        with gr.Row():
            start = gr.Button("Start", variant="primary", elem_id="reasoning-rl-start")
            stop = gr.Button("Stop", variant="stop", elem_id="reasoning-rl-stop")
            resume = gr.Button("Resume", elem_id="reasoning-rl-resume")
        line = gr.Markdown(elem_id="reasoning-rl-status")
        curve = Plot(label="Reward and held-out accuracy", elem_id="reasoning-rl-curve")
        result = gr.Markdown(elem_id="reasoning-rl-result")
    timer = gr.Timer(1.0, active=False)

    watch = user_errors(functools.partial(rl_status, runner, registry))
    watched = [line, curve, result, timer, picker, form["model"]]
    fields = {name: form[name] for name in RLForm.__dataclass_fields__}  # the API's order: the form's
    start.click(user_errors(on_form(RLForm, functools.partial(start_rl, runner, registry))), token, [line, token],
                inputs_kwargs=fields, api_name="reasoning_rl_start").success(watch, token, watched,
                                                                             api_visibility="private")
    stop.click(user_errors(functools.partial(stop_rl, runner)), token, line, api_name="reasoning_rl_stop")
    resume.click(user_errors(functools.partial(resume_rl, runner)), token, line, api_name="reasoning_rl_resume"
                 ).success(watch, token, watched, api_visibility="private")
    timer.tick(watch, token, watched, api_name="reasoning_rl_status", concurrency_id="reasoning_rl_status",
               concurrency_limit=8)
    tab.select(watch, token, watched, api_visibility="private")  # coming back shows the visitor's run
    return form["model"]


def build(registry: ModelRegistry, tab: gr.Tab, runner: JobRunner | None = None) -> None:
    """The voting view, and below it the GRPO panel when the app passes its job runner (one for all the tabs:
    one training per visitor)."""
    names = own_chat_names(registry)
    first_question, _ = draw_problem(DEFAULT_KIND, 0)
    gr.Markdown(EXPLAIN, elem_id="reasoning-explain")
    with gr.Row(equal_height=True):
        model = gr.Dropdown(visible_choices(registry, None, names),
                            value=SHIPPED_CHAT if SHIPPED_CHAT in names else None, allow_custom_value=True,
                            label="Chat model", elem_id="reasoning-model",
                            info="the shipped one and those finetuned here (run:…)")
        kind = gr.Dropdown(KIND_CHOICES, value=DEFAULT_KIND, label="Kind of problem", elem_id="reasoning-kind")
        draw = gr.Button("New problem", elem_id="reasoning-new", scale=0, min_width=140)
    question = gr.Textbox(first_question, label="Problem (type one, or draw a held-out one)", max_lines=2,
                          max_length=MAX_QUESTION_CHARS, elem_id="reasoning-question")
    note = gr.Markdown(elem_id="reasoning-note")
    with gr.Row():
        n = gr.Slider(N_LOW, N_HIGH, value=8, step=1, label="N: replies sampled", elem_id="reasoning-n")
        temperature = gr.Slider(T_LOW, T_HIGH, value=1.0, step=0.05, label="Temperature",
                                info="how different the replies are", elem_id="reasoning-temperature")
        max_new = gr.Slider(R_LOW, R_HIGH, value=VoteConfig.max_new_tokens, step=1, label="Max new tokens per reply",
                            elem_id="reasoning-max-new")
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="reasoning-seed")
    run = gr.Button("Sample N replies and vote", variant="primary", elem_id="reasoning-vote")
    with gr.Row():
        plot = Plot(label="Votes", elem_id="reasoning-plot")
        summary = gr.Markdown(elem_id="reasoning-summary")
    table = gr.Dataframe(label="The N replies, as the verifier reads them", interactive=False, wrap=True,
                         elem_id="reasoning-replies")
    draw.click(user_errors(new_problem), kind, [question, note], api_name="reasoning_problem")
    run.click(user_errors(functools.partial(vote_view, registry)), [model, question, n, temperature, max_new, seed],
              [plot, summary, table], api_name="reasoning_vote")
    token = owner_token(tab)
    refresh = user_errors(functools.partial(model_choices, registry))  # the wrapper lets Gradio see gr.Request
    tab.select(refresh, token, model, api_visibility="private")
    if runner is not None:
        rl_model = _rl_panel(runner, registry, model, token, tab)
        tab.select(refresh, token, rl_model, api_visibility="private")
