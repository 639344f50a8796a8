// Live updates for every page: the websocket status, refresh requests, polling while offline.
//
// A page subscribes with <div hx-ext="ws" ws-connect="/ws/live/<topic>/">. While the socket is
// open, body[data-live] is "on"; parts of the page that refresh themselves poll only when it
// is not: hx-trigger="live-refresh, every 10s[document.body.dataset.live!=='on']".
(function () {
  "use strict";
  function setLive(state) {
    document.body.dataset.live = state;
  }
  document.addEventListener("htmx:wsConnecting", function () { setLive("connecting"); });
  document.addEventListener("htmx:wsOpen", function () { setLive("on"); });
  document.addEventListener("htmx:wsClose", function () { setLive("off"); });
  document.addEventListener("htmx:wsError", function () { setLive("off"); });
  // cockpit.realtime.send_refresh swaps in <div id="live-refresh" data-refresh="ID">: ask the
  // element with that id to re-fetch itself. The event fires on the element swapped in
  // (event.detail.target is the one it replaced).
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var marker = event.target;
    if (!marker || marker.id !== "live-refresh" || !marker.dataset.refresh) return;
    var target = document.getElementById(marker.dataset.refresh);
    if (target) htmx.trigger(target, "live-refresh");
  });
})();
