"""For a class: presentation mode (a toggle, remembered per browser, or `?mode=present`), a phone layout, and
the SVG and CSV buttons every figure's toolbar gets. CSS and a script for the page's head; `app.py` passes both
to `launch`.
"""

from __future__ import annotations

import gradio as gr

STORAGE_KEY = "gpt-present"
PRESENT = "present"  # the class on <body> in presentation mode

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
body.present {--text-sm: 16px; --text-md: 20px; --text-lg: 24px; --text-xl: 28px; --text-xxl: 34px}
body.present .prose, body.present .tokens, body.present .attended {font-size: 20px}
body.present .row:has(.js-plotly-plot) {flex-direction: column}
body.present .row:has(.js-plotly-plot) > * {width: 100%; min-width: 100%}
#present-toggle {max-width: 14em; align-self: center}
"""

# Runs before the app: presentation mode from the URL or the browser's memory, and every Plotly figure's extra
# toolbar buttons (set on Plotly's defaults the moment Gradio's Plotly bundle defines window.Plotly).
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
  let plotly;
  Object.defineProperty(window, "Plotly", {configurable: true, get: () => plotly, set: (p) => {
    plotly = p;
    p.setPlotConfig({modeBarButtonsToAdd: [
      {name: "svg", title: "Download plot as SVG", icon: p.Icons.camera,
       click: (gd) => p.downloadImage(gd, {format: "svg",
                                           filename: (gd._context.toImageButtonOptions || {}).filename || "figure"})},
      {name: "csv", title: "Download the numbers as CSV", icon: p.Icons.disk, click: csv},
    ]});
  }});
})();
</script>""".replace("STORAGE_KEY", STORAGE_KEY).replace("PRESENT", PRESENT)

TOGGLE_JS = f"""() => {{
  const on = document.body.classList.toggle("{PRESENT}");
  localStorage.setItem("{STORAGE_KEY}", on ? "1" : "0");
  window.dispatchEvent(new Event("resize"));
}}"""


def toggle() -> None:
    """The presentation-mode button (it runs in the browser alone)."""
    button = gr.Button("Presentation mode", size="sm", elem_id="present-toggle")
    button.click(None, js=TOGGLE_JS)
