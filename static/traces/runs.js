// The runs list, live: when #runs-live re-fetches, ask only for the runs newer than the newest
// row shown (its keyset cursor); the server answers with those rows for the top of the table.
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.id !== "runs-live") return;
    var newest = document.querySelector("#runs-rows tr[data-cursor]");
    if (newest) event.detail.parameters.after = newest.dataset.cursor;
  });
})();
