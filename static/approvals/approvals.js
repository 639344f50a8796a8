// The approval queue and a request page: live countdowns, the "new request" toasts, the
// argument editor with its checks and diff, and keyboard shortcuts for fast triage.
//
// Everything agent-written reaches the page through the server's escaped HTML or, here,
// through textContent only. Shortcuts never fire while a field has the focus or with a
// modifier key held. The server checks every decision again: these checks only save a trip.
(function () {
  "use strict";

  var root = null; // the page's [data-page] element
  var clockOffset = 0; // server time minus this browser's time, in ms

  // --- Countdowns ------------------------------------------------------------------------
  // Same text and colours as approvals.views.countdown: amber in the level's last quarter,
  // red in its last tenth or minute, "overdue" past the deadline.
  function countdownText(seconds) {
    if (seconds < 0) return "overdue " + countdownText(-seconds);
    var whole = Math.floor(seconds);
    if (whole < 3600) return Math.floor(whole / 60) + ":" + String(whole % 60).padStart(2, "0");
    if (whole < 86400) return Math.floor(whole / 3600) + "h " + String(Math.floor((whole % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(whole / 86400) + "d " + Math.floor((whole % 86400) / 3600) + "h";
  }

  function tick() {
    var now = (Date.now() + clockOffset) / 1000;
    document.querySelectorAll(".countdown[data-due]").forEach(function (el) {
      var due = parseFloat(el.dataset.due);
      var start = parseFloat(el.dataset.start) || due;
      var left = due - now;
      var budget = Math.max(due - start, 1);
      var state = left <= 0 ? "overdue" : left <= Math.max(60, budget * 0.1) ? "red" : left <= budget * 0.25 ? "amber" : "calm";
      el.textContent = countdownText(left);
      ["calm", "amber", "red", "overdue"].forEach(function (name) { el.classList.toggle(name, name === state); });
    });
  }

  // --- Keyboard --------------------------------------------------------------------------
  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function openHelp() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open) dialog.showModal();
  }

  function onKey(event, handlers) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var dialog = document.getElementById("shortcuts");
    if (dialog && dialog.open) return;
    var handler = event.key === "?" ? openHelp : handlers[event.key];
    if (handler) {
      event.preventDefault();
      handler(event);
    }
  }

  // --- Queue -----------------------------------------------------------------------------
  var known = null; // ids of the requests shown so far
  var newest = 0;
  var selectedId = null;
  var filtering = false;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#approval-rows tr.queue-row")); }

  function select(row) {
    rows().forEach(function (r) { r.classList.toggle("is-selected", r === row); });
    selectedId = row ? row.dataset.id : null;
    if (row) row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var index = all.findIndex(function (r) { return r.dataset.id === selectedId; });
    index = index < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(Math.max(index + step, 0), all.length - 1);
    select(all[index]);
  }

  function openSelected(hash) {
    var row = rows().find(function (r) { return r.dataset.id === selectedId; }) || rows()[0];
    if (row) window.location.href = row.dataset.href + (hash || "");
  }

  function seed() {
    known = new Set(rows().map(function (r) { return r.dataset.id; }));
    newest = Math.max.apply(null, [0].concat(rows().map(function (r) { return parseInt(r.dataset.id, 10); })));
  }

  function toast(row, isNew) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast" + (isNew ? "" : " escalated");
    var body = document.createElement("div");
    body.className = "toast-body";
    if (!isNew) {
      // Already waiting, newly shown here: escalated to a level this view shows.
      var title = document.createElement("div");
      title.className = "toast-title";
      title.textContent = "Now in the queue at L" + row.dataset.level;
      body.appendChild(title);
    }
    var link = document.createElement("a");
    link.href = row.dataset.href;
    link.textContent = (isNew ? "New approval request: " : "") + row.dataset.title;
    body.appendChild(link);
    var close = document.createElement("button");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(body);
    item.appendChild(close);
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 12000);
  }

  function afterQueueSwap() {
    var live = document.getElementById("approval-queue-live");
    if (live) document.title = "(" + live.dataset.pending + ") Approvals · Agent Cockpit";
    if (filtering || known === null) {
      filtering = false;
      seed();
    } else {
      rows().forEach(function (row) {
        if (known.has(row.dataset.id)) return;
        var isNew = parseInt(row.dataset.id, 10) > newest;
        row.classList.add("fresh");
        toast(row, isNew);
      });
      seed();
    }
    var again = rows().find(function (r) { return r.dataset.id === selectedId; });
    if (again) again.classList.add("is-selected");
    tick();
  }

  function initQueue() {
    afterQueueSwap();
    document.addEventListener("htmx:beforeRequest", function (event) {
      if (event.detail.elt && event.detail.elt.id === "queue-filters") filtering = true;
    });
    document.addEventListener("htmx:afterSettle", function () {
      if (document.getElementById("approval-queue-live")) afterQueueSwap();
    });
    document.addEventListener("htmx:historyRestore", seed);
    document.addEventListener("click", function (event) {
      var row = event.target.closest && event.target.closest("tr.queue-row");
      if (!row || event.target.closest("a, button, input, select")) return;
      window.location.href = row.dataset.href;
    });
    document.addEventListener("keydown", function (event) {
      onKey(event, {
        j: function () { move(1); },
        k: function () { move(-1); },
        Enter: function () { openSelected(""); },
        o: function () { openSelected(""); },
        a: function () { openSelected("#approve"); },
        e: function () { openSelected("#edit"); },
        r: function () { openSelected("#reject"); },
        m: function () {
          var mine = document.getElementById("id_mine");
          if (!mine) return;
          mine.checked = !mine.checked;
          mine.dispatchEvent(new Event("change", { bubbles: true }));
        },
      });
    });
  }

  // --- Request page: the editor ----------------------------------------------------------
  function canonical(value) {
    // JSON text like Python's json.dumps(sort_keys=True): the server's diff shows the same.
    if (Array.isArray(value)) return "[" + value.map(canonical).join(", ") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort().map(function (key) {
        return JSON.stringify(key) + ": " + canonical(value[key]);
      }).join(", ") + "}";
    }
    return JSON.stringify(value);
  }

  function flatten(value, prefix, into) {
    if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
      Object.keys(value).forEach(function (key) { flatten(value[key], prefix ? prefix + "." + key : key, into); });
    } else {
      into.set(prefix || "(whole)", canonical(value));
    }
    return into;
  }

  function changes(before, after) {
    var old = flatten(before, "", new Map());
    var now = flatten(after, "", new Map());
    var list = [];
    old.forEach(function (value, path) {
      if (!now.has(path)) list.push({ path: path, kind: "removed", before: value, after: "" });
      else if (now.get(path) !== value) list.push({ path: path, kind: "changed", before: value, after: now.get(path) });
    });
    now.forEach(function (value, path) {
      if (!old.has(path)) list.push({ path: path, kind: "added", before: "", after: value });
    });
    return list;
  }

  function parseObject(text) {
    // Returns [object, null] or [null, message].
    var value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return [null, "Not valid JSON: " + error.message];
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      var kind = Array.isArray(value) ? "a list" : value === null ? "null" : typeof value;
      return [null, "Edited arguments must be a JSON object ({…}), not " + kind + "."];
    }
    return [value, null];
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.className = "mono wrap" + (className ? " " + className : "");
    td.textContent = text;
    row.appendChild(td);
  }

  function showDiff(list) {
    var box = document.getElementById("edit-diff");
    if (!box) return;
    box.textContent = "";
    if (!list.length) {
      var same = document.createElement("p");
      same.className = "muted small";
      same.textContent = "No changes yet: approving these is a plain approval.";
      box.appendChild(same);
      return;
    }
    var table = document.createElement("table");
    table.className = "data compact changes";
    var head = table.createTHead().insertRow();
    ["Argument", "Asked", "Approved"].forEach(function (name) {
      var th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    });
    var body = table.createTBody();
    list.forEach(function (change) {
      var row = body.insertRow();
      row.className = "change-" + change.kind;
      cell(row, change.path);
      cell(row, change.before || "—", "before");
      cell(row, change.after || "(removed)", "after");
    });
    box.appendChild(table);
  }

  function setError(id, field, message) {
    var holder = document.getElementById(id);
    if (holder) holder.textContent = message || "";
    if (field) {
      if (message) field.setAttribute("aria-invalid", "true");
      else field.removeAttribute("aria-invalid");
      field.closest(".field") && field.closest(".field").classList.toggle("invalid", !!message);
    }
  }

  function checkEditor() {
    var area = document.getElementById("id_arguments");
    if (!area) return true;
    var parsed = parseObject(area.value);
    var button = document.getElementById("approve-edited-button");
    setError("arguments-error", area, parsed[1]);
    if (button) button.disabled = !!parsed[1];
    if (!parsed[1]) {
      var original = parseObject(area.dataset.original)[0] || {};
      showDiff(changes(original, parsed[0]));
    }
    return !parsed[1];
  }

  function openEditor() {
    var editor = document.getElementById("editor");
    var toggle = document.getElementById("edit-toggle");
    if (!editor) return;
    editor.hidden = false;
    if (toggle) toggle.setAttribute("aria-expanded", "true");
    checkEditor();
    var area = document.getElementById("id_arguments");
    area.focus();
    editor.scrollIntoView({ block: "nearest" });
  }

  // --- Request page: deciding ------------------------------------------------------------
  function disarm() {
    document.querySelectorAll("button.armed").forEach(function (b) { b.classList.remove("armed"); });
    var hint = document.getElementById("armed-hint");
    if (hint) hint.hidden = true;
  }

  function arm(button) {
    if (!button || button.disabled) return;
    disarm();
    button.classList.add("armed");
    button.focus();
    var hint = document.getElementById("armed-hint");
    if (hint) hint.hidden = false;
    button.addEventListener("blur", disarm, { once: true });
  }

  function focusReject() {
    var comment = document.getElementById("id_comment");
    if (!comment) return;
    comment.placeholder = "Why reject? The agent receives this.";
    comment.focus();
    comment.scrollIntoView({ block: "nearest" });
  }

  function onSubmit(event) {
    var decision = event.submitter ? event.submitter.value : "";
    var comment = document.getElementById("id_comment");
    if (decision === "reject" && comment && !comment.value.trim()) {
      event.preventDefault();
      setError("comment-error", comment, "Say why: a rejection needs a comment.");
      comment.focus();
      return;
    }
    setError("comment-error", comment, "");
    if (decision === "approve_edited" && !checkEditor()) {
      event.preventDefault();
      document.getElementById("id_arguments").focus();
    }
  }

  function markStale() {
    // Someone else decided (or the request expired) while this page was open.
    var live = document.getElementById("approval-live");
    var card = document.getElementById("decision");
    var form = document.getElementById("decision-form");
    if (!live || !card || !form || live.dataset.status === "pending" || card.classList.contains("is-stale")) return;
    card.classList.add("is-stale");
    var note = document.createElement("p");
    note.className = "notice notice-bad";
    note.setAttribute("role", "alert");
    note.textContent = "This request was " + live.dataset.status + " while you were reviewing it: a decision now would not count. ";
    var reload = document.createElement("a");
    reload.href = window.location.pathname;
    reload.textContent = "Reload the request";
    note.appendChild(reload);
    card.insertBefore(note, form);
  }

  function go(url) { if (url) window.location.href = url; }

  function initRequest() {
    var form = document.getElementById("decision-form");
    if (form) form.addEventListener("submit", onSubmit);
    var toggle = document.getElementById("edit-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var editor = document.getElementById("editor");
        if (editor.hidden) openEditor();
        else { editor.hidden = true; toggle.setAttribute("aria-expanded", "false"); }
      });
    }
    var area = document.getElementById("id_arguments");
    if (area) {
      var timer = null;
      area.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(checkEditor, 150);
      });
      if (!document.getElementById("editor").hidden) checkEditor();
    }
    var reset = document.getElementById("edit-reset");
    if (reset) reset.addEventListener("click", function () { area.value = area.dataset.original; checkEditor(); area.focus(); });

    var hash = window.location.hash;
    if (form && hash === "#approve") arm(document.getElementById("approve-button"));
    if (form && hash === "#edit") openEditor();
    if (form && hash === "#reject") focusReject();

    document.addEventListener("htmx:afterSettle", markStale);
    document.addEventListener("htmx:oobAfterSwap", markStale);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") disarm();
      onKey(event, {
        a: function () { if (form) arm(document.getElementById("approve-button")); },
        e: function () { if (form) openEditor(); },
        r: function () { if (form) focusReject(); },
        j: function () { go(root.dataset.next); },
        k: function () { go(root.dataset.previous); },
        u: function () { go(root.dataset.queue); },
        t: function () { go(root.dataset.trace); },
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = document.querySelector("[data-page]");
    if (!root) return;
    if (root.dataset.now) clockOffset = parseFloat(root.dataset.now) * 1000 - Date.now();
    document.querySelectorAll("[data-shortcuts]").forEach(function (button) { button.addEventListener("click", openHelp); });
    if (root.dataset.page === "queue") initQueue();
    if (root.dataset.page === "request") initRequest();
    tick();
    setInterval(tick, 1000);
  });
})();
