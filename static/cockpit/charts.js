// Charts on the agent page and the cost explorer: figures come from the server as JSON.
//
// Each <div class="chart" data-figure="ID"> is drawn from <script type="application/json"
// id="ID">, which cockpit/charts.py wrote (agent strings in it are escaped there). When a
// fold of new traffic is announced over the page's websocket, the server swaps in
// <div id="charts-tick">; the charts then fetch fresh figures from data-src on the chart grid
// and redraw them in place with Plotly.react: no page reload, zoom and hover survive.
(function () {
  "use strict";
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function drawAll(root) {
    (root || document).querySelectorAll(".chart[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.newPlot(el, figure.data, figure.layout, CONFIG);
    });
  }

  function redraw(figures) {
    Object.keys(figures).forEach(function (id) {
      var el = document.querySelector('.chart[data-figure="' + id + '"]');
      if (!el) return;
      var figure = figures[id];
      // Keep what the person zoomed to: react with the new data, the old axis ranges.
      if (el.layout && el.layout.xaxis && el.layout.xaxis.autorange === false) {
        figure.layout.xaxis = Object.assign({}, figure.layout.xaxis, {
          range: el.layout.xaxis.range, autorange: false,
        });
      }
      Plotly.react(el, figure.data, figure.layout, CONFIG);
    });
  }

  var pending = false;
  function refresh() {
    var grid = document.querySelector("[data-charts-src]");
    if (!grid || pending) return;
    pending = true;
    fetch(grid.dataset.chartsSrc, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) { if (body) redraw(body.figures); })
      .catch(function () { /* the next tick or the polling fallback tries again */ })
      .finally(function () { pending = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    var grid = document.querySelector("[data-charts-src]");
    // Without the websocket, refresh the charts on a timer instead.
    if (grid) {
      setInterval(function () { if (document.body.dataset.live !== "on") refresh(); }, 15000);
    }
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "charts-tick") refresh();
  });
})();
