// Charts inside analysis results that htmx swaps in (cohort trends): charts.js draws the
// charts present at page load; these arrive later, when the polled analysis is done.
(function () {
  "use strict";
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  document.addEventListener("htmx:afterSettle", function () {
    if (typeof Plotly === "undefined") return;
    // Plotly marks the charts it drew with .js-plotly-plot: draw only the new ones.
    document.querySelectorAll(".chart[data-figure]:not(.js-plotly-plot)").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.newPlot(el, figure.data, figure.layout, CONFIG);
    });
  });
})();
