// The postmortem editor's Write / Preview tabs. The preview itself is an htmx POST that
// returns the Markdown rendered and sanitised by the server (incidents/postmortem.py).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var write = document.getElementById("pm-tab-write");
    var preview = document.getElementById("pm-tab-preview");
    if (!write || !preview) return;
    function show(tab) {
      var previewing = tab === preview;
      write.setAttribute("aria-selected", String(!previewing));
      preview.setAttribute("aria-selected", String(previewing));
      document.getElementById("pm-write").hidden = previewing;
      document.getElementById("pm-preview").hidden = !previewing;
    }
    write.addEventListener("click", function () { show(write); });
    preview.addEventListener("click", function () { show(preview); });
  });
})();
