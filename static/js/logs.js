// The live-log viewer: one WebSocket per .log-viewer (see hostpanel/logstream/consumers.py).
// Shows the last lines, then live ones; stdout and stderr apart; pause / resume, filter,
// download; keeps at most MAX_LINES lines in the page; reconnects with back-off and resumes
// after the last cursor it has, so no line is lost or shown twice.
(function () {
  "use strict";
  var MAX_LINES = 5000;       // lines kept in the page (oldest dropped)
  var MAX_PAUSED = 5000;      // lines held while paused (oldest dropped, counted)
  var REFUSED = 4404;
  var TIMES_KEY = "hostpanel.logTimes";  // the timestamps toggle, remembered per browser

  function storedTimes() {
    try { return localStorage.getItem(TIMES_KEY) === "1"; } catch (e) { return false; }
  }

  // "2026-11-29T18:01:16.656148537+00:00" -> "2026-11-29 18:01:16.656" (UTC, as conmon wrote it)
  function shortTime(time) {
    return time ? String(time).replace("T", " ").slice(0, 23) : "";
  }

  function LogViewer(root) {
    this.root = root;
    this.box = root.querySelector(".log-lines");
    this.status = root.querySelector(".log-status");
    this.pauseButton = root.querySelector(".log-pause");
    this.filterInput = root.querySelector(".log-filter");
    this.timesInput = root.querySelector(".log-times");
    this.lastCursor = null;
    this.paused = false;
    this.held = [];           // items received while paused
    this.heldDropped = 0;
    this.pending = [];        // items waiting for the next animation frame
    this.frame = 0;
    this.filter = "";
    this.retry = 0;
    this.socket = null;
    this.received = 0;        // lines received
    this.batches = 0;         // "lines" messages they came in
    this.skipped = 0;         // lines the server said it skipped
    this.stopped = false;
    var self = this;
    this.pauseButton.addEventListener("click", function () { self.setPaused(!self.paused); });
    this.filterInput.addEventListener("input", function () { self.setFilter(self.filterInput.value); });
    if (this.timesInput) {
      this.timesInput.checked = storedTimes();
      this.showTimes(this.timesInput.checked);
      this.timesInput.addEventListener("change", function () {
        self.showTimes(self.timesInput.checked);
        try { localStorage.setItem(TIMES_KEY, self.timesInput.checked ? "1" : "0"); } catch (e) { /* private mode */ }
      });
    }
    this.connect();
  }

  LogViewer.prototype.setState = function (state, text) {
    this.root.setAttribute("data-state", state);
    this.status.textContent = text;
  };

  LogViewer.prototype.url = function () {
    var path = this.root.getAttribute("data-ws-path");
    var query = this.lastCursor ? "?after=" + encodeURIComponent(this.lastCursor) : "";
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path + query;
  };

  LogViewer.prototype.connect = function () {
    var self = this;
    var socket = new WebSocket(this.url());
    this.socket = socket;
    this.setState("connecting", this.retry ? "reconnecting…" : "connecting…");
    socket.onmessage = function (event) { self.onMessage(JSON.parse(event.data)); };
    socket.onclose = function (event) {
      if (self.socket !== socket) { return; }
      if (event.code === REFUSED) {
        self.stopped = true;
        self.setState("refused", "no such container, or you may not see its logs");
        return;
      }
      var delay = Math.min(10000, 500 * Math.pow(2, self.retry));
      self.retry += 1;
      self.setState("reconnecting", "connection lost; retrying in " + Math.round(delay / 1000) + " s");
      setTimeout(function () { self.connect(); }, delay);
    };
  };

  LogViewer.prototype.onMessage = function (message) {
    if (message.type === "lines") {
      var items = new Array(message.lines.length);
      for (var i = 0; i < message.lines.length; i++) { items[i] = { line: message.lines[i] }; }
      if (items.length) {
        this.lastCursor = message.lines[items.length - 1].cursor;
        this.received += items.length;
        this.batches += 1;
        this.addAll(items);
      }
    } else if (message.type === "skipped") {
      this.skipped += message.count;
      this.add({ marker: message.count + " lines skipped (too many to show)" });
    } else if (message.type === "lost") {
      this.add({ marker: "some lines were lost while disconnected (rotated away)" });
    } else if (message.type === "error") {
      this.add({ marker: message.message });
    } else if (message.type === "ready") {
      this.retry = 0;
      this.showLive();
    }
  };

  LogViewer.prototype.showLive = function () {
    if (this.paused) {
      this.setState("paused", "paused: " + (this.held.length + this.heldDropped) + " new lines");
    } else {
      this.setState("live", "live");
    }
  };

  LogViewer.prototype.add = function (item) { this.addAll([item]); };

  // Lines arrive in frames of many (one WebSocket message per batch); they are drawn once per
  // animation frame, and the page keeps at most MAX_LINES of them, so a flood of 20,000 lines a
  // second costs one bounded DOM update per frame and input stays responsive.
  LogViewer.prototype.addAll = function (items) {
    if (this.paused) {
      push(this.held, items);
      var over = this.held.length - MAX_PAUSED;
      if (over > 0) {
        this.held.splice(0, over);
        this.heldDropped += over;
      }
      this.showLive();
      return;
    }
    push(this.pending, items);
    // trimmed in bulk (a hidden tab draws no frames): never more than 2 * MAX_LINES waiting
    if (this.pending.length > 2 * MAX_LINES) { this.pending.splice(0, this.pending.length - MAX_LINES); }
    if (!this.frame) {
      var self = this;
      this.frame = requestAnimationFrame(function () { self.frame = 0; self.render(); });
    }
  };

  function push(list, items) {
    for (var i = 0; i < items.length; i++) { list.push(items[i]); }
  }

  LogViewer.prototype.render = function () {
    var box = this.box;
    var atBottom = this.atBottom();
    var fragment = document.createDocumentFragment();
    var items = this.pending;
    this.pending = [];
    for (var i = Math.max(0, items.length - MAX_LINES); i < items.length; i++) {
      fragment.appendChild(this.element(items[i]));
    }
    box.appendChild(fragment);
    var extra = box.childElementCount - MAX_LINES;
    if (extra > 0) {  // the oldest lines go in one DOM operation
      var range = document.createRange();
      range.setStartBefore(box.firstElementChild);
      range.setEndAfter(box.children[extra - 1]);
      range.deleteContents();
    }
    if (atBottom) { box.scrollTop = box.scrollHeight; }
  };

  LogViewer.prototype.element = function (item) {
    var div = document.createElement("div");
    if (item.marker) {
      div.className = "log-marker";
      div.textContent = item.marker;
      return div;
    }
    div.className = "log-line " + (item.line.stream === "stderr" ? "log-stderr" : "log-stdout");
    div.setAttribute("data-cursor", item.line.cursor);
    div.title = item.line.time;
    // shown by CSS (::before) when the toggle is on, so the line's own text stays what it was
    div.setAttribute("data-time", shortTime(item.line.time));
    div.textContent = item.line.text;
    if (this.filter && item.line.text.toLowerCase().indexOf(this.filter) < 0) {
      div.classList.add("log-hidden");
    }
    return div;
  };

  LogViewer.prototype.setPaused = function (paused) {
    this.paused = paused;
    this.pauseButton.textContent = paused ? "Resume" : "Pause";
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      var held = this.held;
      var dropped = this.heldDropped;
      this.held = [];
      this.heldDropped = 0;
      if (dropped) { this.add({ marker: dropped + " lines skipped while paused" }); }
      this.addAll(held);
    }
    if (this.root.getAttribute("data-state") === "live" || this.root.getAttribute("data-state") === "paused") {
      this.showLive();
    }
  };

  LogViewer.prototype.showTimes = function (show) {
    this.root.classList.toggle("log-show-times", Boolean(show));
  };

  LogViewer.prototype.atBottom = function () {
    var box = this.box;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  };

  LogViewer.prototype.setFilter = function (text) {
    var follow = this.atBottom();
    this.filter = text.toLowerCase();
    var lines = this.box.querySelectorAll(".log-line");
    for (var i = 0; i < lines.length; i++) {
      var hide = this.filter && lines[i].textContent.toLowerCase().indexOf(this.filter) < 0;
      lines[i].classList.toggle("log-hidden", Boolean(hide));
    }
    if (follow) { this.box.scrollTop = this.box.scrollHeight; }
  };

  function start() {
    var roots = document.querySelectorAll(".log-viewer[data-ws-path]");
    for (var i = 0; i < roots.length; i++) {
      if (!roots[i].hpLogs) { roots[i].hpLogs = new LogViewer(roots[i]); }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
