// The deploy form refuses, before it is sent, what would take the tenant over its quota.
// The numbers come from the quota table's data attributes; the server checks again.
"use strict";
(function () {
  var form = document.getElementById("deploy-form");
  var warning = document.getElementById("quota-warning");
  var submit = document.getElementById("deploy-submit");
  if (!form || !warning || !submit) { return; }

  function remaining(key) {
    var row = document.querySelector('tr[data-quota="' + key + '"]');
    return row ? Number(row.dataset.remaining) : Infinity;
  }
  function number(name) {
    var input = form.elements[name];
    var value = input ? Number(input.value) : 0;
    return isFinite(value) ? value : 0;
  }

  function check() {
    var replicas = number("replicas");
    var wanted = {
      containers: replicas,
      cpu_millis: replicas * number("cpu_millis"),
      memory_bytes: replicas * number("memory_mib") * 1024 * 1024,
      pids: replicas * number("pids")
    };
    var over = [];
    Object.keys(wanted).forEach(function (key) {
      var left = remaining(key);
      if (wanted[key] > left) {
        over.push(key + " " + wanted[key] + " > " + left + " left (over by " + (wanted[key] - left) + ")");
      }
    });
    warning.hidden = over.length === 0;
    warning.textContent = over.length ? "Over the quota: " + over.join("; ") : "";
    submit.disabled = over.length > 0;
    return over.length === 0;
  }

  form.addEventListener("input", check);
  form.addEventListener("submit", function (event) {
    if (!check()) { event.preventDefault(); }
  });
  check();
})();
