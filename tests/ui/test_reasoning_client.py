"""The Reasoning tab's endpoints through `gradio_client`, on the shipped chat model as `python app.py` serves it:
a drawn problem, a vote, and hostile input answered with one short line while the server keeps serving."""

from __future__ import annotations

import pytest
from gradio_client import Client

from tests.ui.endpoints import base_values, client_call, kind, problem
from tests.ui.test_hostile_inputs import HOSTILE, json_safe
from ui.jobs import JobRunner, TrainLimits
from ui.registry import SHIPPED_CHAT, ModelRegistry

pytestmark = pytest.mark.slow
ENDPOINTS = ("/reasoning_problem", "/reasoning_vote")


@pytest.fixture(scope="module")
def client(serve_app, shipped_models, tmp_path_factory: pytest.TempPathFactory) -> Client:
    runs = tmp_path_factory.mktemp("runs")
    url = serve_app(ModelRegistry(shipped_models, runs_root=runs), JobRunner(TrainLimits(runs_dir=runs, threads=1)))
    return Client(url, verbose=False)


def test_the_endpoints_are_named(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(ENDPOINTS) <= set(api)
    assert [p["parameter_name"] for p in api["/reasoning_vote"]["parameters"]] == [
        "name", "question", "n", "temperature", "max_new_tokens", "seed"]


def test_draw_a_problem_and_vote_on_it(client):
    question, note = client.predict("two_step", api_name="/reasoning_problem")
    assert question and "held-out" in note
    plot, summary, table = client.predict(SHIPPED_CHAT, question, 8, 1.0, 12, 0, api_name="/reasoning_vote")
    assert plot and "Expected answer" in summary and "majority of 8" in summary
    assert len(table["data"]) == 8


@pytest.mark.parametrize("data, said", [
    ([SHIPPED_CHAT, "", 8, 1.0, 12, 0], "empty"),
    ([SHIPPED_CHAT, "What is the capital of France?", 8, 1.0, 12, 0], "no number"),
    ([SHIPPED_CHAT, "What is 2 + 2?", 0, 1.0, 12, 0], "must be between 1 and 16"),
    ([SHIPPED_CHAT, "What is 2 + 2?", 10_000, 1.0, 12, 0], "must be between 1 and 16"),
    (["base", "What is 2 + 2?", 8, 1.0, 12, 0], "chat models")])
def test_bad_input_is_one_line(client, data, said):
    how, message = client_call(client, "/reasoning_vote", data)
    assert how == "error" and said in message and "\n" not in message


def test_hostile_input_to_the_reasoning_endpoints(client):
    """Each parameter in turn gets every hostile value of its kind (the sweep's), the others their examples."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    failures, calls = [], 0
    for endpoint in ENDPOINTS:
        base = base_values(api[endpoint])
        for i, param in enumerate(api[endpoint]["parameters"]):
            for value in filter(json_safe, HOSTILE[kind(param)]):
                calls += 1
                failure = problem(client_call(client, endpoint, [*base[:i], value, *base[i + 1:]]), [])
                if failure:
                    failures.append(f"{endpoint} {param['parameter_name']}={str(value)[:30]!r}: {failure}")
    assert calls > 40 and not failures, "\n".join(failures[:20])
    assert not failures, "\n".join(failures[:20])
    assert client.predict("sum", api_name="/reasoning_problem")[0]  # still serving
