/* PicoCharge gateway dashboard: plain JS, no dependencies.
 *
 * "/" is the overview (every station as a card), "/station/<id>" one station.
 * Both poll the JSON API (/api/...) every POLL_MS; charts are drawn on <canvas>.
 * Every drawn chart carries data-points (how many points it drew) and data-last
 * (the newest value) so a test can read what was drawn from the DOM.
 */
"use strict";

var POLL_MS = 4000;
var CHART_POINTS = 120;

// what the dashboard shows of a reading: key, label, unit, decimals
var READINGS = [
  ["temp_c", "Temp", "\u00b0C", 1],
  ["humidity", "Humidity", "%", 0],
  ["current_a", "Current", "A", 2],
  ["voltage_v", "Voltage", "V", 1],
  ["power_w", "Power", "W", 0],
  ["energy_wh", "Energy", "Wh", 0],
  ["chip_temp_c", "Board", "\u00b0C", 1]
];
// the charted series: key, label, unit, colour
var SERIES = [
  ["temp_c", "Temperature", "\u00b0C", "#fb923c"],
  ["humidity", "Humidity", "%", "#38bdf8"],
  ["current_a", "Current", "A", "#a78bfa"],
  ["power_w", "Power", "W", "#22c55e"]
];
var COLOUR = {};
SERIES.forEach(function (s) { COLOUR[s[0]] = s[3]; });

var $ = function (id) { return document.getElementById(id); };

// --- small helpers ----------------------------------------------------------------
function h(tag, attrs) {
  var el = document.createElement(tag);
  if (attrs) {
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") el.textContent = v;
      else if (k === "cls") el.className = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    });
  }
  for (var i = 2; i < arguments.length; i++) {
    var c = arguments[i];
    if (c === null || c === undefined) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/* [number text, unit] of a reading; W and Wh switch to kW and kWh from 10000 up. */
function fmtParts(v, decimals, unit) {
  if (v === null || v === undefined || v === "" || isNaN(v)) return ["\u2013", ""];
  var n = Number(v);
  if ((unit === "Wh" || unit === "W") && Math.abs(n) >= 10000) return [(n / 1000).toFixed(2), "k" + unit];
  if ((unit === "Wh" || unit === "W") && Math.abs(n) < 10 && n !== 0) decimals = 2;
  return [n.toFixed(decimals), unit];
}

function fmt(v, decimals, unit) {
  var p = fmtParts(v, decimals, unit);
  return p[1] ? p[0] + " " + p[1] : p[0];
}

function parseTs(ts) {
  if (!ts) return NaN;
  return Date.parse(ts.indexOf("T") > 0 ? ts : ts.replace(" ", "T"));
}

function ago(ts) {
  var t = parseTs(ts);
  if (isNaN(t)) return "never";
  var s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

/* Local time of an ISO timestamp: HH:MM:SS, with the date in front (withDate) unless it is today. */
function clock(ts, withDate) {
  var t = parseTs(ts);
  if (isNaN(t)) return ts || "";
  var d = new Date(t);
  var p = function (n) { return (n < 10 ? "0" : "") + n; };
  var hm = p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  if (!withDate || d.toDateString() === new Date().toDateString()) return hm;
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + hm;
}

// --- the API ------------------------------------------------------------------------
// The page signs in once with an API token (POST /api/session); the gateway answers with an
// HttpOnly session cookie, which this script never sees, and a CSRF token, which it sends
// back in X-CSRF-Token on every write. The token itself is not kept by the browser.
var CSRF = "";
var ROLE = "";

function ApiError(status, message) {
  this.status = status;
  this.message = message;
}

function api(method, path, body) {
  var headers = {"Accept": "application/json"};
  if (method !== "GET" && CSRF) headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, {method: method, headers: headers, cache: "no-store", credentials: "same-origin",
                      body: body === undefined ? undefined : JSON.stringify(body)})
    .catch(function () {
      throw new ApiError(0, "the gateway is unreachable (retrying)");
    })
    .then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!r.ok) {
          var msg = data && data.error ? data.error : (text || r.statusText);
          if (r.status === 401 && path !== "/api/session") {
            msg = "not signed in — sign in with an API token under Sign in";
            markToken("");
            openToken(true);
          }
          throw new ApiError(r.status, msg);
        }
        return data;
      });
    });
}

/* The header's summary, and when the page last heard from the gateway (left out on a phone). */
function summary(text) {
  var el = $("summary");
  el.textContent = text;
  el.appendChild(h("span", {cls: "stamp", text: " \u00b7 " + clock(new Date().toISOString())}));
}

function showBanner(msg) {
  var b = $("banner");
  b.textContent = msg || "";
  b.hidden = !msg;
}

// --- sign in ------------------------------------------------------------------------
function openToken(open) {
  $("token-panel").hidden = !open;
  $("btn-token").setAttribute("aria-expanded", open ? "true" : "false");
  if (open) $("token").focus();
}

function signedIn(data) {
  CSRF = data.csrf || "";
  markToken(data.role || "");
  $("token-msg").textContent = "";
  openToken(false);
}

function signIn(tok) {
  return api("POST", "/api/session", {token: tok}).then(function (data) {
    signedIn(data);
    refresh();
  }, function (e) {
    $("token-msg").textContent = e.status === 401 ? "That token was refused." : e.message;
    openToken(true);
  });
}

function setupToken() {
  $("btn-token").addEventListener("click", function () {
    if (ROLE) {       // signed in: this button signs out
      api("DELETE", "/api/session").then(function () { CSRF = ""; markToken(""); openToken(true); });
    } else {
      openToken($("token-panel").hidden);
    }
  });
  $("token-panel").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var tok = $("token").value.trim();
    $("token").value = "";
    signIn(tok);
  });
  markToken("");
}

/* The session this page already has, or the one a sign-in link (#token=...) gives; then polling starts. */
function startSession() {
  var m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", location.pathname + location.search);   // the token leaves the address bar
    return signIn(decodeURIComponent(m[1]));
  }
  return api("GET", "/api/session").then(function (data) { signedIn(data); refresh(); },
                                         function () { markToken(""); openToken(true); refresh(); });
}

function markToken(role) {
  ROLE = role;
  $("btn-token").textContent = role ? "Sign out (" + role + ")" : "Sign in";
}

// --- charts --------------------------------------------------------------------------
function series(rows, key) {
  var pts = [];
  for (var i = 0; i < rows.length; i++) {
    var v = rows[i][key];
    var t = parseTs(rows[i].ts);
    if (v !== undefined && v !== null && !isNaN(t)) pts.push([t, Number(v)]);
  }
  return pts;
}

/* Draw points [[t, v], ...] on a canvas sized by CSS. opts: colour, unit, axes (labels). */
function drawChart(canvas, pts, opts) {
  var dpr = window.devicePixelRatio || 1;
  var w = canvas.clientWidth || 300, hgt = canvas.clientHeight || 80;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  var ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  canvas._chart = {pts: pts, opts: opts};
  canvas.setAttribute("data-points", String(pts.length));
  canvas.setAttribute("data-last", pts.length ? String(pts[pts.length - 1][1]) : "");
  var axes = !!opts.axes;
  var padL = axes ? 44 : 2, padR = axes ? 10 : 2, padT = axes ? 10 : 4, padB = axes ? 20 : 4;
  ctx.font = "11px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
  if (!pts.length) {
    ctx.fillStyle = "#64748b";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("no readings yet", w / 2, hgt / 2);
    return;
  }
  var t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  var lo = Infinity, hi = -Infinity;
  pts.forEach(function (p) { if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; });
  if (hi - lo < 1e-9) { var m = Math.abs(hi) * 0.05 || 1; lo -= m; hi += m; }
  var span = hi - lo;
  lo -= span * 0.08; hi += span * 0.08;
  if (t1 === t0) { t0 -= 1000; t1 += 1000; }
  var X = function (t) { return padL + (t - t0) / (t1 - t0) * (w - padL - padR); };
  var Y = function (v) { return padT + (hi - v) / (hi - lo) * (hgt - padT - padB); };

  // grid and labels: round steps (1, 2, 2.5 or 5 times a power of ten) on the axes, 3 lines on sparklines
  ctx.strokeStyle = "rgba(148,163,184,.16)";
  ctx.lineWidth = 1;
  ctx.fillStyle = "#94a3b8";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  var step = (hi - lo) / (axes ? 4 : 2);
  if (axes) {
    var mag = Math.pow(10, Math.floor(Math.log10(step)));
    step = [1, 2, 2.5, 5, 10].map(function (f) { return f * mag; })
      .filter(function (s) { return s >= step; })[0];
  }
  var dec = 0;     // as many decimals as the step needs
  while (dec < 3 && Math.abs(Math.round(step * Math.pow(10, dec)) - step * Math.pow(10, dec)) > 1e-6) dec++;
  var first = axes ? Math.ceil(lo / step - 1e-9) * step : lo;
  for (var k = 0; first + k * step <= hi + step * 1e-6; k++) {
    var v = first + k * step;
    var y = Math.round(Y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w - padR, y); ctx.stroke();
    if (axes) ctx.fillText((Math.abs(v) < step / 1000 ? 0 : v).toFixed(dec), padL - 6, y);
  }
  if (axes) {
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(clock(new Date(t0).toISOString()).slice(0, 5), padL, hgt - 4);
    ctx.textAlign = "right";
    ctx.fillText(clock(new Date(t1).toISOString()).slice(0, 5), w - padR, hgt - 4);
  }

  // area under the line, then the line, then the newest point
  var col = opts.colour;
  ctx.beginPath();
  pts.forEach(function (p, k) { if (k) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1])); });
  var grad = ctx.createLinearGradient(0, padT, 0, hgt - padB);
  grad.addColorStop(0, col + "55");
  grad.addColorStop(1, col + "00");
  ctx.save();
  ctx.lineTo(X(pts[pts.length - 1][0]), hgt - padB);
  ctx.lineTo(X(pts[0][0]), hgt - padB);
  ctx.closePath();
  ctx.fillStyle = grad;
  ctx.fill();
  ctx.restore();
  ctx.beginPath();
  pts.forEach(function (p, k) { if (k) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1])); });
  ctx.strokeStyle = col;
  ctx.lineWidth = axes ? 2 : 1.75;
  ctx.lineJoin = "round";
  ctx.stroke();
  var last = pts[pts.length - 1];
  ctx.beginPath();
  ctx.arc(X(last[0]), Y(last[1]), axes ? 3.5 : 2.5, 0, Math.PI * 2);
  ctx.fillStyle = col;
  ctx.fill();
}

function redrawAll() {
  var cs = document.querySelectorAll("canvas");
  for (var i = 0; i < cs.length; i++) {
    if (cs[i]._chart) drawChart(cs[i], cs[i]._chart.pts, cs[i]._chart.opts);
  }
}

// --- pieces shared by both pages --------------------------------------------------
function statusPill(el, st) {
  var s = st.status || "no status";
  if (st.state && st.state !== "accepted") s = st.state;
  el.className = "pill " + (st.state && st.state !== "accepted" ? st.state : (st.status || "none"));
  el.textContent = s;
}

/* When the station was last heard of: its last boot or status notification, or its newest reading. */
function lastHeard(st) {
  var a = st.last_seen, b = (st.last_reading || {}).ts;
  if (!a || !b) return a || b || null;
  return parseTs(a) >= parseTs(b) ? a : b;
}

function nowGrid(box, last) {
  box.textContent = "";
  READINGS.forEach(function (r) {
    var v = last ? last[r[0]] : undefined;
    var p = fmtParts(v, r[3], r[2]);
    box.appendChild(h("div", {cls: "kv", "data-key": r[0], "data-value": v === undefined ? "" : String(v)},
      h("small", {text: r[1]}), h("b", {}, p[0], p[1] ? h("span", {cls: "unit", text: p[1]}) : null)));
  });
  var when = last && last.ts ? ago(last.ts).replace(" ago", "") : "\u2013";
  box.appendChild(h("div", {cls: "kv", "data-key": "ts", "data-value": last && last.ts ? last.ts : "",
                            title: last && last.ts ? clock(last.ts, true) : "no reading yet"},
    h("small", {text: "Reading"}), h("b", {}, when, last && last.ts ? h("span", {cls: "unit", text: "ago"}) : null)));
}

// --- overview ---------------------------------------------------------------------
var cards = {};     // station id -> {el, canvases}

function cardFor(st) {
  var c = cards[st.id];
  if (c) return c;
  var href = "/station/" + encodeURIComponent(st.id);
  var el = h("article", {cls: "card", "data-station": st.id});
  var head = h("a", {cls: "card-head", href: href},
    h("span", {cls: "dot"}), h("h2", {text: st.id}), h("span", {cls: "pill"}));
  var sub = h("p", {cls: "card-sub"});
  var grid = h("div", {cls: "grid"});
  var sparks = h("div", {cls: "sparks"});
  var canvases = {};
  SERIES.forEach(function (s) {
    var cv = h("canvas", {cls: "spark", "data-key": s[0], "aria-label": s[1] + " chart"});
    canvases[s[0]] = cv;
    sparks.appendChild(h("div", {cls: "spark-box"},
      h("div", {cls: "spark-label"}, h("i", {style: "background:" + s[3]}), s[1] + " ",
        h("span", {cls: "spark-val", "data-key": s[0]})), cv));
  });
  var pend = h("div", {cls: "pending-box", hidden: true},
    h("span", {text: "Waiting for an operator."}),
    h("button", {type: "button", cls: "primary", text: "Accept",
                 onclick: function () { setState(st.id, "accept"); }}),
    h("button", {type: "button", cls: "danger", text: "Reject",
                 onclick: function () { setState(st.id, "reject"); }}));
  el.appendChild(head);
  el.appendChild(sub);
  el.appendChild(pend);
  el.appendChild(grid);
  el.appendChild(h("a", {cls: "sparks-link", href: href, "aria-label": "charts of " + st.id}, sparks));
  c = cards[st.id] = {el: el, head: head, sub: sub, grid: grid, pend: pend, canvases: canvases, rows: [],
                      shown: !watcher};
  if (watcher) watcher.observe(el);
  return c;
}

function setState(sid, what) {
  api("POST", "/api/stations/" + encodeURIComponent(sid) + "/" + what)
    .then(function () { showBanner(""); refresh(); })
    .catch(function (e) { showBanner(what + " " + sid + ": " + e.message); });
}

// Only cards on screen fetch their chart readings: a fleet of thousands would otherwise cost
// the gateway one readings query per station per poll. A card scrolled into view is fetched
// at once (a new card waits for the observer's first word, which comes right after it is added).
var watcher = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
  var fresh = false;
  entries.forEach(function (e) {
    var c = cards[e.target.getAttribute("data-station")];
    if (!c) return;
    if (e.isIntersecting && !c.shown) fresh = true;
    c.shown = e.isIntersecting;
  });
  if (fresh && document.body.getAttribute("data-loaded") === "overview") refreshSoon();
}, {rootMargin: "200px"}) : null;

function renderCard(st, rows) {
  var c = cardFor(st);
  rows = rows || c.rows;
  c.head.querySelector(".dot").className = "dot" + (st.connected ? " on" : "");
  statusPill(c.head.querySelector(".pill"), st);
  var last = st.last_reading || {};
  var bits = [st.connected ? "connected" : "offline"];
  var seen = lastHeard(st);
  if (seen) bits.push("seen " + ago(seen));
  if (st.error_code && st.error_code !== "NoError") bits.push(st.error_code);
  c.sub.textContent = bits.join(" \u00b7 ");
  c.sub.className = "card-sub" + (st.connected ? "" : " off");
  c.pend.hidden = st.state !== "pending";
  nowGrid(c.grid, last);
  c.rows = rows;
  SERIES.forEach(function (s) {
    var pts = series(rows, s[0]);
    drawChart(c.canvases[s[0]], pts, {colour: s[3], unit: s[2]});
    var r = READINGS.filter(function (x) { return x[0] === s[0]; })[0];
    c.el.querySelector(".spark-val[data-key='" + s[0] + "']").textContent =
      pts.length ? fmt(pts[pts.length - 1][1], r[3], r[2]) : "";
  });
}

function pollOverview() {
  return api("GET", "/api/stations").then(function (list) {
    return Promise.all(list.map(function (st) {
      var c = cards[st.id];
      if (watcher && !(c && c.shown)) return null;   // off screen or not placed yet: charts stay as they are
      return api("GET", "/api/stations/" + encodeURIComponent(st.id) + "/readings?limit=" + CHART_POINTS)
        .catch(function () { return []; });
    })).then(function (all) {
      document.body.setAttribute("data-fetched", String(all.filter(function (r) { return r !== null; }).length));
      var box = $("cards");
      var seen = {};
      list.forEach(function (st, i) {
        seen[st.id] = true;
        var c = cardFor(st);
        if (c.el.parentNode !== box || box.children[i] !== c.el) box.insertBefore(c.el, box.children[i] || null);
        renderCard(st, all[i]);
      });
      Object.keys(cards).forEach(function (id) {
        if (!seen[id]) { cards[id].el.remove(); delete cards[id]; }
      });
      $("empty").hidden = list.length > 0;
      var on = list.filter(function (s) { return s.connected; }).length;
      summary(list.length + " station" + (list.length === 1 ? "" : "s") + " \u00b7 " + on + " connected");
      document.body.setAttribute("data-loaded", "overview");
    });
  });
}

// --- station page ----------------------------------------------------------------
var current = null;     // station id on the station page
var running = null;     // its running transaction (the newest without stop_ts)

function stationPath(sid, rest) {
  return "/api/stations/" + encodeURIComponent(sid) + (rest ? "/" + rest : "");
}

function pollStation() {
  var sid = current;
  return Promise.all([
    api("GET", stationPath(sid)),
    api("GET", stationPath(sid, "readings?limit=" + (CHART_POINTS * 3))),
    api("GET", stationPath(sid, "transactions")),
    api("GET", stationPath(sid, "status-history"))
  ]).then(function (r) {
    renderStation(r[0], r[1], r[2], r[3]);
    summary(r[0].connected ? "connected" : "offline");
    document.body.setAttribute("data-loaded", "station");
  });
}

function renderStation(st, rows, txs, hist) {
  document.title = st.id + " \u00b7 PicoCharge";
  $("st-id").textContent = st.id;
  $("st-dot").className = "dot" + (st.connected ? " on" : "");
  var link = $("st-link");
  link.textContent = st.connected ? "connected" : "offline";
  link.className = "pill " + (st.connected ? "online" : "offline");
  statusPill($("st-status"), st);
  var meta = [];
  if (st.vendor || st.model) meta.push([st.vendor, st.model].filter(Boolean).join(" "));
  if (st.firmware) meta.push("firmware " + st.firmware);
  meta.push("last seen " + ago(lastHeard(st)));
  if (st.error_code && st.error_code !== "NoError") meta.push("error " + st.error_code);
  if (st.thingspeak_channel) meta.push("ThingSpeak channel " + st.thingspeak_channel);
  $("st-meta").textContent = meta.join(" \u00b7 ");
  $("st-pending").hidden = st.state !== "pending";
  nowGrid($("st-now"), st.last_reading || {});

  SERIES.forEach(function (s) {
    var pts = series(rows, s[0]);
    drawChart($("c-" + s[0]), pts, {colour: s[3], unit: s[2], axes: true});
    var r = READINGS.filter(function (x) { return x[0] === s[0]; })[0];
    $("v-" + s[0]).textContent = pts.length ? fmt(pts[pts.length - 1][1], r[3], r[2]) : "";
  });

  running = null;
  var tb = $("tx").querySelector("tbody");
  tb.textContent = "";
  txs.forEach(function (t) {
    var open = !t.stop_ts;
    if (open && running === null) running = t;
    var kwh = (t.meter_stop !== null && t.meter_stop !== undefined)
      ? ((t.meter_stop - t.meter_start) / 1000).toFixed(3) + " kWh" : "";
    tb.appendChild(h("tr", {"data-tx": String(t.id), cls: open ? "open" : null},
      h("td", {text: String(t.id)}), h("td", {cls: "narrow-hide", text: String(t.connector)}), h("td", {text: t.id_tag}),
      h("td", {text: clock(t.start_ts, true)}),
      h("td", {}, open ? h("span", {cls: "pill Charging", text: "running"}) : clock(t.stop_ts, true)),
      h("td", {text: kwh}), h("td", {text: t.reason || ""})));
  });
  $("tx").hidden = !txs.length;
  $("tx-empty").hidden = txs.length > 0;
  var stop = $("btn-stop");
  stop.disabled = running === null;
  stop.textContent = running ? "Stop #" + running.id : "Stop";
  stop.title = running ? "RemoteStopTransaction for transaction " + running.id : "no transaction running";

  var hb = $("hist").querySelector("tbody");
  hb.textContent = "";
  hist.forEach(function (e) {
    var st2 = e.status ? h("span", {cls: "pill " + e.status, text: e.status}) : "";
    hb.appendChild(h("tr", {}, h("td", {text: clock(e.ts, true)}),
      h("td", {cls: "narrow-hide", text: e.connector === null || e.connector === undefined ? "" : String(e.connector)}),
      h("td", {}, st2), h("td", {text: e.error_code && e.error_code !== "NoError" ? e.error_code : ""}),
      h("td", {text: e.info || ""})));
  });
  $("hist").hidden = !hist.length;
  $("hist-empty").hidden = hist.length > 0;
}

function command(label, name, body, btn) {
  var out = $("st-result");
  out.className = "result busy";
  out.textContent = label + ": sent, waiting for " + current + "\u2026";
  if (btn) btn.disabled = true;
  return api("POST", stationPath(current, name), body)
    .then(function (answer) {
      var st = answer && answer.status ? answer.status : JSON.stringify(answer);
      out.className = "result " + (st === "Accepted" ? "ok" : "warn");
      out.textContent = label + ": " + current + " answered " + st;
      refresh();
    })
    .catch(function (e) {
      out.className = "result bad";
      out.textContent = label + " failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message;
    })
    .then(function () { if (btn) btn.disabled = false; if (btn === $("btn-stop")) btn.disabled = running === null; });
}

function setupStation() {
  $("btn-start").addEventListener("click", function () {
    var tag = $("idtag").value.trim();
    if (!tag) {
      $("st-result").className = "result bad";
      $("st-result").textContent = "Enter an id tag first (1 to 20 characters).";
      $("idtag").focus();
      return;
    }
    command("Remote start", "remote-start", {id_tag: tag}, this);
  });
  $("btn-stop").addEventListener("click", function () {
    if (running) command("Remote stop #" + running.id, "remote-stop", {transaction_id: running.id}, this);
  });
  $("btn-soft").addEventListener("click", function () { command("Soft reset", "reset", {type: "Soft"}, this); });
  $("btn-hard").addEventListener("click", function () {
    if (window.confirm("Hard reset " + current + "? A running transaction is stopped.")) {
      command("Hard reset", "reset", {type: "Hard"}, this);
    }
  });
  $("btn-accept").addEventListener("click", function () { setState(current, "accept"); });
  $("btn-reject").addEventListener("click", function () { setState(current, "reject"); });
}

// --- the loop ----------------------------------------------------------------------
var timer = null;

function refreshSoon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 150);
}

function refresh() {
  clearTimeout(timer);
  var p = current === null ? pollOverview() : pollStation();
  return p.then(function () {
    showBanner("");
    document.body.setAttribute("data-polls", String(Number(document.body.getAttribute("data-polls") || 0) + 1));
  }, function (e) {
    showBanner(e.status === 404 && current !== null ? "Unknown station " + current + ": " + e.message
                                                    : e.message);
    $("summary").textContent = e.status ? "error " + e.status : "offline";
  }).then(function () {
    timer = setTimeout(refresh, POLL_MS);
  });
}

function route() {
  var m = location.pathname.match(/^\/station\/(.+)$/);
  current = m ? decodeURIComponent(m[1]) : null;
  $("overview").hidden = current !== null;
  $("station").hidden = current === null;
  if (current !== null) $("st-id").textContent = current;
}

setupToken();
setupStation();
route();
var resizeTimer = null;
window.addEventListener("resize", function () {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(redrawAll, 100);
});
document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
startSession();
