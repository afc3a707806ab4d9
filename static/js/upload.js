// Image upload with a progress bar (XHR upload events), then the stored image's status via htmx.
"use strict";
(function () {
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var bar = document.getElementById("upload-progress");
  var message = document.getElementById("upload-message");
  var status = document.getElementById("upload-status");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    bar.hidden = false;
    bar.value = 0;
    message.textContent = "Uploading…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { bar.value = Math.round((e.loaded / e.total) * 100); }
    });
    xhr.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = { error: "unexpected answer " + xhr.status }; }
      if (xhr.status >= 400 || body.error) {
        message.textContent = "Upload failed: " + (body.error || xhr.status);
        return;
      }
      bar.value = 100;
      message.textContent = "Uploaded " + body.reference + "; checking it…";
      status.setAttribute("hx-get", body.status_url);
      status.setAttribute("hx-trigger", "load, every 2s");
      window.htmx.process(status);
    });
    xhr.addEventListener("error", function () { message.textContent = "Upload failed: the connection broke."; });
    xhr.send(new FormData(form));
  });
})();
