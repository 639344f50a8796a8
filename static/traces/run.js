// The run page: fold and unfold the span tree, select a span, switch to the story, zoom the
// waterfall (buttons, or drag across the time axis), highlight the critical path.
//
// Rows come from the server in tree order with data-depth, so a span's subtree is the run of
// rows after it with a greater depth. Span details are fetched by htmx (hx-get on each link);
// links without hx-get (signals) are fetched here. Nothing here reads agent content: labels
// are set with textContent only.
(function () {
  "use strict";

  var zoom = { start: 0, end: 100 };
  var selected = null;

  function page() { return document.querySelector(".run-page"); }
  function tree() { return document.getElementById("span-tree"); }
  function depthOf(row) { return parseInt(row.dataset.depth, 10) || 0; }
  function isRow(el) { return el && el.classList && el.classList.contains("span-row"); }

  // --- Folding ---------------------------------------------------------------------------
  function setExpanded(row, expanded) {
    var depth = depthOf(row);
    row.setAttribute("aria-expanded", expanded ? "true" : "false");
    var toggle = row.querySelector("[data-toggle]");
    if (toggle) {
      var name = row.querySelector(".span-name");
      toggle.setAttribute("aria-label", (expanded ? "Collapse " : "Expand ") + (name ? name.textContent.trim() : "span"));
    }
    var foldedBelow = null; // depth of a folded descendant whose own subtree stays hidden
    for (var next = row.nextElementSibling; isRow(next) && depthOf(next) > depth; next = next.nextElementSibling) {
      if (!expanded) { next.hidden = true; continue; }
      var d = depthOf(next);
      if (foldedBelow !== null && d > foldedBelow) { next.hidden = true; continue; }
      foldedBelow = null;
      next.hidden = false;
      if (next.getAttribute("aria-expanded") === "false") foldedBelow = d;
    }
  }

  function reveal(row) {
    // Unfold every ancestor of the row (the nearest earlier rows of smaller depth).
    var depth = depthOf(row);
    for (var prev = row.previousElementSibling; isRow(prev) && depth > 0; prev = prev.previousElementSibling) {
      var d = depthOf(prev);
      if (d < depth) {
        if (prev.getAttribute("aria-expanded") === "false") setExpanded(prev, true);
        depth = d;
      }
    }
  }

  // --- Selection -------------------------------------------------------------------------
  function markSelected(spanId) {
    selected = spanId;
    document.querySelectorAll(".is-selected").forEach(function (el) { el.classList.remove("is-selected"); });
    if (!spanId) return;
    document.querySelectorAll('[data-span="' + CSS.escape(spanId) + '"]').forEach(function (el) {
      if (isRow(el) || el.classList.contains("story-step")) el.classList.add("is-selected");
    });
    var row = document.getElementById("row-" + spanId);
    if (row) {
      reveal(row);
      if (row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
    }
  }

  function detailUrl(spanId) {
    var root = page();
    return root.dataset.detailUrl.replace("__span__", encodeURIComponent(spanId)) + root.dataset.projectQuery;
  }

  // --- Zoom ------------------------------------------------------------------------------
  function formatMs(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 10000) return (ms / 1000).toFixed(2) + " s";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    var s = Math.round(ms / 1000);
    var sec = s % 60;
    return Math.floor(s / 60) + "m " + (sec < 10 ? "0" : "") + sec + "s";
  }

  function applyZoom() {
    var panel = tree();
    if (!panel) return;
    panel.style.setProperty("--z0", zoom.start);
    panel.style.setProperty("--z1", zoom.end);
    var axis = panel.querySelector(".wf-axis");
    if (!axis) return;
    var windowMs = parseFloat(axis.dataset.windowMs) || 0;
    axis.querySelectorAll(".wf-tick").forEach(function (tick) {
      var at = parseFloat(tick.style.getPropertyValue("--at")) || 0;
      tick.textContent = formatMs(windowMs * (zoom.start + (zoom.end - zoom.start) * at / 100) / 100);
    });
    panel.classList.toggle("zoomed", zoom.start > 0 || zoom.end < 100);
  }

  function setZoom(start, end) {
    var width = Math.max(end - start, 0.05);
    start = Math.max(0, Math.min(start, 100 - width));
    zoom = { start: start, end: Math.min(100, start + width) };
    applyZoom();
  }

  function zoomBy(factor) {
    var centre = (zoom.start + zoom.end) / 2;
    var half = Math.min(50, (zoom.end - zoom.start) * factor / 2);
    setZoom(centre - half, centre + half);
  }

  function axisFraction(axis, clientX) {
    var box = axis.getBoundingClientRect();
    return Math.max(0, Math.min(1, (clientX - box.left) / box.width));
  }

  var drag = null;
  document.addEventListener("mousedown", function (event) {
    var axis = event.target.closest && event.target.closest(".wf-axis");
    if (!axis || event.button !== 0) return;
    event.preventDefault();
    drag = { axis: axis, from: axisFraction(axis, event.clientX), to: null };
  });
  document.addEventListener("mousemove", function (event) {
    if (!drag) return;
    drag.to = axisFraction(drag.axis, event.clientX);
    var brush = drag.axis.querySelector(".wf-brush");
    var lo = Math.min(drag.from, drag.to), hi = Math.max(drag.from, drag.to);
    brush.hidden = false;
    brush.style.left = (lo * 100) + "%";
    brush.style.width = ((hi - lo) * 100) + "%";
  });
  document.addEventListener("mouseup", function () {
    if (!drag) return;
    var d = drag;
    drag = null;
    d.axis.querySelector(".wf-brush").hidden = true;
    if (d.to === null || Math.abs(d.to - d.from) < 0.01) return;
    var span = zoom.end - zoom.start;
    var lo = Math.min(d.from, d.to), hi = Math.max(d.from, d.to);
    setZoom(zoom.start + lo * span, zoom.start + hi * span);
  });

  // --- Clicks ----------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest || !page()) return;

    var toggle = target.closest("[data-toggle]");
    if (toggle) {
      var row = toggle.closest(".span-row");
      setExpanded(row, row.getAttribute("aria-expanded") !== "true");
      return;
    }

    var link = target.closest("a.span-link[data-span]");
    if (link) {
      markSelected(link.dataset.span);
      if (!link.hasAttribute("hx-get") && window.htmx) {
        event.preventDefault();
        showTab("spans");
        htmx.ajax("GET", detailUrl(link.dataset.span), { target: "#span-detail", swap: "innerHTML" });
      }
      return;
    }

    var zoomButton = target.closest("[data-zoom]");
    if (zoomButton) {
      var how = zoomButton.dataset.zoom;
      if (how === "in") zoomBy(0.5);
      else if (how === "out") zoomBy(2);
      else setZoom(0, 100);
      return;
    }

    var critical = target.closest("[data-toggle-critical]");
    if (critical) {
      var on = critical.getAttribute("aria-pressed") !== "true";
      critical.setAttribute("aria-pressed", on ? "true" : "false");
      tree().classList.toggle("show-critical", on);
      return;
    }

    var tab = target.closest(".tab");
    if (tab) showTab(tab.id === "tab-story" ? "story" : "spans");
  });

  function showTab(which) {
    var story = which === "story";
    var spansTab = document.getElementById("tab-spans");
    var storyTab = document.getElementById("tab-story");
    if (!spansTab || !storyTab) return;
    spansTab.setAttribute("aria-selected", story ? "false" : "true");
    storyTab.setAttribute("aria-selected", story ? "true" : "false");
    tree().hidden = story;
    document.getElementById("story-panel").hidden = !story;
    document.querySelector(".zoom").hidden = story;
  }

  // A live refresh replaces the tree: keep the zoom, the selection and the highlight, and
  // re-fetch the story if it has been opened, so it tells the run as it is now.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (!page()) return;
    var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    var storyTab = document.getElementById("tab-story");
    if (path && path.indexOf("/live/") !== -1 && storyTab && document.querySelector("#story-panel .story")) {
      htmx.ajax("GET", storyTab.getAttribute("hx-get"), { target: "#story-panel" });
    }
    applyZoom();
    if (selected) markSelected(selected);
    var critical = document.querySelector("[data-toggle-critical]");
    if (critical && tree()) tree().classList.toggle("show-critical", critical.getAttribute("aria-pressed") === "true");
  });

  document.addEventListener("DOMContentLoaded", function () {
    var root = page();
    if (!root) return;
    applyZoom();
    var shown = document.querySelector("#span-detail .span-detail");
    if (shown) markSelected(shown.dataset.span);
  });
})();
