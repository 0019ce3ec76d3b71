// gridwatch dashboard: the only script of its pages (served as a file, CSP script-src 'self').
// Live updates: a page with sections marked data-live follows the live feed (/api/feed,
// which takes the session cookie) from the event id the page was rendered at; on each
// event it fetches itself again and swaps those sections in, without a reload.
"use strict";
(function () {
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) return;
  var after = live.getAttribute("data-after") || "0";
  var pending = null;
  var refresh = function () {
    pending = null;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
        var n = Number(document.body.getAttribute("data-refreshed") || "0") + 1;
        document.body.setAttribute("data-refreshed", String(n));
      })
      .catch(function () { /* the next event tries again */ });
  };
  // Bursts of events (a backlog after a reconnect) make one refresh.
  var soon = function () {
    if (!pending) pending = setTimeout(refresh, 250);
  };
  var feed = new EventSource("/api/feed?after=" + encodeURIComponent(after));
  [
    "alert.raised", "alert.updated", "alert.acknowledged", "alert.cleared",
    "case.opened", "case.step", "case.closed", "case.escalated", "case.acknowledged", "case.arrived"
  ].forEach(function (name) { feed.addEventListener(name, soon); });
  feed.onmessage = soon;
  feed.onopen = function () { document.body.setAttribute("data-live", "connected"); };
})();
