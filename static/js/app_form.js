// The app form (deploy and edit): shows only the fields the chosen options use (health check,
// restart retries), and refuses, before it is sent, what would take the tenant over its quota,
// saying so in words and units next to the field that asks too much. The server checks again.
"use strict";
(function () {
  var form = document.querySelector("form.app-form");
  if (!form) { return; }
  var warning = document.getElementById("quota-warning");
  var submit = form.querySelector("button[type=submit].primary");
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  var WORDS = { containers: "containers", cpu_millis: "CPU", memory_bytes: "memory", pids: "processes" };
  var FIELD = { containers: "replicas", cpu_millis: "cpu_millis", memory_bytes: "memory_mib", pids: "pids" };
  var HEALTH = { command: ["health_command"], http: ["health_port", "health_path"], tcp: ["health_port"] };
  var HEALTH_COMMON = ["health_interval", "health_timeout", "health_retries"];

  function trim(value, digits) {
    var text = value.toFixed(digits);
    return text.indexOf(".") < 0 ? text : text.replace(/0+$/, "").replace(/\.$/, "");
  }
  function amount(key, value) {
    if (key === "memory_bytes") {
      var unit = 0;
      while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
      return trim(value, 1) + " " + UNITS[unit];
    }
    if (key === "cpu_millis") {
      var cores = trim(value / 1000, 3);
      return cores + (cores === "1" ? " core" : " cores");
    }
    return String(value);
  }
  function remaining(key) {
    var row = document.querySelector('tr[data-quota="' + key + '"]');
    return row ? Number(row.dataset.remaining) : Infinity;
  }
  function number(name) {
    var input = form.elements[name];
    var value = input ? Number(input.value) : 0;
    return isFinite(value) ? value : 0;
  }
  function fieldBox(name) { return form.querySelector('.field[data-field="' + name + '"]'); }

  function checkQuota() {
    var replicas = number("replicas");
    var wanted = {
      containers: replicas,
      cpu_millis: replicas * number("cpu_millis"),
      memory_bytes: replicas * number("memory_mib") * 1024 * 1024,
      pids: replicas * number("pids")
    };
    var over = [];
    Object.keys(wanted).forEach(function (key) {
      // an edit replaces the app's current use, which the quota table already counts
      var asked = wanted[key] - Number(form.dataset["current_" + key] || 0);
      var left = remaining(key);
      var note = form.querySelector('[data-quota-note="' + FIELD[key] + '"]');
      var text = asked > left ? WORDS[key] + ": " + amount(key, asked) + " asked, " + amount(key, left) + " left" : "";
      if (text) { over.push(text); }
      if (note) { note.textContent = text; note.hidden = !text; }
    });
    if (warning) {
      warning.hidden = over.length === 0;
      warning.textContent = over.length ? "Over the quota: " + over.join("; ") : "";
    }
    if (submit) { submit.disabled = over.length > 0; }
    return over.length === 0;
  }

  function showChosen() {
    var kind = form.elements.health_kind ? form.elements.health_kind.value : "";
    var shown = kind ? (HEALTH[kind] || []).concat(HEALTH_COMMON) : [];
    Object.keys(HEALTH).concat(["_"]).forEach(function (k) {
      (HEALTH[k] || HEALTH_COMMON).forEach(function (name) {
        var box = fieldBox(name);
        if (box) { box.hidden = shown.indexOf(name) < 0; }
      });
    });
    var policy = form.elements.restart_policy;
    var retries = fieldBox("restart_max_retries");
    if (policy && retries) { retries.hidden = policy.value !== "on-failure"; }
  }

  form.addEventListener("input", checkQuota);
  form.addEventListener("change", showChosen);
  form.addEventListener("submit", function (event) {
    if (!checkQuota()) { event.preventDefault(); }
  });
  showChosen();
  checkQuota();
})();
