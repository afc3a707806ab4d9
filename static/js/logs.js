// The live-log viewer: one WebSocket per .log-viewer (see hostpanel/logstream/consumers.py).
// Shows the last lines, then live ones; stdout and stderr apart; pause / resume, filter,
// download; keeps at most MAX_LINES lines in the page; reconnects with back-off and resumes
// after the last cursor it has, so no line is lost or shown twice.
(function () {
  "use strict";
  var MAX_LINES = 5000;       // lines kept in the page (oldest dropped)
  var MAX_PAUSED = 5000;      // lines held while paused (oldest dropped, counted)
  var FRAME_LINES = 500;      // lines drawn per animation frame at most (the rest wait for the next)
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
    // lines drawn in one frame go into one chunk element, which the browser skips (lays out,
    // paints and observes as one box) while it is out of view; a viewer marked data-flat (a
    // build's output, which build_output.js reads line by line) holds its lines directly
    this.chunked = !root.hasAttribute("data-flat");
    this.shown = this.box.childElementCount;  // line elements in the page (chunked viewers)
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
    // trimmed in bulk (a hidden tab draws no frames): never more than 2 * MAX_LINES waiting; what
    // is older than the newest MAX_LINES could never stay in the page anyway
    if (this.pending.length > 2 * MAX_LINES) { this.pending.splice(0, this.pending.length - MAX_LINES); }
    this.schedule();
  };

  LogViewer.prototype.schedule = function () {
    if (!this.frame) {
      var self = this;
      this.frame = requestAnimationFrame(function () { self.frame = 0; self.render(); });
    }
  };

  function push(list, items) {
    for (var i = 0; i < items.length; i++) { list.push(items[i]); }
  }

  // One frame's drawing: at most FRAME_LINES lines (the oldest waiting), so a flood the page
  // cannot draw as fast as it comes never makes a long task; the rest is drawn next frame.
  LogViewer.prototype.render = function () {
    var box = this.box;
    var atBottom = this.atBottom();
    var items = this.pending;
    var from = Math.max(0, items.length - MAX_LINES);
    var to = Math.min(items.length, from + FRAME_LINES);
    this.pending = to < items.length ? items.slice(to) : [];
    if (this.pending.length) { this.schedule(); }
    if (to === from) { return; }
    var parent = this.chunked ? document.createElement("div") : document.createDocumentFragment();
    if (this.chunked) { parent.className = "log-chunk"; }
    for (var i = from; i < to; i++) {
      parent.appendChild(this.element(items[i]));
    }
    box.appendChild(parent);
    this.shown += to - from;
    this.trim();
    if (atBottom) { box.scrollTop = box.scrollHeight; }
  };

  // The oldest lines leave the page beyond MAX_LINES, each time in one DOM operation: whole chunks,
  // then the first lines of one (a flat viewer: its first lines).
  LogViewer.prototype.trim = function () {
    var box = this.box;
    var range = document.createRange();
    if (!this.chunked) {
      var over = box.childElementCount - MAX_LINES;
      if (over > 0) {
        range.setStartBefore(box.firstElementChild);
        range.setEndAfter(box.children[over - 1]);
        range.deleteContents();
      }
      return;
    }
    var extra = this.shown - MAX_LINES;
    while (extra > 0 && box.firstElementChild) {
      var first = box.firstElementChild;
      var size = first.classList.contains("log-chunk") ? first.childElementCount : 1;
      if (size <= extra) {
        first.remove();
      } else {
        range.setStartBefore(first.firstElementChild);
        range.setEndAfter(first.children[extra - 1]);
        range.deleteContents();
        size = extra;
      }
      extra -= size;
      this.shown -= size;
    }
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
