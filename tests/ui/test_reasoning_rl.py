"""The Reasoning tab's GRPO panel: bad settings refused with one line before anything starts, and a tiny run through
the job runner to its end, its model then in the tab's pickers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import gradio as gr
import pytest
from gradio_client import Client

from gpt.reasoning.grpo import RL_PRESETS, TASKS
from gpt.reasoning.runs import RLRun
from tests.helpers import free_port
from tests.ui.endpoints import client_call
from tests.ui.helpers import choices, session
from ui import reasoning_tab as rt
from ui.jobs import JobRunner, TrainLimits
from ui.registry import RUN_PREFIX, SHIPPED_CHAT, ModelRegistry

WAIT_S = 180  # a bound on a hung child process, not a speed target
GOOD = dict(model=SHIPPED_CHAT, task="sum", steps=3, group_size=4, seed=1)


def start(runner, tiny_registry, who: str, **changes) -> str:
    line, owner = rt.start_rl(runner, tiny_registry, None, rt.RLForm(**{**GOOD, **changes}), request=session(who))
    assert owner == who
    return line


def test_the_panels_bounds_come_from_the_config_and_the_presets():
    hard = RL_PRESETS["hard"]
    assert (hard.steps, hard.group_size) == (rt.MAX_RL_STEPS, rt.MAX_GROUP)
    assert rt.RL_STEPS <= rt.MAX_RL_STEPS and rt.RL_START.task in TASKS
    assert rt.rl_config(rt.RLForm(**GOOD)) == replace(rt.RL_START, task="sum", steps=3, group_size=4, seed=1)


@pytest.mark.parametrize("changes, said", [
    ({"group_size": 0}, "Group size must be between 2 and 16"),
    ({"group_size": 5000}, "Group size must be between 2 and 16"),
    ({"group_size": 1}, "Group size must be between 2 and 16"),
    ({"steps": 0}, "Steps must be between 1 and 200"),
    ({"steps": 201}, "Steps must be between 1 and 200"),
    ({"steps": 2.5}, "Steps"),
    ({"seed": -1}, "Seed"),
    ({"task": "calculus"}, "Choose a task"),
    ({"task": None}, "Choose a task"),
    ({"model": "base"}, "chat models"),
    ({"model": "spam"}, "chat models"),
    ({"model": "run:nothing-here"}, "chat models"),
    ({"model": None}, "chat models"),
])
def test_bad_settings_get_one_line_and_start_nothing(runner, tiny_registry, changes, said):
    with pytest.raises(ValueError, match=said) as err:
        start(runner, tiny_registry, "alice-session", **changes)
    assert "\n" not in str(err.value)
    assert runner.job_of("alice-session") is None
    assert not runner.limits.runs_dir.is_dir() or not [d for d in runner.limits.runs_dir.iterdir()
                                                       if d.name.startswith("rl-")]


def test_before_a_start_the_panel_says_so_and_stop_and_resume_have_nothing(runner, tiny_registry):
    line, figure, result, timer, *_ = rt.rl_status(runner, tiny_registry, None, session("alice-session"))
    assert line.startswith("No GRPO run yet") and figure is None and not result and not timer.active
    with pytest.raises(ValueError, match="no GRPO run running"):
        rt.stop_rl(runner, None, session("alice-session"))
    with pytest.raises(ValueError, match="no unfinished GRPO run to resume"):
        rt.resume_rl(runner, None, session("alice-session"))


@pytest.mark.slow
def test_a_tiny_grpo_run_ends_and_its_model_is_in_the_pickers(runner, tiny_registry):
    line = start(runner, tiny_registry, "alice-session")
    assert line.startswith("Started **run:rl-") and "3 steps, groups of 4" in line
    job = runner.job_of("alice-session", "reasoning")
    assert runner.wait(job, WAIT_S), "the GRPO run did not end"
    assert job.state == "done", job.error
    line, figure, result, timer, vote_picker, rl_picker = rt.rl_status(runner, tiny_registry, None,
                                                                       session("alice-session"))
    name = RUN_PREFIX + job.name
    assert line == f"Finished: {name} (finished 3 steps)." and not timer.active
    assert [t.name for t in figure.data] == ["mean reward of the samples", "held-out accuracy (%)"]
    assert len(figure.data[0].y) == 3 and len(figure.data[1].y) == 2  # before and after
    assert f"### {name}\n\n3 of 3 GRPO steps from {SHIPPED_CHAT}" in result and "at step 0" in result
    assert "at step 3" in result
    assert name in choices(vote_picker) and name in choices(rl_picker)
    assert name in rt.own_chat_names(tiny_registry)
    with pytest.raises(ValueError, match="no unfinished GRPO run"):
        rt.resume_rl(runner, None, session("alice-session"))


@pytest.fixture(scope="module")
def client(tiny_models, tmp_path_factory) -> Iterator[Client]:
    """The Reasoning tab with its GRPO panel, served on its own (the app passes the tab its job runner)."""
    runs = tmp_path_factory.mktemp("runs")
    runner = JobRunner(TrainLimits(runs_dir=runs, threads=1))
    with gr.Blocks() as demo, gr.Tab("Reasoning") as tab:
        rt.build(ModelRegistry(tiny_models, runs_root=runs), tab, runner)
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


@pytest.mark.slow
def test_the_panel_through_gradio_client(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/reasoning_rl_start", "/reasoning_rl_stop", "/reasoning_rl_resume", "/reasoning_rl_status"} <= set(api)
    assert [p["parameter_name"] for p in api["/reasoning_rl_start"]["parameters"]] == [
        "token", "model", "task", "steps", "group_size", "seed"]
    for data, said in [([None, "base", "sum", 3, 4, 1], "chat models"), ([None, SHIPPED_CHAT, "sum", 3, 0, 1], "2"),
                       ([None, SHIPPED_CHAT, "sum", 5000, 4, 1], "200")]:
        how, message = client_call(client, "/reasoning_rl_start", data)
        assert how == "error" and said in message and "\n" not in message
    line, *_ = client.predict(None, api_name="/reasoning_rl_status")
    assert line.startswith("No GRPO run yet")


def test_a_stopped_runs_result_says_so_and_claims_no_after():
    run = RLRun(steps=2, total_steps=12, stopped=True, seconds=2.0, task="sum", base_model=SHIPPED_CHAT,
                evals=[{"step": 0, "held_out_accuracy": 4.0}])
    text = rt.rl_result_markdown(run, "rl-x")
    assert not run.finished and "stopped early" in text and "Resume goes on" in text
    assert "**4.0%** at step 0;" in text and "at step 2" not in text
