// The consoles' only script of their own: the live-stream status, resuming the stream where it
// left off, a slow refresh while it is down, and the seconds counters. No inline script, no eval.
(function () {
  "use strict";
  var lastEventId = null;
  var POLL_MS = 3000;
  var BY_HAND = { click: 1, submit: 1, change: 1, input: 1, keyup: 1 };
  var streamOpen = false;

  // The SSE extension calls this for every (re)connection. A browser resumes a dropped stream
  // by itself with Last-Event-ID; when the extension has to open a new one, the id we saw last
  // goes along as ?last_event_id= so nothing in between is missed.
  window.htmx = window.htmx || {};
  htmx.createEventSource = function (url) {
    var target = url;
    if (lastEventId) {
      target += (url.indexOf("?") < 0 ? "?" : "&") + "last_event_id=" + encodeURIComponent(lastEventId);
    }
    var source = new EventSource(target, { withCredentials: true });
    // Events come unnamed, typed by data.type (transfer.state, handback.created, ...): each
    // becomes a DOM event on <body> the live parts of a page listen for (live:transfer,
    // live:handback, live:policy). stream.reset: what was missed cannot be replayed, refetch.
    source.addEventListener("message", function (event) {
      if (event.lastEventId) { lastEventId = event.lastEventId; }
      var type = "";
      try { type = JSON.parse(event.data).type || ""; } catch (e) { return; }
      if (type === "stream.reset") { resync(); return; }
      var kind = type.split(".")[0];
      if (kind) { htmx.trigger(document.body, "live:" + kind, { type: type }); }
    });
    return source;
  };

  function setLive(state) {
    document.body.dataset.live = state;
    var banner = document.getElementById("live-status");
    if (banner) { banner.hidden = state !== "off"; }
  }

  function resync() { htmx.trigger(document.body, "console:resync"); }

  document.addEventListener("htmx:sseOpen", function () {
    streamOpen = true;
    var wasDown = document.body.dataset.live === "off";
    setLive("on");
    if (wasDown) { resync(); }
  });
  document.addEventListener("htmx:sseError", function () { streamOpen = false; setLive("off"); });

  // While the stream is down (or before it ever opened), the live parts refresh themselves.
  window.setInterval(function () {
    if (document.body && document.body.dataset.live && document.body.dataset.live !== "on") {
      htmx.trigger(document.body, "console:poll");
    }
  }, POLL_MS);

  // A request that fails (the gateway down, a 5xx, the network gone) swaps nothing: without
  // this the button a person pressed would seem to do nothing. Say so, in words, in #notices.
  function failed(text) {
    var box = document.getElementById("notices");
    if (!box) { return; }
    var p = document.createElement("p");
    p.className = "notice tone-alarm";
    p.textContent = text;
    box.replaceChildren(p);
    box.dataset.clientError = "1";
  }
  // A background refresh that fails is not the person's doing: the live-status banner says
  // the page may be behind, and the slow refresh runs until one goes through again.
  function cause(event) {
    var cfg = event.detail && event.detail.requestConfig;
    return cfg && cfg.triggeringEvent ? cfg.triggeringEvent.type : "";
  }
  // The parts whose last background refresh failed: the page is behind until each of them
  // has refreshed again (another part's refresh going through says nothing about them).
  var behind = new Set();
  function fellBehind(event) {
    if (event.detail && event.detail.elt) { behind.add(event.detail.elt); }
    setLive("off");
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail && event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 401) { return; }  // signed out: htmx follows HX-Redirect to the sign-in page
    if (!BY_HAND[cause(event)]) { fellBehind(event); return; }
    failed("That did not go through: the gateway answered with an error (" + status + "). " +
      "Try again; if it keeps failing, carry on by phone as you would without the gateway.");
  });
  document.addEventListener("htmx:sendError", function (event) {
    if (!BY_HAND[cause(event)]) { fellBehind(event); return; }
    failed("That did not go through: the gateway could not be reached. Try again; if it keeps " +
      "failing, carry on by phone as you would without the gateway.");
  });
  // The next thing the person does that goes through clears it (not a background refresh).
  document.addEventListener("htmx:afterRequest", function (event) {
    var box = document.getElementById("notices");
    if (!event.detail.successful) { return; }
    if (BY_HAND[cause(event)] && box && box.dataset.clientError === "1") {
      box.replaceChildren();
      delete box.dataset.clientError;
    }
    // A refresh went through: that part is current again; once every part that fell behind
    // is, and the stream is open, the page is live again.
    behind.delete(event.detail.elt);
    for (var part of behind) { if (!part.isConnected) { behind.delete(part); } }
    if (streamOpen && behind.size === 0 && document.body.dataset.live === "off") { setLive("on"); }
  });

  // Keyboard focus: a button pressed and then swapped away (Cancel, Release, a refreshed
  // progress) would leave focus on <body>, and the next Tab would start from the top of the
  // page. Focus goes back to the button if it is still there (same id), else to the part's
  // headline (marked data-focus-here, tabindex=-1).
  var pressed = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (BY_HAND[cause(event)] && document.activeElement && document.activeElement !== document.body) {
      pressed = document.activeElement;
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!pressed || document.activeElement !== document.body) { return; }
    var again = pressed.id ? document.getElementById(pressed.id) : null;
    var target = again || document.querySelector("[data-focus-here]");
    pressed = null;
    if (target) { target.focus(); }
  });

  function words(seconds) {
    if (seconds < 60) { return seconds + " s"; }
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + " min " + (s < 10 ? "0" : "") + s + " s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var out = el.querySelector(".elapsed");
      var since = Date.parse(el.dataset.since);
      if (out && !isNaN(since)) { out.textContent = words(Math.max(0, Math.floor((now - since) / 1000))); }
    });
  }
  window.setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("DOMContentLoaded", tick);
})();
