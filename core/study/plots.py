"""Optuna's plots as light HTML pages: one per plot, all sharing one copy of plotly.js.

A page that embeds plotly.js weighs 4.6 MB; these hold only their figure and
load the study's one `plots/plotly.min.mjs`. MLflow's UI shows an HTML artifact
in a sandboxed iframe made from a blob: URL, where a relative URL resolves to
nothing, so the page asks the UI's own server for the file (its `get-artifact`
endpoint, at the address the page was opened from); opened from disk beside
the file (a downloaded `plots/` folder, or the store's artifacts folder), it
takes the file next to it. The file ends in .mjs because MLflow serves .js as
text/plain, which browsers refuse to run as a script.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import optuna

PLOTLY_FILE = "plotly.min.mjs"
FOLDER = "plots"

# Where plotly.js may be: beside the page, or through the MLflow UI that shows it (the page's referrer, or the
# origin inside its blob: URL). The first that loads draws the figure.
LOADER = """
var FIGURE = %(figure)s;
var PLOTLY_PATH = %(path)s, RUN_ID = %(run_id)s, PLOTLY_FILE = %(file)s;
function plotlySources() {
  var sources = [];
  try { sources.push(new URL(PLOTLY_FILE, document.baseURI).href); } catch (e) {}
  var page = /^https?:/.test(document.referrer) ? document.referrer : location.href.replace(/^blob:/, "");
  try {
    var base = /^https?:/.test(page) ? page.split("#")[0] : null;
    if (base) sources.push(new URL("get-artifact?path=" + encodeURIComponent(PLOTLY_PATH) + "&run_uuid="
                                   + encodeURIComponent(RUN_ID), base).href);
    var origin = new URL(location.href.replace(/^blob:/, "")).origin;
    if (/^https?:/.test(origin)) sources.push(origin + "/get-artifact?path=" + encodeURIComponent(PLOTLY_PATH)
                                             + "&run_uuid=" + encodeURIComponent(RUN_ID));
  } catch (e) {}
  return sources.filter(function (s, i) { return sources.indexOf(s) === i; });
}
function draw(sources) {
  if (!sources.length) {
    document.getElementById("plot").textContent = "plotly.js did not load: open this page in the MLflow UI, "
      + "or beside " + PLOTLY_FILE + " (the run's plots/ folder).";
    return;
  }
  var script = document.createElement("script");
  script.src = sources[0];
  script.onload = function () {
    Plotly.newPlot("plot", FIGURE.data, FIGURE.layout, {responsive: true});
  };
  script.onerror = function () { script.remove(); draw(sources.slice(1)); };
  document.head.appendChild(script);
}
draw(plotlySources());
"""

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>%(title)s</title></head>
<body style="margin:0"><div id="plot" style="width:100%%;height:95vh"></div>
<script>%(loader)s</script></body></html>
"""


def page(figure: Any, title: str, run_id: str) -> str:
    """One plot's HTML page: the figure as JSON and the loader of the shared plotly.js."""
    figure_json = figure.to_json().replace("<", "\\u003c")  # no "</script>" inside the script
    loader = LOADER % {"figure": figure_json, "path": json.dumps(f"{FOLDER}/{PLOTLY_FILE}"),
                       "run_id": json.dumps(run_id), "file": json.dumps(PLOTLY_FILE)}
    return PAGE % {"title": html.escape(title), "loader": loader}


def write_plotly(folder: Path) -> Path:
    """The one plotly.js the study's pages load, from the installed plotly package (so it works offline)."""
    from plotly.offline import get_plotlyjs

    path = folder / PLOTLY_FILE
    path.write_text(get_plotlyjs(), encoding="utf-8")
    return path


def has_intermediate_values(study: optuna.Study) -> bool:
    """Whether any trial reported values as it trained (Optuna's intermediate-values plot has nothing to draw
    otherwise, and says so on the terminal)."""
    return any(trial.intermediate_values for trial in study.get_trials(deepcopy=False))
