"""The Hugging Face Space deployment, offline: the front matter, the files that go up, the Space's
requirements (CPU PyTorch), and `tools/deploy_space.py`'s one commit against a stand-in for the Hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import gradio as gr
import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import REPO
from tools import deploy_space
from tools.deploy_space import TORCH_CPU_INDEX, front_matter, space_files, space_requirements

HUB_COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def requirement_lines(text: str) -> dict[str, Requirement]:
    reqs = [Requirement(line.split("#")[0].strip()) for line in text.splitlines()
            if line.split("#")[0].strip() and not line.startswith("-")]
    return {r.name.lower(): r for r in reqs}


def test_the_readme_front_matter_configures_a_gradio_space_of_the_installed_gradio():
    card = front_matter()
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and (REPO / card["app_file"]).is_file()
    assert card["sdk_version"] == gr.__version__  # the Space installs this gradio: the one tested here
    assert Version(str(card["python_version"])) >= Version("3.10")  # pyproject's requires-python
    assert card["colorFrom"] in HUB_COLOURS and card["colorTo"] in HUB_COLOURS
    assert card["title"] and card["emoji"] and len(card["short_description"]) <= 60  # the Hub refuses longer


def test_what_goes_up_is_the_app_and_its_data_and_nothing_else():
    files = space_files()
    assert {"app.py", "README.md"} <= set(files)
    for folder in ("gpt", "ui"):
        modules = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*.py")
                   if "__pycache__" not in p.parts}
        assert modules <= set(files), modules - set(files)  # every module of the app (new ones too)
    for model in ("base", "instruct"):
        assert f"assets/models/{model}/model.safetensors" in files
    assert "assets/models/spam/classifier.safetensors" in files
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/", "tools/", ".ci/", "screenshots/"))]
    assert "requirements.txt" not in files and "requirements-test.txt" not in files  # the Space's is made
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    size = sum((REPO / f).stat().st_size for f in files)
    assert size < 200 * 2**20  # assets/README.md's budget is 48 MB: far under the Hub's limits


def test_the_space_requirements_take_cpu_torch_and_the_sdk_s_gradio():
    text = space_requirements()
    space, ours = requirement_lines(text), requirement_lines((REPO / "requirements.txt").read_text())
    assert f"--extra-index-url {TORCH_CPU_INDEX}" in text.splitlines()
    assert str(space["torch"].specifier) == f"=={torch.__version__.split('+')[0]}+cpu"  # the wheel tested here
    assert str(space["gradio"].specifier) == f"=={front_matter()['sdk_version']}"
    assert set(space) == set(ours)
    assert all(space[n].specifier == ours[n].specifier for n in ours if n not in ("torch", "gradio"))


def test_an_unpinned_torch_is_refused(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch>=2.4\nnumpy\n")
    with pytest.raises(ValueError, match="must pin torch"):
        space_requirements(tmp_path / "requirements.txt", sdk_version="6.0.0")


@pytest.mark.slow
def test_pip_resolves_the_space_requirements_to_the_cpu_wheel(tmp_path):
    """pip itself reads the file (index option included) and picks torch's +cpu build, as the Space's build will."""
    (tmp_path / "requirements.txt").write_text(space_requirements())
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                           "--quiet", "--timeout", "5", "--retries", "0", "--report", str(report),
                           "-r", str(tmp_path / "requirements.txt")], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"pip cannot resolve here (no index reachable?): {done.stderr.strip().splitlines()[-1:]}")
    installs = json.loads(report.read_text())["install"]
    chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
    assert chosen["torch"].endswith("+cpu") and chosen["gradio"] == gr.__version__


@pytest.mark.slow
def test_the_files_that_go_up_are_enough_to_build_the_app(tmp_path):
    """A copy of only the Space's files, outside the repository, imports and builds the app."""
    space = tmp_path / "space"
    for f in space_files():
        (space / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, space / f)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "GPT_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    code = "import app; demo = app.build_app(); print('endpoints', sum(bool(f.api_name) for f in demo.fns.values()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=space, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split("endpoints")[-1]) >= 19


class FakeHub:
    """What `deploy` asks of `huggingface_hub.HfApi`, recorded; the Space already holds an old file."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def add_space_variable(self, repo_id, key, value):
        self.calls.append(("variable", key, value))

    def list_repo_files(self, repo_id, repo_type):
        return [".gitattributes", "app.py", "old_module.py"]

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("commit", operations, kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/spaces/{repo_id}/commit/abc"})()


def test_deploy_creates_a_gradio_space_and_uploads_in_one_commit():
    hub = FakeHub()
    url = deploy_space.deploy("someone/gpt-playground", api=hub, variables={"GPT_APP_QUEUE_SIZE": "16"})
    assert url.endswith("/commit/abc")
    (_, repo, created), variable, (_, ops, commit) = hub.calls
    assert repo == "someone/gpt-playground" and created["repo_type"] == "space" and created["space_sdk"] == "gradio"
    assert variable == ("variable", "GPT_APP_QUEUE_SIZE", "16") and commit["repo_type"] == "space"
    added = {op.path_in_repo: op for op in ops if type(op).__name__ == "CommitOperationAdd"}
    deleted = [op.path_in_repo for op in ops if type(op).__name__ == "CommitOperationDelete"]
    assert set(added) == {*space_files(), "requirements.txt"} and deleted == ["old_module.py"]
    assert added["requirements.txt"].path_or_fileobj.decode() == space_requirements()


def test_dry_run_lists_the_files_and_sends_nothing(capsys):
    assert deploy_space.main(["someone/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "assets/models/base/model.safetensors" in out and f"--extra-index-url {TORCH_CPU_INDEX}" in out
