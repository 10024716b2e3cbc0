"""The "Start here" tab's content, and what makes every figure keepable: fast, on the tiny test models."""

from __future__ import annotations

import json
import re

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest

from tests.helpers import make_model_folder
from ui import attention_tab, classroom, embeddings_view, figures, tour_tab
from ui.registry import ModelRegistry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return ModelRegistry(make_model_folder(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def demo(registry: ModelRegistry) -> gr.Blocks:
    from app import build_app

    return build_app(registry)


def test_every_step_names_a_chapter_and_links_an_existing_tab(demo):
    tabs = {block.id for block in demo.blocks.values() if isinstance(block, gr.Tab)}
    buttons = {block.elem_id for block in demo.blocks.values() if isinstance(block, gr.Button)}
    assert len(tour_tab.STEPS) == 13 and len({s.key for s in tour_tab.STEPS}) == 13
    for step in tour_tab.STEPS:
        assert re.search(r"[Cc]hapters? \d", step.chapter), step.key
        assert step.tab in tabs, step.key
        assert f"tour-open-{step.key}" in buttons, step.key
        assert all(len(text.split()) >= 8 for text in (step.idea, step.try_, step.notice)), step.key


def test_no_two_components_share_an_elem_id(demo):
    """A page's ids must be unique: a selector (the tests', the CSS's) would otherwise find the wrong element."""
    ids = [block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)]
    assert len(ids) == len(set(ids)), sorted(i for i in set(ids) if ids.count(i) > 1)


def test_the_tour_is_the_first_tab(demo):
    first = next(block for block in demo.blocks.values() if isinstance(block, gr.Tab))
    assert (first.id, first.label) == ("start", "Start here")


def test_the_tours_live_pieces_call_the_full_tabs_functions(registry):
    name = registry.default()
    html, line = tour_tab.tour_tokens(registry, name, tour_tab.TOUR_TEXT)
    assert 'class="tok' in html and "tokens**" in line
    windows = tour_tab.tour_windows(registry, name, tour_tab.TOUR_TEXT * 3)
    first = windows.iloc[0]
    assert first["input"].split(" | ")[1:] == first["target (the input shifted by one)"].split(" | ")[:-1]
    table, line = tour_tab.tour_parts(registry, name)
    assert f"{registry.load(name).model.n_params():,} parameters" in line
    assert sum(int(n.replace(",", "")) for n in table["parameters"]) == registry.load(name).model.n_params()
    fig, _ = tour_tab.tour_sampling(registry, name, 0.5)
    assert "T=0.5" in fig.layout.title.text
    fig, _ = tour_tab.tour_attention(registry, name, tour_tab.TOUR_TEXT)
    assert fig.data[0].type == "heatmap"


def test_a_model_not_on_this_machine_leaves_a_live_piece_empty_with_one_line(registry):
    def missing(registry: ModelRegistry, model_name: str) -> tuple[None, str]:
        raise FileNotFoundError(f"{model_name}: not in the Hugging Face cache")

    assert tour_tab.on_disk(missing)(registry, "gpt2-small") == (
        None, "*gpt2-small is not on this machine: the line beside the picker says why.*")


def test_a_text_too_short_for_one_window_is_said(registry):
    with pytest.raises(ValueError, match="type more than"):
        tour_tab.tour_windows(registry, registry.default(), "Hi")


def test_every_plotly_figure_offers_png_and_svg(demo):
    plots = [block for block in demo.blocks.values() if isinstance(block, gr.Plot)]
    assert len(plots) >= 15
    for plot in plots:
        config = json.loads(plot.postprocess(go.Figure(go.Scatter(x=[1], y=[2]))).plot)["config"]
        assert config["toImageButtonOptions"]["format"] == "png" and config["toImageButtonOptions"]["scale"] >= 2
        assert config["toImageButtonOptions"]["filename"] == figures.file_name(plot.label)
    assert 'format: "svg"' in classroom.HEAD and "text/csv" in classroom.HEAD  # every toolbar, from the page


def test_the_one_head_heatmap_grows_with_a_short_text_and_stays_readable_for_a_long_one():
    assert attention_tab.cell_px(10) == attention_tab.MAX_CELL_PX
    assert attention_tab.cell_px(attention_tab.MAX_TOKENS) == attention_tab.MIN_CELL_PX
    labels = [f"t{i}" for i in range(20)]
    fig = attention_tab.attention_figure(labels, np.full((2, 20, 20), 0.05), 1, "one head", 1)
    assert fig.layout.height >= 20 * attention_tab.cell_px(20)
    assert fig.layout.yaxis.constrain == "domain" and fig.data[0].colorscale  # Viridis: colour-blind safe


@pytest.mark.parametrize("dims", [2, 3])
def test_the_embeddings_scatter_names_its_axes(registry, dims):
    fig, _, _, _ = embeddings_view.embeddings(registry, registry.default(), "the, a", dims, True)
    axes = fig.layout.scene if dims == 3 else fig.layout
    assert fig.layout.title.text
    assert [axes[f"{a}axis"].title.text for a in "xyz"[:dims]] == [f"principal direction {i + 1}" for i in range(dims)]
