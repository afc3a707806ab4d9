// Forms marked class="confirm" ask before they submit (no inline handlers: the CSP forbids them).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.classList && form.classList.contains("confirm") && !window.confirm(form.dataset.confirm || "Sure?")) {
    event.preventDefault();
  }
});
