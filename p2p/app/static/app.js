// p2p app: live updates (server-sent events), auto-submitting selects.
// No inline scripts anywhere (the Content-Security-Policy forbids them).
"use strict";

(function () {
  function busy(region) {
    // Do not replace a region while the reader is typing or choosing in it.
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    var open = region.querySelector("details[open]");
    return open !== null;
  }

  function scrollDown() {
    document.querySelectorAll("[data-scroll]").forEach(function (el) {
      el.scrollTop = el.scrollHeight;
    });
  }

  var pending = false;
  var running = false;

  function refresh() {
    if (running) { pending = true; return; }
    running = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (region) {
          var next = fresh.getElementById(region.id);
          if (!next || busy(region)) return;
          if (region.innerHTML !== next.innerHTML) {
            var stick = region.hasAttribute("data-scroll") &&
              region.scrollTop + region.clientHeight >= region.scrollHeight - 40;
            region.innerHTML = next.innerHTML;
            if (stick) region.scrollTop = region.scrollHeight;
          }
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () {
        running = false;
        if (pending) { pending = false; refresh(); }
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    scrollDown();
    document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    if (window.EventSource) {
      // One stream per visible page: browsers allow few connections per host,
      // so a hidden tab lets go of its stream and catches up when shown again.
      var source = null;
      var connect = function () {
        if (source) return;
        source = new EventSource("/events");
        source.addEventListener("change", refresh);
        // what changed between rendering this page (or hiding it) and connecting
        source.addEventListener("open", refresh);
      };
      var disconnect = function () {
        if (source) { source.close(); source = null; }
      };
      document.addEventListener("visibilitychange", function () {
        if (document.visibilityState === "hidden") disconnect(); else connect();
      });
      window.addEventListener("pagehide", disconnect);
      window.addEventListener("pageshow", connect);
      connect();
      document.body.setAttribute("data-live-ready", "1");
    }
  });
})();
