"""For a class: presentation mode (a toggle, remembered per browser, or `?mode=present`), a phone layout, and
the SVG and CSV buttons every figure's toolbar gets. CSS and a script for the page's head; `app.py` passes both
to `launch`.
"""

from __future__ import annotations

import gradio as gr

STORAGE_KEY = "gpt-present"
PRESENT = "present"  # the class on <body> in presentation mode
TOGGLED = "gpt-present-toggled"  # the window event that redraws every figure for the mode just chosen
FIGURE_SCALE = 1.5  # a figure's text, margins and height in presentation mode, against the figure as sent
PLOTLY_FONT_PX = 12  # Plotly's default font size, which a figure's unsized text inherits
WINDOW_MARGIN_PX = 60  # a grown figure's height stays this far under the window's: the whole figure on one screen

CSS = """
/* Phone: the tabs that do not fit are behind Gradio's "More tabs" menu, made plain to see; the picker is one line;
   wide content scrolls inside its box. */
.scroll-x, .attended, .tokens {overflow-x: auto; max-width: 100%}
@media (max-width: 640px) {
  .tab-wrapper .overflow-menu > button {border: 1px solid var(--border-color-primary); border-radius: 6px;
                                        padding: 2px 8px}
  .tab-wrapper .overflow-menu > button::after {content: " more tabs"; font-size: var(--text-sm)}
  #model-picker [data-testid="block-info"], #model-picker .info-text, #model-summary {display: none}
  .tab-wrapper .overflow-menu {display: flex !important; visibility: visible !important}
  .table-wrap, .gradio-dataframe, .plot-container {overflow-x: auto; max-width: 100%}
}
/* Presentation: larger text, figures across the whole width. */
body.present {--text-sm: 16px; --text-md: 20px; --text-lg: 24px; --text-xl: 28px; --text-xxl: 34px;
              /* the theme's sizes for labels, inputs and buttons were resolved from the small ones: again here */
              --body-text-size: var(--text-md); --input-text-size: var(--text-md);
              --block-label-text-size: var(--text-md); --block-title-text-size: var(--text-md);
              --checkbox-label-text-size: var(--text-md); --block-info-text-size: var(--text-sm);
              --button-large-text-size: var(--text-lg); --button-small-text-size: var(--text-sm);
              --chatbot-text-size: var(--text-lg)}
body.present .prose, body.present .tokens, body.present .attended {font-size: 20px}
body.present .row:has(.js-plotly-plot) {flex-direction: column}
body.present .row:has(.js-plotly-plot) > * {width: 100%; min-width: 100%}
#present-toggle {max-width: 14em; align-self: center}
"""

# Runs before the app: presentation mode from the URL or the browser's memory, and every Plotly figure's extra
# toolbar buttons (set on Plotly's defaults the moment Gradio's Plotly bundle defines window.Plotly). Gradio draws
# each figure with that object's `react`: wrapped, it draws the figure's text (ticks, titles, legends, colour bars)
# and margins FIGURE_SCALE times larger in presentation mode, its height too (within the window), and keeps the
# figure as sent, to draw it again when the mode is toggled. CSS on Plotly's SVG text would leave the margins and
# the cells as they were: labels would be cut or overlap.
HEAD = """<script>
(() => {
  const key = "STORAGE_KEY", cls = "PRESENT";
  const wanted = new URLSearchParams(location.search).get("mode");
  if (wanted) localStorage.setItem(key, wanted === cls ? "1" : "0");
  const apply = () => document.body.classList.toggle(cls, localStorage.getItem(key) === "1");
  if (document.body) apply(); else document.addEventListener("DOMContentLoaded", apply);
  const cell = (v) => v === null || v === undefined || Number.isNaN(v) ? "" : `"${String(v).replaceAll('"', '""')}"`;
  const tick = (axis, n, i) => (axis && axis.ticktext && axis.ticktext.length === n ? axis.ticktext[i] : i);
  const csv = (gd) => {
    const rows = [];
    for (const t of gd._fullData) {  // decoded: a figure's arrays may arrive as base64
      const name = t.name || t.type || "trace";
      if (t.type === "heatmap") {
        const cols = (t.z[0] || []).length;
        rows.push([name, ...Array.from({length: cols}, (_, i) => tick(gd.layout.xaxis, cols, i))]);
        Array.from(t.z).forEach((row, i) => rows.push([tick(gd.layout.yaxis, t.z.length, i), ...Array.from(row)]));
      } else if (t.x && t.y) {
        rows.push([name + " x", name + " y"]);
        Array.from(t.x).forEach((x, i) => rows.push([x, t.y[i]]));
      }
      rows.push([]);
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([rows.map(r => r.map(cell).join(",")).join("\\n")], {type: "text/csv"}));
    a.download = ((gd._context.toImageButtonOptions || {}).filename || "figure") + ".csv";
    a.click();
  };
  const present = (layout) => {
    if (!document.body.classList.contains(cls)) return layout;
    const big = structuredClone(layout);
    big.font = {...big.font, size: (big.font && big.font.size) || PLOTLY_FONT_PX};  // the size unset fonts inherit
    const grow = (o) => {
      for (const [k, v] of Object.entries(o)) {
        if (!v || typeof v !== "object") continue;
        if (k.endsWith("font") && typeof v.size === "number") v.size *= FIGURE_SCALE;
        grow(v);
      }
    };
    grow(big);
    if (big.height) {  // taller, as its text grew, but kept within the window unless it was taller already
      big.height = Math.min(big.height * FIGURE_SCALE, Math.max(big.height, innerHeight - WINDOW_MARGIN_PX));
    }
    for (const side of ["l", "r", "t", "b"]) if (big.margin && big.margin[side]) big.margin[side] *= FIGURE_SCALE;
    return big;
  };
  let plotly;
  Object.defineProperty(window, "Plotly", {configurable: true, get: () => plotly, set: (p) => {
    plotly = p;
    const react = p.react;
    p.react = (gd, data, layout, config) => {
      gd.classroomFigure = [data, layout, config];
      return react(gd, data, present(layout || {}), config);
    };
    window.addEventListener(TOGGLED, () => document.querySelectorAll(".js-plotly-plot").forEach(
      (gd) => gd.classroomFigure && p.react(gd, ...gd.classroomFigure)));
    p.setPlotConfig({modeBarButtonsToAdd: [
      {name: "svg", title: "Download plot as SVG", icon: p.Icons.camera,
       click: (gd) => p.downloadImage(gd, {format: "svg",
                                           filename: (gd._context.toImageButtonOptions || {}).filename || "figure"})},
      {name: "csv", title: "Download the numbers as CSV", icon: p.Icons.disk, click: csv},
    ]});
  }});
})();
</script>""".replace("STORAGE_KEY", STORAGE_KEY).replace("PRESENT", PRESENT).replace("TOGGLED", f'"{TOGGLED}"') \
    .replace("FIGURE_SCALE", str(FIGURE_SCALE)).replace("PLOTLY_FONT_PX", str(PLOTLY_FONT_PX)) \
    .replace("WINDOW_MARGIN_PX", str(WINDOW_MARGIN_PX))

TOGGLE_JS = f"""() => {{
  const on = document.body.classList.toggle("{PRESENT}");
  localStorage.setItem("{STORAGE_KEY}", on ? "1" : "0");
  window.dispatchEvent(new Event("{TOGGLED}"));
  window.dispatchEvent(new Event("resize"));
}}"""


def toggle() -> None:
    """The presentation-mode button (it runs in the browser alone)."""
    button = gr.Button("Presentation mode", size="sm", elem_id="present-toggle")
    button.click(None, js=TOGGLE_JS)
