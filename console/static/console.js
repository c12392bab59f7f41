// The live region of a page: the server re-renders it and pushes it as
// server-sent events; this script swaps it in. No build step, no library.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.events || !window.EventSource) return;
  var pending = null;
  function busy() {
    // Do not replace a form the user is typing in.
    var a = document.activeElement;
    return a && live.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
  }
  function apply(html) {
    if (busy()) { pending = html; return; }
    pending = null;
    live.innerHTML = html;
    live.dataset.updates = String((+live.dataset.updates || 0) + 1);
  }
  live.addEventListener("focusout", function () {
    setTimeout(function () { if (pending !== null) apply(pending); }, 0);
  });
  var es = new EventSource(live.dataset.events);
  es.addEventListener("live", function (e) { document.body.classList.remove("sse-lost"); apply(e.data); });
  es.onerror = function () { document.body.classList.add("sse-lost"); };
})();
