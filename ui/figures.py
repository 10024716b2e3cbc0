"""Every Plotly figure of the app, drawn so that it can be kept: the toolbar saves a PNG sharp enough for slides.

`Plot` makes a `gr.Plot` that adds a Plotly config to each figure it sends (Gradio passes a figure's `config` on
to `Plotly.react`). The SVG and CSV buttons are added in the page for every figure at once (`ui.classroom.HEAD`):
they need a click handler, which a JSON config cannot carry.
"""

from __future__ import annotations

import json
import re
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

EXPORT_SCALE = 2  # the figure as drawn on the page, at twice its pixels: sharp on a slide


def file_name(label: str | None) -> str:
    """A file name from the plot's label: 'Loss curve' -> 'loss-curve'."""
    return re.sub(r"[^a-z0-9]+", "-", (label or "figure").lower()).strip("-") or "figure"


def export_config(label: str | None) -> dict[str, Any]:
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": file_name(label), "scale": EXPORT_SCALE}}


def with_config(data: PlotData | None, label: str | None) -> PlotData | None:
    """A Plotly figure's JSON with `export_config(label)` as its `config`; other plots as they are."""
    if data is None or data.type != "plotly":
        return data
    config = json.dumps(export_config(label))
    return PlotData(type="plotly", plot=f'{data.plot[:-1]}, "config": {config}}}')  # one more key of the object


def Plot(**kwargs: Any) -> gr.Plot:  # noqa: N802 - it stands where gr.Plot stood
    """`gr.Plot` whose Plotly figures carry `export_config`: PNG (and, from the page, SVG and CSV) in the toolbar.

    An instance's `postprocess` is wrapped rather than gr.Plot subclassed: Gradio writes a `.pyi` file beside the
    module of every Component subclass.
    """
    plot = gr.Plot(**kwargs)
    postprocess = plot.postprocess
    plot.postprocess = lambda value: with_config(postprocess(value), kwargs.get("label"))
    return plot
