"""Fixtures of the tests that serve the app: the app as `python app.py` serves it (`app.serve`, its
limits included), on 127.0.0.1 and a free port, on the shipped models or a test folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from tests.helpers import free_port, make_model_folder  # noqa: E402
from ui.jobs import JobRunner, TrainLimits  # noqa: E402
from ui.registry import MODELS_DIR, SHIPPED_CLASSIFIER, SHIPPED_LANGUAGE_MODELS, ModelRegistry  # noqa: E402


@pytest.fixture(scope="session")
def shipped_models() -> Path:
    """assets/models, with every shipped model (the app's real data: 5M parameters each); they ship with the app,
    so one missing fails the tests that use them."""
    registry = ModelRegistry(MODELS_DIR)
    assert all(map(registry.has, SHIPPED_LANGUAGE_MODELS)), "a shipped language model is missing from assets/models"
    assert SHIPPED_CLASSIFIER in registry.classifier_names(), "the shipped classifier is missing from assets/models"
    return Path(MODELS_DIR)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny models (`make_model_folder`: a base, a chat model, a classifier), once per module."""
    return make_model_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tiny_registry(tiny_models: Path, runner: JobRunner) -> ModelRegistry:
    """The tiny models, with this test's own runs folder."""
    return ModelRegistry(tiny_models, runs_root=runner.limits.runs_dir)


@pytest.fixture
def runner(tmp_path: Path) -> JobRunner:
    """A job runner on this test's own runs folder, with one thread."""
    return JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1))


@pytest.fixture(scope="module")
def serve_app() -> Iterator[Callable[..., str]]:
    """`serve_app(registry, runner, limits=None)` builds and serves the app and returns its URL; closed after
    the module."""
    from app import ServeLimits, build_app, serve

    served = []

    def start(registry: ModelRegistry, runner: JobRunner, limits: ServeLimits | None = None) -> str:
        demo = build_app(registry, runner)
        port = free_port()
        serve(demo, limits or ServeLimits(), runner.limits.max_upload_mb, server_name="127.0.0.1",
              server_port=port, quiet=True)
        served.append(demo)
        return f"http://127.0.0.1:{port}"

    yield start
    for demo in served:
        demo.close()
