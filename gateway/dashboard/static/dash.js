// botvisor dashboard: live updates from the gateway's event stream (server-sent events).
// Everything works without this script (the pages are plain HTML forms and links); with it,
// the fleet table and a bot's status refetch themselves when something changes, ages tick,
// a bot's live events and pairing QR appear as they happen. No library, no build step.
(function () {
  "use strict";
  var body = document.body;
  var offset = parseFloat(body.dataset.now || "0") - Date.now() / 1000; // server clock minus ours
  function now() { return Date.now() / 1000 + offset; }

  function fmtAge(s) {
    s = Math.max(0, s);
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
  }
  function tick() {
    var cells = document.querySelectorAll("[data-since]");
    for (var i = 0; i < cells.length; i++) {
      var el = cells[i];
      el.textContent = fmtAge(now() - parseFloat(el.dataset.since)) + (el.dataset.suffix || "");
    }
  }
  setInterval(tick, 1000);

  var url = body.dataset.live;
  if (!url || !window.EventSource) return;
  var page = body.dataset.page;
  var target = document.getElementById(page === "fleet" ? "fleet-live" : "status-live");
  var liveState = document.getElementById("live-state");

  // -- refetch the server-rendered fragment (one source of truth for how a row looks) --------
  var timer = null, busy = false, again = false;
  function schedule() {
    if (timer === null) timer = setTimeout(function () { timer = null; refresh(); }, 50);
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(body.dataset.fragment + location.search, { credentials: "same-origin" }).then(function (res) {
      if (res.redirected || res.status === 401) { location.reload(); return null; }
      return res.ok ? res.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) swap(html);
    }).catch(function () {}).then(function () {
      busy = false;
      if (again) { again = false; schedule(); }
    });
  }
  function swap(html) {
    // keep the keyboard focus where it was (a link of the table is replaced by its twin)
    var focused = document.activeElement;
    var href = focused && target.contains(focused) ? focused.getAttribute("href") : null;
    target.innerHTML = html;
    if (href) {
      var links = target.querySelectorAll("a[href]");
      for (var i = 0; i < links.length; i++) if (links[i].getAttribute("href") === href) { links[i].focus(); break; }
    }
    tick();
  }

  // memory and the like change without an event: refetch now and then while the page is seen
  setInterval(function () { if (!document.hidden) schedule(); }, 10000);

  // -- the stream ---------------------------------------------------------------------------
  var source = new EventSource(url);
  function setLive(text, problem) {
    if (!liveState) return;
    liveState.hidden = false;
    liveState.textContent = text;
    liveState.className = "live" + (problem ? " problem" : "");
  }
  source.onopen = function () { setLive("● live", false); schedule(); };
  source.onerror = function () {
    setLive("reconnecting…", true);
    schedule(); // a refetch sees a sign-out or a revoked key (a redirect) and goes to the sign-in page
  };
  source.onmessage = function (e) {
    var m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    if (m.dropped) schedule();
    if (m.kind === "heartbeat") { heartbeat(m); return; }
    if (page === "bot") botEvent(m);
    if (m.kind === "hello" || m.kind === "bye" || m.kind === "state" ||
        m.type === "connection-update" || m.type === "creds-update") schedule();
  };

  function heartbeat(m) {
    var scope = page === "fleet" ? document.getElementById("bot-" + m.bot) : document.getElementById("status");
    if (!scope) return;
    var cell = scope.querySelector("[data-field=heartbeat]");
    if (cell && cell.dataset.since) cell.dataset.since = m.ts;
    var wa = scope.querySelector("[data-field=whatsapp]");
    if (wa && m.bot_status && wa.textContent.trim().indexOf(m.bot_status) !== 0) schedule();
  }

  // -- a bot's page: live events, pairing, send outcomes -------------------------------------
  var MAX_EVENTS = 100;
  function botEvent(m) {
    if (m.bot !== body.dataset.bot) return;
    appendEvent(m);
    var data = m.data || {};
    if (m.type === "connection-update") pairing(m, data);
    if (m.kind === "bye" || (m.kind === "state" && m.state !== "running")) hidePairing(false);
    if (m.type === "send-status") {
      var box = document.querySelector('[data-send-id="' + CSS.escape(String(data.id)) + '"] [data-outcome]');
      if (box) box.textContent = data.state + (data.reason ? " (" + data.reason + ")" : "");
    }
  }
  function pairing(m, data) {
    var section = document.getElementById("pairing");
    var qr = document.getElementById("qr");
    var code = document.getElementById("pair-code");
    if (data.qr && m.qr_svg) {
      qr.innerHTML = m.qr_svg; // drawn by the gateway (segno), not taken from the event's text
      qr.dataset.qrRef = m.qr_ref;
      section.hidden = false;
      document.getElementById("paired").hidden = true;
    }
    if (data.pair_code) {
      document.getElementById("pair-code-value").textContent = data.pair_code;
      code.hidden = false;
      section.hidden = false;
    }
    if (data.connection === "open") hidePairing(true);
  }
  function hidePairing(paired) {
    var section = document.getElementById("pairing");
    if (!section || section.hidden) return;
    section.hidden = true;
    document.getElementById("qr").innerHTML = "";
    delete document.getElementById("qr").dataset.qrRef;
    document.getElementById("pair-code").hidden = true; // a code is good for one life: the next one gets its own
    document.getElementById("pair-code-value").textContent = "";
    if (paired) document.getElementById("paired").hidden = false;
  }
  function appendEvent(m) {
    var list = document.getElementById("live-events");
    if (!list) return;
    var empty = document.getElementById("live-empty");
    if (empty) empty.hidden = true;
    var item = document.createElement("li");
    var head = document.createElement("div");
    head.className = "event-head";
    var type = document.createElement("span");
    type.className = "type";
    type.textContent = m.type || m.kind;
    var time = document.createElement("time");
    time.textContent = new Date(m.ts * 1000).toISOString().replace("T", " ").replace("Z", " UTC");
    var meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = "pid " + m.pid + " · seq " + m.seq;
    head.append(type, " ", time, " ", meta);
    item.append(head);
    var fields = m.data || {};
    if (m.kind === "state") fields = { state: m.state, previous: m.previous, reason: m.reason, restarts: m.restarts };
    else if (m.kind === "bye") fields = { reason: m.reason, exit_code: m.exit_code };
    else if (m.kind === "notice") fields = { level: m.level, message: m.message };
    var dl = document.createElement("dl");
    dl.className = "data";
    Object.keys(fields).forEach(function (k) {
      var v = fields[k];
      if (v === null || v === undefined) return;
      var row = document.createElement("div");
      var dt = document.createElement("dt");
      dt.textContent = k;
      var dd = document.createElement("dd");
      var text = typeof v === "string" ? v : JSON.stringify(v);
      dd.textContent = text.length > 500 ? text.slice(0, 500) + "…" : text;
      row.append(dt, dd);
      dl.append(row);
    });
    item.append(dl);
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }
})();
