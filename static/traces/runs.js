// The runs list, live: when #runs-live re-fetches, ask only for the runs newer than the newest
// row shown (its keyset cursor); the server answers with those rows for the top of the table.
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.id !== "runs-live") return;
    var newest = document.querySelector("#runs-rows tr[data-cursor]");
    if (newest) event.detail.parameters.after = newest.dataset.cursor;
  });
  // cockpit/live.js reads the refresh request from event.detail.target, which htmx 2 sets to
  // the marker being replaced (the previous message's), not the one swapped in: it misses the
  // first request and repeats the previous one. Until it reads event.target, cover the case
  // where it did not refresh this list. Drop this block once live.js is fixed.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var marker = event.target;
    if (!marker || marker.id !== "live-refresh" || marker.dataset.refresh !== "runs-live") return;
    var previous = event.detail.target;
    if (previous && previous.dataset && previous.dataset.refresh === "runs-live") return;
    var list = document.getElementById("runs-live");
    if (list) htmx.trigger(list, "live-refresh");
  });
})();
