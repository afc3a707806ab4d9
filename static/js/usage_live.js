// Per-app CPU and memory over time on two canvases: polls /t/<tenant>/usage/live/ every 3 s.
// CPU is the difference of the cgroups' cumulative CPU time between readings (cores busy).
"use strict";
(function () {
  var box = document.getElementById("live-usage");
  if (!box) { return; }
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];
  var KEEP = 60;
  var series = {};      // app -> {cpu: [], memory: []}
  var previous = null;  // the last reading
  var note = document.getElementById("live-note");

  function draw(canvasId, key) {
    var canvas = document.getElementById(canvasId);
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height, pad = 6;
    ctx.clearRect(0, 0, w, h);
    var names = Object.keys(series).sort();
    var peak = 0;
    names.forEach(function (n) { series[n][key].forEach(function (v) { peak = Math.max(peak, v); }); });
    peak = peak || 1;
    ctx.fillStyle = "#6b7280";
    ctx.font = "11px sans-serif";
    ctx.fillText(peak.toFixed(key === "cpu" ? 3 : 1), pad, 12);
    names.forEach(function (n, i) {
      var values = series[n][key];
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      values.forEach(function (v, j) {
        var x = pad + (j / (KEEP - 1)) * (w - 2 * pad);
        var y = h - pad - (v / peak) * (h - 2 * pad);
        if (j === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
      });
      ctx.stroke();
    });
  }

  function legend() {
    var list = document.getElementById("live-legend");
    list.textContent = "";
    Object.keys(series).sort().forEach(function (n, i) {
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch swatch-" + (i % COLORS.length);
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(n));
      list.appendChild(item);
    });
  }

  function push(name, key, value) {
    series[name] = series[name] || { cpu: [], memory: [] };
    var values = series[name][key];
    values.push(value);
    if (values.length > KEEP) { values.shift(); }
  }

  function take(reading) {
    Object.keys(reading.apps).forEach(function (name) {
      var now = reading.apps[name];
      push(name, "memory", now.memory_bytes / 1048576);
      var before = previous && previous.apps[name];
      if (before) {
        var seconds = reading.at - previous.at;
        push(name, "cpu", Math.max(now.cpu_ns - before.cpu_ns, 0) / (seconds * 1e9));
      }
    });
    previous = reading;
    note.textContent = reading.unavailable ? reading.unavailable + " container(s) did not answer this time." : "";
    legend();
    draw("live-cpu", "cpu");
    draw("live-memory", "memory");
  }

  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(take)
      .catch(function (e) { note.textContent = "Could not read usage (" + e + "); retrying."; })
      .finally(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();
