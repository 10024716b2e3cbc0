"""Issue 36, runs shared by strangers: pruning never takes another visitor's recent run, a visitor's own runs are
capped (their oldest go first), and a stopping server stops its trainings' child processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ui.jobs import Job, JobRunner, TrainLimits


def ended_job(runner: JobRunner, owner: str, name: str, age_s: float = 0.0) -> Job:
    """A finished job of `owner` whose run folder `name` exists, ended `age_s` seconds ago."""
    folder = runner.limits.runs_dir / name
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text("step\n")
    stamp = time.time() - age_s
    os.utime(folder, (stamp, stamp))
    job = Job(name, owner, name, print, {}, state="done", created=stamp, finished=stamp)
    runner._jobs[job.id] = job
    return job


def runs(runner: JobRunner) -> set[str]:
    return {d.name for d in runner.limits.runs_dir.iterdir()}


def test_pruning_never_takes_another_visitor_s_recent_run(tmp_path):
    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", keep_runs=2, runs_per_visitor=20, protect_hours=1))
    ended_job(runner, "alice", "alice-1", age_s=60)
    for i in range(16):  # the audit: 16 tiny runs of another visitor
        last = ended_job(runner, "mallory", f"mallory-{i:02d}", age_s=30 - i)
        runner._prune_runs(ended=last)
    assert "alice-1" in runs(runner)
    assert runs(runner) - {"alice-1"} == {"mallory-15", "mallory-14"}


def test_an_old_run_of_another_visitor_is_pruned_past_the_limit(tmp_path):
    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", keep_runs=1, protect_hours=1))
    ended_job(runner, "alice", "alice-1", age_s=2 * 3600)
    runner._prune_runs(ended=ended_job(runner, "bob", "bob-1"))
    assert runs(runner) == {"bob-1"}


def test_a_visitor_keeps_at_most_their_quota_of_runs(tmp_path):
    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", keep_runs=50, runs_per_visitor=2))
    ended_job(runner, "bob", "bob-1", age_s=100)
    for i in range(4):
        last = ended_job(runner, "alice", f"alice-{i}", age_s=50 - i)
        (runner.limits.runs_dir / f"alice-{i}-b").mkdir()  # the second recipe goes with its run
        runner._prune_runs(ended=last)
    assert runs(runner) == {"bob-1", "alice-3", "alice-3-b", "alice-2", "alice-2-b"}


def sleeper(monitor, **kwargs) -> None:
    """A training that never stops by itself (module level: the child imports it)."""
    time.sleep(600)


def test_shutdown_stops_running_children_and_cancels_the_queue(tmp_path):
    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1, max_running=1, max_queued=2))
    running = runner.submit("alice", "a", sleeper, {})
    waiting = runner.submit("bob", "b", sleeper, {})
    deadline = time.monotonic() + 120
    while (running._process is None or not running._process.is_alive()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running._process.is_alive()
    assert runner.shutdown(grace_s=1) == 1
    assert not running._process.is_alive() and waiting.state == "cancelled"
    assert runner.wait(running, 60) and running.state in ("failed", "stopped")


# -- a crash, a restart ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_training_resumes_in_the_app_and_after_a_restart(tmp_path):
    """kill -9 of the training process after its first checkpoint: Resume continues it; a new runner on
    the same runs folder (a restarted server) finds it for the same owner, and Resume continues it again."""
    from gpt.pretrain.state import STATE_FILE
    from tests.ui.helpers import session
    from tests.ui.test_train_tab import start, wait_for_steps
    from ui import train_tab

    limits = TrainLimits(runs_dir=tmp_path / "runs", threads=1)
    runner = JobRunner(limits)
    start(runner, "alice", steps=2_000)  # a checkpoint every 200 steps
    job = runner.job_of("alice")
    deadline = time.monotonic() + 300
    while not any(e.kind == "checkpoint" for e in job.events):
        assert job.active and time.monotonic() < deadline, job.error
        time.sleep(0.05)
    saved = next(e for e in job.events if e.kind == "checkpoint").step
    assert (limits.runs_dir / job.name / STATE_FILE).is_file()
    os.kill(job._process.pid, signal.SIGKILL)
    assert runner.wait(job, 60) and job.state == "failed"
    message = train_tab.resume_training(runner, None, session("alice"))
    assert message == f"Resuming **run:{job.name}** from its last checkpoint."
    resumed = runner.job_of("alice")
    wait_for_steps(runner, resumed, 1)
    started = next(e for e in resumed.events if e.kind == "start" and "recipe" not in e.metrics)
    assert started.step == saved
    with pytest.raises(ValueError, match="no unfinished training"):
        train_tab.resume_training(runner, None, session("bob"))  # not bob's
    runner.shutdown(grace_s=60)  # the server stops: the training checkpoints and ends
    assert runner.wait(resumed, 60)

    restarted = JobRunner(limits)
    again = restarted.job_of("alice")
    assert again is not None and again.name == job.name and restarted.resumable(again)
    assert restarted.job_of("bob") is None
    assert "Resuming" in train_tab.resume_training(restarted, None, session("alice"))
    train_tab.stop_training(restarted, None, session("alice"))
    assert restarted.wait(restarted.job_of("alice"), 120)


# -- who sees which run ------------------------------------------------------------------------------

def test_public_mode_is_said_or_follows_the_address(monkeypatch):
    from ui.common import public_mode

    for env, public in (({}, False), ({"GRADIO_SERVER_NAME": "0.0.0.0"}, True),
                        ({"GRADIO_SERVER_NAME": "0.0.0.0", "GPT_APP_MODE": "local"}, False),
                        ({"GPT_APP_MODE": "public"}, True)):
        for name in ("GRADIO_SERVER_NAME", "GPT_APP_MODE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert public_mode() is public, env


def test_in_public_mode_the_server_mints_owners_and_no_caller_names_one(monkeypatch, tmp_path):
    """Issue 36: an owner is not a string the caller picks. In public mode a session's owner is minted and signed
    by the server (the same for that session on every call, kept by the browser); a token the server did not sign,
    or one changed by a character, is no owner; the key lives in the runs folder, so a restart keeps tokens valid."""
    from tests.ui.helpers import session
    from ui.training_panel import SECRET_FILE, Visitors, owner_of

    monkeypatch.setenv("GPT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GPT_APP_MODE", "public")
    alice = owner_of(None, session("alice-session"))
    assert alice == owner_of(None, session("alice-session")) != owner_of(None, session("mallory-session"))
    assert alice not in ("alice-session", "alice")
    assert owner_of(alice, session("after-a-reload")) == alice
    named = owner_of("alice-session", session("mallory-session"))  # a well-formed token the server never signed
    forged = alice[:-1] + ("0" if alice[-1] != "0" else "1")
    assert named != "alice-session" and owner_of(forged, session("mallory-session")) != forged
    assert oct((tmp_path / "runs" / SECRET_FILE).stat().st_mode)[-3:] == "600"
    assert Visitors().signed(alice)  # a restarted server reads the same key
    monkeypatch.setenv("GPT_APP_MODE", "local")  # a laptop, as before: the token or session as it is
    assert owner_of("alice-session", None) == "alice-session" and owner_of(None, session("bob")) == "bob"


@pytest.mark.slow
def test_in_public_mode_a_visitor_lists_and_downloads_only_their_own_runs(monkeypatch, tmp_path):
    from tests.ui.helpers import session
    from tests.ui.test_train_tab import form
    from ui import train_tab
    from ui.registry import RUN_PREFIX, ModelRegistry

    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1))
    registry = ModelRegistry(tmp_path / "models", runs_root=runner.limits.runs_dir)
    monkeypatch.setenv("GPT_APP_MODE", "public")
    _, alices_token = train_tab.start_training(runner, None, form(max_steps=10), request=session("alice"))
    job = runner.job_of(alices_token)
    assert runner.wait(job, 180) and job.state == "done"
    name = RUN_PREFIX + job.name
    assert name in set(train_tab.list_runs(registry, None, session("alice"))["model"])
    assert name in set(train_tab.list_runs(registry, alices_token, session("after-a-reload"))["model"])
    assert name not in set(train_tab.list_runs(registry, None, session("mallory"))["model"])
    with pytest.raises(ValueError, match="not a run trained here \\(or not yours\\)"):
        train_tab.download_run(registry, name, None, session("mallory"))
    archive = train_tab.download_run(registry, name, None, session("alice"))
    message, _ = train_tab.upload_run(runner, registry, archive, None, session("mallory"))
    uploaded = message.split("`")[1]
    assert uploaded in set(train_tab.list_runs(registry, None, session("mallory"))["model"])
    assert uploaded not in set(train_tab.list_runs(registry, None, session("alice"))["model"])
    from ui.picker import picker_choices

    def picked(who) -> set[str]:
        return {value for _, value in picker_choices(registry, None, session(who)).choices}

    assert name in picked("alice") and name not in picked("mallory") and uploaded in picked("mallory")
    monkeypatch.setenv("GPT_APP_MODE", "local")  # a laptop: every run is everyone's
    assert {name, uploaded} <= set(train_tab.list_runs(registry)["model"])
    assert {name, uploaded} <= picked("mallory")


def test_a_new_run_past_the_disk_cap_is_refused_and_a_resume_is_not(tmp_path):
    from ui.jobs import JobError

    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", max_disk_mb=1))
    ended_job(runner, "alice", "alice-1")
    (runner.limits.runs_dir / "alice-1" / "weights.bin").write_bytes(b"\0" * 2 * 2**20)
    assert runner.runs_mb() > 1
    with pytest.raises(JobError, match="fill their disk"):
        runner.submit("bob", "bob-1", print, {})
    job = runner.submit("alice", "alice-1", sleeper, {})  # the same run, going on
    runner.shutdown(grace_s=0)
    assert runner.wait(job, 60)


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (from /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found.update(int(p) for p in task.read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_of_the_server_stops_its_training(shipped_models, tmp_path):
    """`python app.py`, a training started through the API, then SIGTERM: the training's process ends with it
    (before, one kept running 17 minutes after its server was stopped)."""
    import subprocess
    import sys
    import threading

    from gradio_client import Client

    from tests.helpers import REPO, free_port
    from tests.ui.app_client import TRAIN

    if not Path("/proc/self/task").exists():
        pytest.skip("reads processes from /proc")
    port = free_port()
    env = {**os.environ, "GPT_MODELS_DIR": str(shipped_models), "GPT_RUNS_DIR": str(tmp_path / "runs"),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GPT_TRAIN_THREADS": "1",
           "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while not any("playground: http" in line for line in lines):
            assert server.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        line, _ = client.predict(*TRAIN, api_name="/train_start")
        assert "Started" in line
        while not (training := {p for p in children(server.pid)
                                if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()}):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        deadline = time.monotonic() + 30
        while any(map(alive, training)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(map(alive, training)), "a training outlived its server"
        assert any("training(s) stopped" in line for line in lines), "".join(lines)[-2000:]
    finally:
        if server.poll() is None:
            server.kill()


def test_in_public_mode_spam_and_chat_models_are_their_maker_s(monkeypatch, tmp_path, shipped_models):
    """The audit read another visitor's classifier (its test figures held rows of their private CSV) and chat
    model: on a public server a visitor sees, picks and downloads only their own; the shipped ones are everyone's."""
    import shutil

    from tests.ui.helpers import session
    from ui import chat_tab, spam_tab
    from ui.registry import RUN_PREFIX, ModelRegistry

    def values(dropdown) -> list[str]:
        return [value for _, value in dropdown.choices]

    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1))
    registry = ModelRegistry(shipped_models, runs_root=runner.limits.runs_dir)
    classifier_zip = spam_tab.download_classifier(registry, "spam")
    shutil.copytree(shipped_models / "instruct", runner.limits.runs_dir / "laptop-chat" / "model")
    chat_zip = chat_tab.download_chat(registry, RUN_PREFIX + "laptop-chat")  # a laptop: every run is everyone's
    shutil.rmtree(runner.limits.runs_dir / "laptop-chat")
    monkeypatch.setenv("GPT_APP_MODE", "public")
    alice, mallory = session("alice-session"), session("mallory-session")

    message, _ = spam_tab.upload_classifier(runner, registry, classifier_zip, None, alice)
    classifier = message.split("`")[1]
    assert classifier in values(spam_tab.classifier_choices(registry, None, alice))
    assert values(spam_tab.classifier_choices(registry, None, mallory)) == ["spam"]
    assert classifier in set(spam_tab.experiments(registry, None, alice)["classifier"])
    assert set(spam_tab.experiments(registry, None, mallory)["classifier"]) == {"spam"}
    with pytest.raises(ValueError, match="not one of your classifiers"):
        spam_tab.download_classifier(registry, classifier, None, mallory)
    with pytest.raises(ValueError, match="not one of your classifiers"):
        spam_tab.classify(registry, "WIN a prize", classifier, None, mallory)
    summary, _, _ = spam_tab.test_figures(registry, classifier, None, mallory)
    assert "not one of your classifiers" in summary
    assert "Test accuracy" in spam_tab.test_figures(registry, classifier, None, alice)[0]
    assert spam_tab.download_classifier(registry, classifier, None, alice).endswith(".zip")

    message, _ = chat_tab.upload_chat(runner, registry, chat_zip, None, alice)
    chat = message.split("`")[1]
    for who, sees in ((alice, True), (mallory, False)):
        picker, left, right, _ = chat_tab.model_choices(registry, None, who)
        assert all((chat in values(d)) is sees for d in (picker, left, right)), who
        assert "instruct" in values(picker)
    with pytest.raises(ValueError, match="pick one of yours"):
        chat_tab.download_chat(registry, chat, None, mallory)
    assert chat_tab.download_chat(registry, chat, None, alice).endswith(".zip")


def test_uploads_are_capped_per_visitor_and_by_the_disk(monkeypatch, tmp_path, shipped_models):
    """The audit kept ten anonymous 19.5 MB uploads: a visitor now keeps `runs_per_visitor` uploads (their oldest
    goes), and past the runs' disk cap an upload is refused, for classifiers as for runs."""
    from tests.ui.helpers import session
    from ui import spam_tab
    from ui.registry import ModelRegistry

    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1, runs_per_visitor=2))
    registry = ModelRegistry(shipped_models, runs_root=runner.limits.runs_dir)
    archive = spam_tab.download_classifier(registry, "spam")
    monkeypatch.setenv("GPT_APP_MODE", "public")
    alice, mallory = session("alice-session"), session("mallory-session")

    def upload(who) -> str:
        return spam_tab.upload_classifier(runner, registry, archive, None, who)[0].split("`")[1]

    mallorys = upload(mallory)
    alices = [upload(alice) for _ in range(3)]
    kept = set(spam_tab.experiments(registry, None, alice)["classifier"])
    assert kept == {"spam", *alices[1:]}  # the oldest of alice's three went
    assert set(spam_tab.experiments(registry, None, mallory)["classifier"]) == {"spam", mallorys}
    full = JobRunner(TrainLimits(runs_dir=runner.limits.runs_dir, threads=1, max_disk_mb=1))
    with pytest.raises(ValueError, match="fill their disk"):
        spam_tab.upload_classifier(full, registry, archive, None, mallory)


def test_in_public_mode_an_owner_shares_a_run_with_every_visitor_and_takes_it_back(monkeypatch, tmp_path,
                                                                                    shipped_models):
    """"Other visitors see only shared models (the shipped ones and what their owner chose to publish)": a teacher's
    classifier shared with the class is listed, picked and downloaded by every visitor; only its owner shares it or
    takes it back; a shipped model or a name outside the runs folder is refused."""
    from tests.ui.helpers import session
    from ui import spam_tab
    from ui.registry import ModelRegistry
    from ui.training_panel import share_run

    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1))
    registry = ModelRegistry(shipped_models, runs_root=runner.limits.runs_dir)
    archive = spam_tab.download_classifier(registry, "spam")
    monkeypatch.setenv("GPT_APP_MODE", "public")
    teacher, student = session("teacher-session"), session("student-session")
    name = spam_tab.upload_classifier(runner, registry, archive, None, teacher)[0].split("`")[1]

    def seen_by(who) -> bool:
        return name in set(spam_tab.experiments(registry, None, who)["classifier"])

    assert seen_by(teacher) and not seen_by(student)
    with pytest.raises(ValueError, match="not one of your runs"):
        share_run(registry, name, None, student, shared=True)
    assert "is shared" in share_run(registry, name, None, teacher, shared=True)
    assert seen_by(student)
    assert spam_tab.download_classifier(registry, name, None, student).endswith(".zip")
    assert spam_tab.classify(registry, "WIN a prize", name, None, student)[0]
    with pytest.raises(ValueError, match="not one of your runs"):
        share_run(registry, name, None, student, shared=False)  # a student cannot take it back either
    assert "yours alone" in share_run(registry, name, None, teacher, shared=False)
    assert not seen_by(student)
    for bad in ("spam", "run:../runs", "run:", "run:" + "x" * 300, None):
        with pytest.raises(ValueError):
            share_run(registry, bad, None, teacher, shared=True)
