// Live updates: applies the fragments rotad pushes over /ws to the open page, and
// reconnects (then re-reads the page) when the socket drops. Pages work without it.
(function () {
  "use strict";
  var main = document.querySelector("main");
  var watch = main && main.getAttribute("data-watch");
  var status = document.getElementById("live-status");
  if (!watch || !window.WebSocket) { return; }
  var delay = 500, connectedBefore = false;
  function say(text) { if (status) { status.textContent = text; } }
  function resync() {
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        if (fresh) { main.innerHTML = fresh.innerHTML; }
      });
  }
  function apply(update) {
    (update.fragments || []).forEach(function (f) {
      var el = document.getElementById(f.id);
      if (el) { el.outerHTML = f.html; }
    });
    if (update.resync) { resync(); }
  }
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + watch);
    ws.onopen = function () {
      delay = 500;
      say("Live updates on");
      if (connectedBefore) { resync(); }
      connectedBefore = true;
    };
    ws.onmessage = function (e) { apply(JSON.parse(e.data)); };
    ws.onclose = function () {
      say("Live updates lost; reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
