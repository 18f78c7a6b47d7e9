// History on the status page: keeps each gate card's timeline and sparklines (drawn by
// the server) across the live redraws of status.js, and refreshes them, with the recent
// checks, from the server-rendered page every 30 s.
(function () {
  "use strict";

  var refreshMs = 30000;
  var sections = {};

  function localize(node) {
    var moment = new Date(node.getAttribute("datetime"));
    if (!isNaN(moment.getTime())) node.textContent = moment.toLocaleTimeString();
  }

  function remember(root) {
    root.querySelectorAll("[data-history]").forEach(function (node) {
      sections[node.dataset.history] = node;
    });
  }

  function attach() {
    document.querySelectorAll("#gate-list [data-gate]").forEach(function (card) {
      var wanted = sections[card.dataset.gate];
      if (!wanted) return;
      var current = card.querySelector("[data-history]");
      if (current === wanted) return;
      if (current) current.replaceWith(wanted);
      else card.appendChild(wanted);
    });
  }

  function refresh() {
    fetch("/", { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        fresh.querySelectorAll("time[datetime]").forEach(localize);
        remember(fresh);
        var recent = fresh.getElementById("recent");
        var shown = document.getElementById("recent");
        if (recent && shown) shown.replaceWith(document.adoptNode(recent));
        attach();
      })
      .catch(function () { /* keep what is shown; status.js reports the connection */ })
      .then(function () { window.setTimeout(refresh, refreshMs); });
  }

  remember(document);
  var list = document.getElementById("gate-list");
  if (list) new MutationObserver(attach).observe(list, { childList: true });
  window.setTimeout(refresh, refreshMs);
})();
