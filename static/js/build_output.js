// A build's output box (templates/builds/_output.html): the lines stored when the page was made,
// then the live ones that static/js/logs.js adds from ws/logs/build/<id>/. Every line carries its
// cursor (1, 2, ...) in its build, so this joins the two without gap or repeat: a live line the
// page already shows is dropped, and the lines printed between the page's making and the
// socket's start are fetched once from the build's API and put in their place.
(function () {
  "use strict";

  function cursorOf(el) {
    var cursor = parseInt(el.getAttribute("data-cursor"), 10);
    return isNaN(cursor) ? 0 : cursor;
  }

  function storedLine(line) {
    var div = document.createElement("div");
    div.className = "log-line " + (line.stream === "stderr" ? "log-stderr" : "log-stdout") +
      " build-" + line.stream + " build-stored";
    div.setAttribute("data-cursor", line.cursor);
    div.textContent = line.text;
    return div;
  }

  function BuildOutput(viewer) {
    this.box = viewer.querySelector(".log-lines");
    this.url = viewer.getAttribute("data-output-url");
    this.fetched = false;
    this.highest = 0;         // the highest cursor shown, stored or live
    var stored = this.box.querySelectorAll(".build-stored");
    if (stored.length) { this.highest = cursorOf(stored[stored.length - 1]); }
    var self = this;
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var added = records[i].addedNodes;
        for (var j = 0; j < added.length; j++) { self.onLine(added[j]); }
      }
    }).observe(this.box, { childList: true });
  }

  BuildOutput.prototype.onLine = function (node) {
    if (node.nodeType !== 1 || node.classList.contains("build-stored") || !node.hasAttribute("data-cursor")) {
      return;
    }
    var cursor = cursorOf(node);
    if (cursor <= this.highest) {
      node.remove();  // shown already, from the stored lines
      return;
    }
    if (cursor > this.highest + 1 && !this.fetched) {
      this.fetched = true;
      this.fill(this.highest, cursor);
    }
    this.highest = cursor;
  };

  BuildOutput.prototype.fill = function (after, before) {
    var box = this.box;
    fetch(this.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { output: [] }; })
      .then(function (build) {
        var fragment = document.createDocumentFragment();
        (build.output || []).forEach(function (line) {
          var cursor = parseInt(line.cursor, 10);
          if (cursor > after && cursor < before) { fragment.appendChild(storedLine(line)); }
        });
        var next = null;
        var lines = box.children;
        for (var i = 0; i < lines.length && next === null; i++) {
          if (cursorOf(lines[i]) >= before) { next = lines[i]; }
        }
        box.insertBefore(fragment, next);
      })
      .catch(function () { /* the status part swaps in the whole output when the build ends */ });
  };

  function start() {
    var viewers = document.querySelectorAll(".build-output[data-output-url]");
    for (var i = 0; i < viewers.length; i++) {
      if (!viewers[i].hpBuildOutput) { viewers[i].hpBuildOutput = new BuildOutput(viewers[i]); }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
