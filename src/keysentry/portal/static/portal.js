// The dashboard's only script: a copy button for a new key, and a page that, once shown,
// reloads as the plain dashboard (the new key is not submitted again, nor shown again).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  if (document.querySelector("[data-new-key]") && window.history.replaceState) {
    var root = document.querySelector("link[rel=stylesheet]").getAttribute("href");
    window.history.replaceState(null, "", root.replace(/static\/portal\.css$/, ""));
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var said = button.parentElement.parentElement.querySelector(".copied");
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { if (said) { said.textContent = "Copied."; } };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.select();
        });
      } else {
        field.select();
        if (document.execCommand("copy")) { done(); }
      }
    });
  });
  document.querySelectorAll("input.secret").forEach(function (field) {
    field.addEventListener("focus", function () { field.select(); });
  });
});
