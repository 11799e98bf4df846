// experience-sync console: the little behaviour htmx does not give (no inline
// script anywhere: the Content-Security-Policy forbids it).
(function () {
  "use strict";
  function offline(on) {
    var banner = document.getElementById("offline");
    if (banner) banner.hidden = !on;
  }
  function liveState(text, cls) {
    var el = document.getElementById("live-state");
    if (el) { el.textContent = text; el.className = "live " + cls; }
  }
  // Keep a live table short: drop the oldest rows beyond data-max-rows.
  function trim(body) {
    var max = parseInt(body.getAttribute("data-max-rows"), 10) || 300;
    while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
    var empty = document.getElementById("no-events");
    if (empty && body.rows.length) empty.remove();
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("tbody[data-max-rows]").forEach(function (body) {
      new MutationObserver(function () { trim(body); }).observe(body, { childList: true });
    });
  });
  document.addEventListener("htmx:sendError", function () { offline(true); });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail && e.detail.successful) offline(false);
  });
  document.addEventListener("htmx:sseOpen", function () { liveState("live", "on"); offline(false); });
  document.addEventListener("htmx:sseError", function () { liveState("reconnecting", "off"); offline(true); });
})();
