/* PicoCharge gateway dashboard: plain JS, no dependencies.
 *
 * "/" is the overview: a page of stations as cards (GET /api/fleet: search, filters, paging,
 * the fleet's summary counts), kept live by the gateway's Server-Sent Events (GET /api/events,
 * following the stations of the page). "/station/<id>" is one station, polled every POLL_MS.
 * Reading labels and units come from GET /api/fields (firmware/fields.py): nothing here names
 * a reading. Charts are drawn on <canvas>; every drawn chart carries data-points (how many
 * points it drew), data-last (the newest value) and data-gaps (breaks in the line where no
 * readings came) so a test can read what was drawn from the DOM.
 *
 * Nothing old is shown as current: a reading older than STALE_S, any value of an offline
 * station, and current and power of a station that is not charging are greyed, with their age
 * or reason; an offline station shows "offline since ..." and its last known status as such.
 */
"use strict";

var POLL_MS = 4000;
var CHART_POINTS = 120;
var PAGE_SIZE = 50;
var STALE_S = 1200;     // a reading older than this is old (idle stations report every 900 s by default)
var CHARGING = {Charging: 1, SuspendedEV: 1, SuspendedEVSE: 1};
var LIVE_WHEN_CHARGING = {current_a: 1, power_w: 1};     // meaningful only while a transaction draws
// how a reading is shown: decimals per key (formatting, not vocabulary) and the charted keys' colours
var DECIMALS = {temp_c: 1, humidity: 0, current_a: 2, voltage_v: 1, power_w: 0, energy_wh: 0, chip_temp_c: 1};
var SERIES_COLOURS = [["temp_c", "#fb923c"], ["humidity", "#38bdf8"], ["current_a", "#a78bfa"],
                      ["power_w", "#22c55e"]];
var READINGS = [];      // [key, label, unit symbol, decimals], from GET /api/fields
var SERIES = [];        // [key, label, unit symbol, colour]
var LABEL = {};
var COLOUR = {};
SERIES_COLOURS.forEach(function (s) { COLOUR[s[0]] = s[1]; });

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

/* [number text, unit] of a reading; W switches to kW from 10000 up. Energy stays in Wh everywhere
 * (cards, charts, the transactions table), the unit of firmware/fields.py. */
function fmtParts(v, decimals, unit) {
  if (v === null || v === undefined || v === "" || isNaN(v)) return ["\u2013", ""];
  var n = Number(v);
  if (unit === "W" && Math.abs(n) >= 10000) return [(n / 1000).toFixed(2), "k" + unit];
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

function ageS(ts) {
  var t = parseTs(ts);
  return isNaN(t) ? Infinity : Math.max(0, (Date.now() - t) / 1000);
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
      api("DELETE", "/api/session").then(function () {
        CSRF = "";
        markToken("");
        openToken(true);
        if (source) { source.close(); source = null; }
      });
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

/* Points [[t, v], ...] split where no reading came for much longer than usual: more than
 * GAP_FACTOR times the median interval between readings, and at least GAP_MIN_S. */
var GAP_FACTOR = 4, GAP_MIN_S = 60;

function splitRuns(pts) {
  if (pts.length < 2) return [pts];
  var dts = [];
  for (var i = 1; i < pts.length; i++) dts.push(pts[i][0] - pts[i - 1][0]);
  var sorted = dts.slice().sort(function (a, b) { return a - b; });
  var limit = Math.max(sorted[Math.floor(sorted.length / 2)] * GAP_FACTOR, GAP_MIN_S * 1000);
  var runs = [[pts[0]]];
  for (var k = 1; k < pts.length; k++) {
    if (dts[k - 1] > limit) runs.push([]);
    runs[runs.length - 1].push(pts[k]);
  }
  return runs;
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
    canvas.setAttribute("data-gaps", "0");
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

  // the line in runs: no line across a period without readings (a gap), each run with its area
  var runs = splitRuns(pts);
  canvas.setAttribute("data-gaps", String(runs.length - 1));
  var col = opts.colour;
  var grad = ctx.createLinearGradient(0, padT, 0, hgt - padB);
  grad.addColorStop(0, col + "55");
  grad.addColorStop(1, col + "00");
  runs.forEach(function (run) {
    ctx.beginPath();
    run.forEach(function (p, k) { if (k) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1])); });
    ctx.save();
    ctx.lineTo(X(run[run.length - 1][0]), hgt - padB);
    ctx.lineTo(X(run[0][0]), hgt - padB);
    ctx.closePath();
    ctx.fillStyle = grad;
    ctx.fill();
    ctx.restore();
    ctx.beginPath();
    run.forEach(function (p, k) { if (k) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1])); });
    if (run.length === 1) ctx.arc(X(run[0][0]), Y(run[0][1]), 1.5, 0, Math.PI * 2);
    ctx.strokeStyle = col;
    ctx.lineWidth = axes ? 2 : 1.75;
    ctx.lineJoin = "round";
    ctx.stroke();
  });
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

// --- the reading vocabulary (GET /api/fields) -------------------------------------
var fieldsLoaded = null;

function loadFields() {
  if (!fieldsLoaded) {
    fieldsLoaded = api("GET", "/api/fields").then(function (list) {
      LABEL = {};
      list.forEach(function (f) { LABEL[f.key] = f; });
      READINGS = list.map(function (f) {
        return [f.key, f.label, f.symbol, DECIMALS[f.key] === undefined ? 2 : DECIMALS[f.key]];
      });
      SERIES = SERIES_COLOURS.filter(function (c) { return LABEL[c[0]]; }).map(function (c) {
        return [c[0], LABEL[c[0]].label, LABEL[c[0]].symbol, c[1]];
      });
      var caps = document.querySelectorAll("[data-field-label]");
      for (var i = 0; i < caps.length; i++) {
        var f = LABEL[caps[i].getAttribute("data-field-label")];
        if (f) caps[i].textContent = f.label;
      }
      caps = document.querySelectorAll("[data-field-unit]");
      for (i = 0; i < caps.length; i++) {
        f = LABEL[caps[i].getAttribute("data-field-unit")];
        if (f) caps[i].textContent = f.symbol;
      }
    }, function (e) { fieldsLoaded = null; throw e; });
  }
  return fieldsLoaded;
}

function readingOf(key) {
  return READINGS.filter(function (x) { return x[0] === key; })[0];
}

// --- pieces shared by both pages --------------------------------------------------
/* The status pill: the live status of a connected station; of an offline one its last known
 * status, marked as such (never a green Charging for a station that is not there). */
function statusPill(el, st) {
  var waiting = st.state && st.state !== "accepted";
  if (!waiting && !st.connected && st.status) {
    el.className = "pill last";
    el.textContent = "last: " + st.status;
    el.title = "the last status " + st.id + " reported before it went offline";
    return;
  }
  el.className = "pill " + (waiting ? st.state : (st.status || "none"));
  el.textContent = waiting ? st.state : (st.status || "no status");
  el.title = "";
}

/* When the station was last heard of: its last frame, or its newest reading (ingest over HTTP or MQTT). */
function lastHeard(st) {
  var a = st.last_seen, b = (st.last_reading || {}).ts;
  if (!a || !b) return a || b || null;
  return parseTs(a) >= parseTs(b) ? a : b;
}

function offlineSince(st) {
  var seen = lastHeard(st);
  return seen ? "offline since " + clock(seen, true) + " (" + ago(seen) + ")" : "offline";
}

/* Why a shown value is not current ("" when it is): the station is offline, the reading is
 * old, or it is current or power of a station that does not charge now (the last charge's). */
function staleWhy(st, last, key) {
  if (!last || !last.ts) return "";
  if (st && !st.connected) return "offline";
  if (ageS(last.ts) > STALE_S) return "old";
  if (key && LIVE_WHEN_CHARGING[key] && st && !CHARGING[st.status]) return "not charging";
  return "";
}

function staleTitle(why, st, last) {
  if (why === "offline") return "last known value: " + st.id + " is " + offlineSince(st);
  if (why === "old") return "old: read " + ago(last.ts) + " (" + clock(last.ts, true) + ")";
  if (why === "not charging") return "from the last charge: " + st.id + " is " + (st.status || "not charging") + " now";
  return clock(last.ts, true);
}

function nowGrid(box, last, st) {
  box.textContent = "";
  READINGS.forEach(function (r) {
    var v = last ? last[r[0]] : undefined;
    var p = fmtParts(v, r[3], r[2]);
    var why = v === undefined ? "" : staleWhy(st, last, r[0]);
    box.appendChild(h("div", {cls: "kv" + (why ? " stale" : ""), "data-key": r[0], "data-stale": why || null,
                              "data-value": v === undefined ? "" : String(v), title: why ? staleTitle(why, st, last) : null},
      h("small", {text: r[1]}), h("b", {}, p[0], p[1] ? h("span", {cls: "unit", text: p[1]}) : null)));
  });
  var has = last && last.ts;
  var why = has ? staleWhy(st, last, null) : "";
  box.appendChild(h("div", {cls: "kv" + (why ? " stale" : ""), "data-key": "ts", "data-value": has ? last.ts : "",
                            "data-stale": why || null,
                            title: has ? (why ? staleTitle(why, st, last) : clock(last.ts, true)) : "no reading yet"},
    h("small", {text: "Reading"}), h("b", {}, has ? ago(last.ts).replace(" ago", "") : "\u2013",
                                     has ? h("span", {cls: "unit", text: "ago"}) : null)));
}

/* The export links of a station (sid) or of every station (null), for the period of the page's form. */
function exportLinks(box, sid) {
  var from = box.querySelector("input[name=from]").value, to = box.querySelector("input[name=to]").value;
  var q = [];
  if (from) q.push("from=" + encodeURIComponent(from + "T00:00:00Z"));
  if (to) q.push("to=" + encodeURIComponent(to + "T00:00:00Z"));
  var base = sid === null ? "/api/" : "/api/stations/" + encodeURIComponent(sid) + "/";
  var links = box.querySelectorAll("a[data-export]");
  for (var i = 0; i < links.length; i++) {
    links[i].href = base + links[i].getAttribute("data-export") + ".csv" + (q.length ? "?" + q.join("&") : "");
  }
}

function setupExport(id, sidFn) {
  var box = $(id);
  var inputs = box.querySelectorAll("input");
  for (var i = 0; i < inputs.length; i++) {
    inputs[i].addEventListener("change", function () { exportLinks(box, sidFn()); });
  }
  return function () { exportLinks(box, sidFn()); };
}

// --- overview ---------------------------------------------------------------------
// A page of PAGE_SIZE stations (GET /api/fleet with the search and filters), the fleet's counts
// at the top, and the gateway's events (GET /api/events?ids=<the page>) for what changes: a
// changed station is drawn again, and a card on screen fetches its new readings.
var cards = {};     // station id -> {el, canvases, rows, shown}
var view = {page: 1, q: "", status: "", connected: "", faulted: "", hot: ""};
var pageIds = [];
var source = null, sourceIds = "";
var fetchedCharts = 0;

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
      h("div", {cls: "spark-label", title: s[1]}, h("i", {style: "background:" + s[3]}),
        h("span", {cls: "spark-name", text: s[1]}), h("span", {cls: "spark-val", "data-key": s[0]})), cv));
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
  c = cards[st.id] = {el: el, head: head, sub: sub, grid: grid, pend: pend, canvases: canvases, rows: null,
                      shown: !watcher, st: st, seq: null, loading: false};
  if (watcher) watcher.observe(el);
  return c;
}

function setState(sid, what) {
  api("POST", "/api/stations/" + encodeURIComponent(sid) + "/" + what)
    .then(function () { showBanner(""); refresh(); })
    .catch(function (e) { showBanner(what + " " + sid + ": " + e.message); });
}

// Only cards on screen fetch their chart readings: a page of 50 would otherwise cost 50 readings
// queries. A card scrolled into view is fetched at once.
var watcher = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
  entries.forEach(function (e) {
    var c = cards[e.target.getAttribute("data-station")];
    if (!c) return;
    c.shown = e.isIntersecting;
    if (c.shown) chartsFor(c);
  });
}, {rootMargin: "200px"}) : null;

/* The card's chart readings: all of them the first time, then the ones after the newest it has. */
function chartsFor(c) {
  var seq = (c.st.last_reading || {}).seq;
  if (!c.shown || c.loading || (c.rows !== null && c.seq === seq)) return;
  var sid = c.st.id;
  var since = c.rows && c.rows.length ? "&since=" + encodeURIComponent(c.rows[c.rows.length - 1].ts) : "";
  c.loading = true;
  pending(1);
  api("GET", "/api/stations/" + encodeURIComponent(sid) + "/readings?limit=" + CHART_POINTS + since)
    .then(function (rows) {
      if (c.rows === null) {
        fetchedCharts += 1;
        document.body.setAttribute("data-fetched", String(fetchedCharts));
        c.rows = rows;
      } else {
        var have = {};
        c.rows.forEach(function (r) { have[r.seq] = 1; });
        c.rows = c.rows.concat(rows.filter(function (r) { return !have[r.seq]; })).slice(-CHART_POINTS);
      }
      c.seq = seq;
      drawCardCharts(c);
    }, function () { /* the next change tries again */ })
    .then(function () { c.loading = false; pending(-1); });
}

/* How many cards wait for their chart readings (data-pending: a test waits for 0). */
var pendingCharts = 0;
function pending(d) {
  pendingCharts += d;
  document.body.setAttribute("data-pending", String(pendingCharts));
}

function drawCardCharts(c) {
  var rows = c.rows || [];
  SERIES.forEach(function (s) {
    var pts = series(rows, s[0]);
    drawChart(c.canvases[s[0]], pts, {colour: s[3], unit: s[2]});
    var r = readingOf(s[0]);
    c.el.querySelector(".spark-val[data-key='" + s[0] + "']").textContent =
      pts.length ? fmt(pts[pts.length - 1][1], r[3], r[2]) : "";
  });
}

function renderCard(st) {
  var c = cardFor(st);
  c.st = st;
  c.head.querySelector(".dot").className = "dot" + (st.connected ? " on" : "");
  statusPill(c.head.querySelector(".pill"), st);
  var bits = [];
  if (st.connected) {
    bits.push("connected");
    var seen = lastHeard(st);
    if (seen) bits.push("seen " + ago(seen));
  } else {
    bits.push(offlineSince(st));
  }
  if (st.error_code && st.error_code !== "NoError") bits.push(st.error_code);
  if (st.firmware) bits.push("fw " + st.firmware + fwStatusNote(st));
  c.el.setAttribute("data-firmware", st.firmware || "");
  c.sub.textContent = bits.join(" \u00b7 ");
  c.sub.className = "card-sub" + (st.connected ? "" : " off");
  c.el.className = "card" + (st.connected ? "" : " offline");
  c.pend.hidden = st.state !== "pending";
  nowGrid(c.grid, st.last_reading || {}, st);
  if (c.rows === null) drawCardCharts(c);     // empty until its readings come
  chartsFor(c);
}

function fleetQuery() {
  var q = ["page=" + view.page, "limit=" + PAGE_SIZE];
  ["q", "status", "connected", "faulted", "hot"].forEach(function (k) {
    if (view[k]) q.push(k + "=" + encodeURIComponent(view[k]));
  });
  return q.join("&");
}

function showCounts(c) {
  if (!c) return;
  var bits = [c.total + " station" + (c.total === 1 ? "" : "s"), c.connected + " connected"];
  if (c.faulted) bits.push(c.faulted + " faulted");
  if (c.hot) bits.push(c.hot + " hot");
  summary(bits.join(" \u00b7 "));
  var box = $("counts");
  box.textContent = "";
  var chip = function (label, n, key, value, cls) {
    var on = view[key] === value;
    box.appendChild(h("button", {type: "button", cls: "count" + (cls ? " " + cls : "") + (on ? " on" : ""),
                                 "data-count": label, "aria-pressed": on ? "true" : "false",
                                 onclick: function () { setFilter(key, on ? "" : value); }},
      h("b", {text: String(n)}), " " + label));
  };
  chip("connected", c.connected, "connected", "true", "online");
  chip("offline", c.offline, "connected", "false", "");
  chip("faulted", c.faulted, "faulted", "true", "Faulted");
  chip("hot", c.hot, "hot", "true", "hot");
  Object.keys(c.status).forEach(function (s) {
    if (c.status[s] && s !== "none") chip(s, c.status[s], "status", s, s);
  });
  document.body.setAttribute("data-counts", JSON.stringify(c));
}

function setFilter(key, value) {
  view[key] = value;
  view.page = 1;
  var el = $("f-" + key);
  if (el) el.value = value;
  refresh();
}

function pollOverview() {
  return api("GET", "/api/fleet?" + fleetQuery()).then(function (out) {
    var box = $("cards");
    var seen = {};
    pageIds = out.items.map(function (st) { return st.id; });
    out.items.forEach(function (st, i) {
      seen[st.id] = true;
      var c = cardFor(st);
      if (c.el.parentNode !== box || box.children[i] !== c.el) box.insertBefore(c.el, box.children[i] || null);
      renderCard(st);
    });
    Object.keys(cards).forEach(function (id) {
      if (!seen[id]) {
        if (watcher) watcher.unobserve(cards[id].el);
        cards[id].el.remove();
        delete cards[id];
      }
    });
    var filtered = view.q || view.status || view.connected || view.faulted || view.hot;
    $("empty").hidden = out.total > 0 || filtered;
    $("no-match").hidden = out.total > 0 || !filtered;
    var first = out.total ? (out.page - 1) * out.limit + 1 : 0;
    $("page-info").textContent = first + "\u2013" + Math.min(out.total, out.page * out.limit) + " of " + out.total +
      (filtered ? " matching" : "") + " \u00b7 page " + out.page + " of " + out.pages;
    $("prev").disabled = out.page <= 1;
    $("next").disabled = out.page >= out.pages;
    view.pages = out.pages;
    showCounts(out.counts);
    listen();
    if (!document.body.getAttribute("data-first-render-ms")) {     // since navigation started (for the bench)
      document.body.setAttribute("data-first-render-ms", performance.now().toFixed(0));
    }
    document.body.setAttribute("data-loaded", "overview");
  });
}

/* The gateway's events for the stations of this page; opened again when the page changes. */
function listen() {
  var ids = pageIds.join(",");
  if (!window.EventSource || (source && sourceIds === ids && source.readyState !== 2)) return;
  if (source) source.close();
  sourceIds = ids;
  source = new EventSource("/api/events?ids=" + encodeURIComponent(ids));
  var dropped = 0;
  source.addEventListener("hello", function (ev) {
    showCounts(JSON.parse(ev.data).counts);
    document.body.setAttribute("data-live", "open");
    counted();
  });
  source.addEventListener("update", function (ev) {
    var t0 = performance.now();
    var d = JSON.parse(ev.data);
    (d.stations || []).forEach(function (st) { if (cards[st.id]) renderCard(st); });
    if (d.counts) { showCounts(d.counts); if (filtering()) refetchSoon(); }
    if (d.removed || (d.dropped || 0) > dropped) { dropped = d.dropped || 0; refetchSoon(); }
    var n = Number(document.body.getAttribute("data-updates") || 0) + 1;
    document.body.setAttribute("data-updates", String(n));
    var ms = performance.now() - t0;
    document.body.setAttribute("data-update-ms", ms.toFixed(1));
    if (ms > Number(document.body.getAttribute("data-update-max-ms") || 0)) {
      document.body.setAttribute("data-update-max-ms", ms.toFixed(1));
    }
    counted();
  });
  source.onerror = function () {
    var closed = source.readyState === 2;    // refused (401, 503): EventSource does not try again itself
    document.body.setAttribute("data-live", closed ? "closed" : "reconnecting");
    if (closed) { clearTimeout(timer); timer = setTimeout(refresh, POLL_MS); }     // poll, and try the stream again
  };
}

function filtering() {
  return !!(view.q || view.status || view.connected || view.faulted || view.hot);
}

/* A changed count may change which stations match the filters: the page again, at most every 5 s. */
var refetchTimer = null, lastRefetch = 0;
function refetchSoon() {
  if (refetchTimer) return;
  var wait = Math.max(0, 5000 - (Date.now() - lastRefetch));
  refetchTimer = setTimeout(function () {
    refetchTimer = null;
    lastRefetch = Date.now();
    pollOverview().catch(function () {});
  }, wait);
}

function counted() {
  document.body.setAttribute("data-polls", String(Number(document.body.getAttribute("data-polls") || 0) + 1));
}

function setupOverview() {
  var search = null;
  $("f-q").addEventListener("input", function () {
    clearTimeout(search);
    search = setTimeout(function () { view.q = $("f-q").value.trim(); view.page = 1; refresh(); }, 250);
  });
  ["status", "connected", "faulted", "hot"].forEach(function (k) {
    $("f-" + k).addEventListener("change", function () { setFilter(k, $("f-" + k).value); });
  });
  $("prev").addEventListener("click", function () { if (view.page > 1) { view.page -= 1; refresh(); } });
  $("next").addEventListener("click", function () { view.page += 1; refresh(); });
  overviewExport();
}

var overviewExport = function () {};

// --- station page ----------------------------------------------------------------
var current = null;     // station id on the station page
var running = null;     // its running transaction (the newest without stop_ts)
var stationNow = null;  // the station as last fetched

function stationPath(sid, rest) {
  return "/api/stations/" + encodeURIComponent(sid) + (rest ? "/" + rest : "");
}

function pollStation() {
  var sid = current;
  return Promise.all([
    api("GET", stationPath(sid)),
    api("GET", stationPath(sid, "readings?limit=" + (CHART_POINTS * 3))),
    api("GET", stationPath(sid, "transactions")),
    api("GET", stationPath(sid, "status-history")),
    api("GET", stationPath(sid, "reservations")),
    api("GET", stationPath(sid, "composite-schedules"))
  ]).then(function (r) {
    notFound(false);
    renderStation(r[0], r[1], r[2], r[3]);
    renderReservations(r[0], r[4]);
    renderComposites(r[5]);
    return Promise.all([api("GET", "/api/releases"), api("GET", stationPath(sid, "diagnostics"))])
      .then(function (f) { renderFirmware(r[0], f[0], f[1]); return r; });
  }).then(function (r) {
    summary(r[0].connected ? "connected" : offlineSince(r[0]));
    document.body.setAttribute("data-loaded", "station");
  }, function (e) {
    if (e.status === 404) notFound(true);
    throw e;
  });
}

/* An unknown station: a not-found page instead of its controls and empty charts. */
function notFound(yes) {
  $("st-body").hidden = yes;
  $("st-notfound").hidden = !yes;
  if (yes) {
    $("nf-id").textContent = current;
    $("nf-add").textContent = "picocharge gateway add-station " + current;
    document.title = "No station " + current + " \u00b7 PicoCharge";
    document.body.setAttribute("data-loaded", "notfound");
  }
}

function renderStation(st, rows, txs, hist) {
  stationNow = st;
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
  var off = $("st-offline");
  off.hidden = st.connected;
  if (!st.connected) {
    off.textContent = st.id + " is " + offlineSince(st) + ": what is shown is its last known state" +
      (st.status ? " (last status " + st.status + ")" : "") + "; commands wait until it connects again.";
  }
  $("st-pending").hidden = st.state !== "pending";
  nowGrid($("st-now"), st.last_reading || {}, st);

  SERIES.forEach(function (s) {
    var pts = series(rows, s[0]);
    drawChart($("c-" + s[0]), pts, {colour: s[3], unit: s[2], axes: true});
    var r = readingOf(s[0]);
    $("v-" + s[0]).textContent = pts.length ? fmt(pts[pts.length - 1][1], r[3], r[2]) : "";
  });

  running = null;
  var tb = $("tx").querySelector("tbody");
  tb.textContent = "";
  txs.forEach(function (t) {
    var open = !t.stop_ts;
    if (open && running === null) running = t;
    var wh = (t.meter_stop !== null && t.meter_stop !== undefined && t.meter_start !== null)
      ? String(t.meter_stop - t.meter_start) : "";
    var state = !open ? clock(t.stop_ts, true)
      : st.connected ? h("span", {cls: "pill Charging", text: "running"})
      : h("span", {cls: "pill last", text: "open when last seen",
                   title: "no StopTransaction came before " + st.id + " went offline"});
    tb.appendChild(h("tr", {"data-tx": String(t.id), cls: open ? (st.connected ? "open" : "open last") : null},
      h("td", {text: String(t.id)}), h("td", {cls: "narrow-hide", text: String(t.connector)}), h("td", {text: t.id_tag + (t.reservation_id ? " \u00b7 reservation #" + t.reservation_id : "")}),
      h("td", {text: clock(t.start_ts, true)}), h("td", {}, state), h("td", {cls: "num", text: wh}),
      h("td", {text: t.reason || ""})));
  });
  $("tx").hidden = !txs.length;
  $("tx-empty").hidden = txs.length > 0;
  commandsFor(st);

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
  stationExport();
}

/* The command buttons: disabled, with the reason, while the station is offline. */
var busy = false;
function commandsFor(st) {
  var why = st.connected ? "" : st.id + " is " + offlineSince(st) + ": commands need it connected";
  ["btn-start", "btn-soft", "btn-hard"].forEach(function (id) {
    $(id).disabled = !!why || busy;
    $(id).title = why;
  });
  var stop = $("btn-stop");
  stop.disabled = !!why || busy || running === null;
  stop.textContent = running ? "Stop #" + running.id : "Stop";
  stop.title = why || (running ? "RemoteStopTransaction for transaction " + running.id : "no transaction running");
  $("st-why").textContent = why;
  $("st-why").hidden = !why;
}

function command(label, name, body, btn) {
  var out = $("st-result");
  out.className = "result busy";
  out.textContent = label + ": sent, waiting for " + current + "\u2026";
  if (btn) btn.disabled = true;
  busy = true;
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
    .then(function () {
      busy = false;
      if (btn) btn.disabled = false;
      if (btn === $("btn-stop")) btn.disabled = running === null;
      if (stationNow) commandsFor(stationNow);
    });
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

var stationExport = function () {};

// --- firmware: update and diagnostics on the station page, releases and rollouts on /firmware ---
var FW_BUSY = {Downloading: 1, Downloaded: 1, Installing: 1};
var FW_BUSY_S = 1800;   // an update silent this long no longer holds the button (the station may have died)

/* " (Installing)" while an update is under way, " (InstallationFailed)" after a failure. */
function fwStatusNote(st) {
  var f = st.firmware_status;
  if (!f || f.status === "Installed" || f.status === "Idle") return "";
  return " (" + f.status + ")";
}

function releaseOptions(sel, rels) {
  var keep = sel.value;
  sel.textContent = "";
  rels.forEach(function (r) { sel.appendChild(h("option", {value: r.version, text: r.version})); });
  if (keep && rels.some(function (r) { return r.version === keep; })) sel.value = keep;
  sel.disabled = !rels.length;
}

function renderFirmware(st, rels, files) {
  var f = st.firmware_status, d = st.diagnostics_status;
  var bits = ["running " + (st.firmware || "an unknown version")];
  if (f) bits.push("update " + f.status + " " + ago(f.ts));
  if (d) bits.push("diagnostics " + d.status + " " + ago(d.ts));
  $("fw-now").textContent = bits.join(" \u00b7 ");
  releaseOptions($("fw-version"), rels);
  var why = !st.connected ? st.id + " is offline" : !rels.length ? "no release on this gateway yet"
    : f && FW_BUSY[f.status] && ageS(f.ts) < FW_BUSY_S ? "an update is under way (" + f.status + ")" : "";
  $("btn-update").disabled = !!why || busy;
  $("btn-update").title = why;
  $("btn-diag").disabled = !st.connected || busy;
  var ul = $("diag-list");
  ul.textContent = "";
  files.forEach(function (x) {
    ul.appendChild(h("li", {"data-file": x.name},
      h("a", {href: stationPath(st.id, "diagnostics/" + encodeURIComponent(x.name)), download: x.name, text: x.name}),
      h("span", {cls: "muted", text: " \u00b7 " + x.size + " bytes \u00b7 " + clock(x.received, true)})));
  });
  $("diag-empty").hidden = files.length > 0;
}

function fwCommand(label, path, body, describe) {
  var out = $("fw-result");
  out.className = "result busy";
  out.textContent = label + ": sent, waiting for " + current + "\u2026";
  busy = true;
  return api("POST", stationPath(current, path), body)
    .then(function (answer) {
      out.className = "result ok";
      out.textContent = label + ": " + describe(answer);
      refresh();
    }, function (e) {
      out.className = "result bad";
      out.textContent = label + " failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message;
    })
    .then(function () { busy = false; });
}

function setupFirmware() {
  $("btn-update").addEventListener("click", function () {
    var v = $("fw-version").value;
    if (!v || !window.confirm("Update " + current + " to " + v + "? It installs when no transaction runs.")) return;
    fwCommand("Update to " + v, "update", {version: v}, function (a) {
      return current + " accepted; it fetches " + a.location;
    });
  });
  $("btn-diag").addEventListener("click", function () {
    fwCommand("Diagnostics", "diagnostics", {}, function (a) {
      return current + " uploads " + (a.answer.fileName || "its log") + " to " + a.location;
    });
  });
  $("ro-form").addEventListener("submit", function () {
    var ids = $("ro-stations").value.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
    var body = {version: $("ro-version").value, stations: ids.length ? ids : "all",
                wave: Number($("ro-wave").value) || 1, max_failures: Number($("ro-fail").value) || 1};
    var out = $("ro-result");
    out.className = "result busy";
    out.textContent = "Starting a rollout of " + body.version + "\u2026";
    api("POST", "/api/rollouts", body).then(function (ro) {
      out.className = "result ok";
      out.textContent = "Rollout #" + ro.id + " of " + ro.version + " started: " + ro.stations.length +
        " stations in waves of " + ro.wave;
      refresh();
    }, function (e) {
      out.className = "result bad";
      out.textContent = "Rollout refused" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message;
    });
  });
}

function pollFirmwarePage() {
  return Promise.all([api("GET", "/api/releases"), api("GET", "/api/rollouts")]).then(function (r) {
    renderReleases(r[0]);
    renderRollouts(r[1]);
    summary("firmware");
    document.title = "Firmware \u00b7 PicoCharge";
    document.body.setAttribute("data-loaded", "firmware");
  });
}

function renderReleases(rels) {
  var tb = $("rel").querySelector("tbody");
  tb.textContent = "";
  rels.forEach(function (r) {
    tb.appendChild(h("tr", {"data-release": r.version}, h("td", {text: r.version}), h("td", {text: r.board || "app"}),
      h("td", {cls: "num", text: String(r.files)}), h("td", {cls: "num", text: String(r.size)}),
      h("td", {text: r.key_id}), h("td", {text: clock(r.added_at, true)})));
  });
  $("rel").hidden = !rels.length;
  $("rel-empty").hidden = rels.length > 0;
  releaseOptions($("ro-version"), rels);
  $("btn-rollout").disabled = !rels.length;
}

function renderRollouts(list) {
  var box = $("rollouts");
  box.textContent = "";
  list.forEach(function (ro) {
    var n = ro.stations.length, done = ro.counts.done || 0, failed = ro.counts.failed || 0;
    var el = h("article", {cls: "rollout", "data-rollout": String(ro.id), "data-state": ro.state},
      h("h3", {text: "#" + ro.id + " \u00b7 " + ro.version + " \u00b7 " + ro.state + " \u00b7 " + done + " of " + n +
                     " done" + (failed ? ", " + failed + " failed" : "") + " \u00b7 waves of " + ro.wave}),
      h("progress", {max: String(n), value: String(done), "aria-label": "stations done"}));
    if (ro.reason && ro.state !== "done") el.appendChild(h("p", {cls: "reason", text: ro.reason}));
    if (ro.state === "running") {
      el.appendChild(h("button", {type: "button", cls: "danger", text: "Cancel", onclick: function () {
        api("POST", "/api/rollouts/" + ro.id + "/cancel").then(refresh, function (e) { showBanner(e.message); });
      }}));
    }
    var tb = h("tbody");
    ro.stations.forEach(function (x) {
      tb.appendChild(h("tr", {"data-station": x.station},
        h("td", {}, h("a", {href: "/station/" + encodeURIComponent(x.station), text: x.station})),
        h("td", {cls: "st-" + x.state, text: x.state}), h("td", {text: x.detail || ""})));
    });
    el.appendChild(h("div", {cls: "table-wrap"}, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {text: "Station"}), h("th", {text: "State"}),
                       h("th", {text: "Detail"}))), tb)));
    box.appendChild(el);
  });
  $("ro-empty").hidden = list.length > 0;
}

// --- id tags (/id-tags); a station's reservations and local list --------------------
var TAG_PAGE = 50;
var tagPageNo = 1;

function said(el, cls, text) {
  el.className = "result " + cls;
  el.textContent = text;
}

function pollIdTags() {
  var q = $("it-q").value.trim();
  return api("GET", "/api/id-tags?limit=" + TAG_PAGE + "&page=" + tagPageNo + (q ? "&q=" + encodeURIComponent(q) : ""))
    .then(function (p) {
      renderIdTags(p);
      summary(p.total + " id tag" + (p.total === 1 ? "" : "s"));
      document.title = "Id tags \u00b7 PicoCharge";
      document.body.setAttribute("data-loaded", "idtags");
    });
}

function renderIdTags(p) {
  var tb = $("it").querySelector("tbody");
  tb.textContent = "";
  p.items.forEach(function (t) {
    var blocked = t.status === "Blocked";
    tb.appendChild(h("tr", {"data-tag": t.id_tag},
      h("td", {text: t.id_tag}),
      h("td", {}, h("span", {cls: "pill tag-" + (t.answered || t.status), text: t.answered || t.status,
                             title: t.answered ? "its expiry date has passed: stations are answered Expired" : null})),
      h("td", {text: t.parent_id_tag || ""}),
      h("td", {text: t.expiry_date ? clock(t.expiry_date, true) : ""}),
      h("td", {cls: "row-actions"},
        h("button", {type: "button", "data-act": "edit", text: "Edit", onclick: function () { editTag(t); }}),
        h("button", {type: "button", "data-act": "block", text: blocked ? "Unblock" : "Block", onclick: function () {
          tagWrite("PUT", t.id_tag, {status: blocked ? "Accepted" : "Blocked"}, (blocked ? "Unblock " : "Block ") + t.id_tag);
        }}),
        h("button", {type: "button", cls: "danger", "data-act": "delete", text: "Delete", onclick: function () {
          if (window.confirm("Delete id tag " + t.id_tag + "?")) tagWrite("DELETE", t.id_tag, undefined, "Delete " + t.id_tag);
        }}))));
  });
  $("it").hidden = !p.items.length;
  $("it-empty").hidden = p.total > 0;
  $("it-page").textContent = "page " + p.page + " of " + p.pages + " \u00b7 list version " + p.version;
  $("it-prev").disabled = p.page <= 1;
  $("it-next").disabled = p.page >= p.pages;
  $("it-summary").textContent = p.total ? p.total + " id tags: stations are answered from this list"
                                        : "The list is empty: every id tag is accepted.";
}

function editTag(t) {
  $("it-tag").value = t.id_tag;
  $("it-status").value = t.status;
  $("it-parent").value = t.parent_id_tag || "";
  $("it-expiry").value = t.expiry_date || "";
  $("it-tag").focus();
}

function tagWrite(method, tag, body, label) {
  var out = $("it-result");
  said(out, "busy", label + "\u2026");
  return api(method, "/api/id-tags" + (tag ? "/" + encodeURIComponent(tag) : ""), body)
    .then(function (a) {
      said(out, "ok", label + ": done" + (a && a.imported !== undefined ? ", " + a.imported + " tags imported" : ""));
      refresh();
    }, function (e) {
      said(out, "bad", label + " failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message);
    });
}

function setupIdTags() {
  $("it-form").addEventListener("submit", function () {
    var b = {id_tag: $("it-tag").value.trim(), status: $("it-status").value};
    if ($("it-parent").value.trim()) b.parent_id_tag = $("it-parent").value.trim();
    if ($("it-expiry").value.trim()) b.expiry_date = $("it-expiry").value.trim();
    tagWrite("POST", "", b, "Save " + b.id_tag).then(function () {
      if ($("it-result").classList.contains("ok")) $("it-form").reset();
    });
  });
  $("it-import").addEventListener("submit", function () {
    var f = $("it-file").files[0];
    (f ? f.text() : Promise.resolve($("it-csv").value)).then(function (text) {
      if (!text.trim()) {
        said($("it-result"), "bad", "Choose a CSV file or paste CSV first.");
        return;
      }
      tagWrite("POST", "import", {csv: text}, "Import" + (f ? " " + f.name : ""));
    });
  });
  var search = null;
  $("it-q").addEventListener("input", function () {
    clearTimeout(search);
    search = setTimeout(function () { tagPageNo = 1; refresh(); }, 250);
  });
  $("it-prev").addEventListener("click", function () { tagPageNo = Math.max(1, tagPageNo - 1); refresh(); });
  $("it-next").addEventListener("click", function () { tagPageNo += 1; refresh(); });
}

function renderReservations(st, list) {
  var ll = st.local_list || {};
  var parts = [ll.sync ? "Local list kept in step with the id tags" : "Local list not synced"];
  if (ll.list_version !== null && ll.list_version !== undefined) parts.push("version " + ll.list_version);
  if (ll.sync) parts.push(ll.running ? "syncing\u2026" : ll.in_sync ? "in sync" : "not in sync");
  if (ll.state && ll.state !== "Accepted") parts.push("last sync: " + ll.state);
  $("ll-now").textContent = parts.join(" \u00b7 ");
  $("ll-now").title = ll.detail || "";
  $("ll-now").setAttribute("data-version", ll.list_version === null || ll.list_version === undefined ? "" : String(ll.list_version));
  $("btn-ll-sync").textContent = ll.sync ? "Stop syncing the local list" : "Sync the local list";
  $("btn-reserve").disabled = !st.connected;
  $("btn-reserve").title = st.connected ? "" : st.id + " is offline: a reservation needs it connected";
  var tb = $("rs").querySelector("tbody");
  tb.textContent = "";
  list.forEach(function (r) {
    tb.appendChild(h("tr", {"data-resv": String(r.id), "data-state": r.state},
      h("td", {text: String(r.id)}), h("td", {cls: "narrow-hide", text: String(r.connector_id)}),
      h("td", {text: r.id_tag + (r.parent_id_tag ? " (" + r.parent_id_tag + ")" : "")}),
      h("td", {text: clock(r.expiry_date, true)}),
      h("td", {}, h("span", {cls: "pill resv-" + r.state.replace(" ", "-"), text: r.state,
                             title: "the station answered " + r.status + (r.cancel_status ? "; cancel: " + r.cancel_status : "")})),
      h("td", {text: r.transaction_id === null ? "" : "#" + r.transaction_id}),
      h("td", {}, r.state === "active" && st.connected ? h("button", {type: "button", text: "Cancel", onclick: function () {
        reservationCall(stationPath(current, "reservations/" + r.id + "/cancel"), undefined, "Cancel reservation #" + r.id);
      }}) : null)));
  });
  $("rs").hidden = !list.length;
  $("rs-empty").hidden = list.length > 0;
}

function reservationCall(path, body, label) {
  var out = $("rs-result");
  said(out, "busy", label + ": sent, waiting for " + current + "\u2026");
  return api("POST", path, body).then(function (r) {
    var answer = r.cancel_status || r.status;
    said(out, answer === "Accepted" ? "ok" : "warn", label + ": " + current + " answered " + answer);
    refresh();
  }, function (e) {
    said(out, "bad", label + " failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message);
  });
}

function setupReservations() {
  $("rs-form").addEventListener("submit", function () {
    var min = Number($("rs-min").value) || 30;
    var until = new Date(Date.now() + min * 60000).toISOString().slice(0, 19) + "Z";
    reservationCall(stationPath(current, "reservations"), {connector_id: Number($("rs-conn").value),
                    id_tag: $("rs-tag").value.trim(), expiry_date: until}, "Reserve");
  });
  $("btn-ll-sync").addEventListener("click", function () {
    var on = !(stationNow && stationNow.local_list && stationNow.local_list.sync);
    api("PUT", stationPath(current, "local-list"), {sync: on}).then(function () { refresh(); }, function (e) {
      said($("rs-result"), "bad", "Local list: " + e.message);
    });
  });
}

// --- load groups (/load-groups); a station's charging profiles ------------------------
function amps(v) {
  return v === null || v === undefined ? "" : (Math.round(v * 10) / 10) + " A";
}

function pollLoadGroups() {
  return api("GET", "/api/load-groups").then(function (list) {
    renderLoadGroups(list);
    summary(list.length + " load group" + (list.length === 1 ? "" : "s"));
    document.title = "Load groups \u00b7 PicoCharge";
    document.body.setAttribute("data-loaded", "loadgroups");
  });
}

function renderLoadGroups(list) {
  var box = $("lg-list");
  box.textContent = "";
  list.forEach(function (g) {
    var eco = g.eco_state;
    var head = "limit " + amps(g.limit_a) + " per phase \u00b7 " + g.phases + " phase" + (g.phases > 1 ? "s" : "") +
      (g.eco ? " \u00b7 eco from " + g.eco.topic + ": now " + amps(g.limit_now_a) +
               (eco && eco.fallback ? " (safe fallback)" : "") + (eco && eco.bad_payloads ? ", " + eco.bad_payloads +
               " bad payloads" : "") : "") +
      " \u00b7 allocated " + amps(g.allocated_a) + " \u00b7 measured " + (g.measured_a === null ? "-" : amps(g.measured_a)) +
      " \u00b7 offline share " + amps(g.safe_share_a) + (g.planner === "here" ? "" : " \u00b7 planned by another process");
    var tb = h("tbody");
    g.members.forEach(function (m) {
      tb.appendChild(h("tr", {"data-member": m.station + ":" + m.connector},
        h("td", {}, h("a", {href: "/station/" + encodeURIComponent(m.station), text: m.station})),
        h("td", {cls: "narrow-hide", text: String(m.connector)}),
        h("td", {text: String(m.priority)}),
        h("td", {text: m.connected ? "online" : "offline"}),
        h("td", {text: m.transaction_id === null ? "" : "#" + m.transaction_id + (m.ev_paused ? " (EV paused)" : "")}),
        h("td", {cls: "num", text: amps(m.allocated_a)}),
        h("td", {cls: "num", text: amps(m.held_a), title: m.valid_to ? "its TxProfile runs out at " + clock(m.valid_to, true) : ""}),
        h("td", {cls: "num", text: amps(m.measured_a)})));
    });
    var lim = h("input", {type: "number", min: "0", step: "0.1", value: String(g.limit_a), "aria-label": "new limit of " + g.name});
    box.appendChild(h("div", {cls: "lg", "data-group": g.name},
      h("h2", {text: g.name}), h("p", {cls: "meta", text: head}),
      h("div", {cls: "actions"}, lim,
        h("button", {type: "button", "data-act": "limit", text: "Set limit", onclick: function () {
          groupWrite("PUT", g.name, {limit_a: Number(lim.value)}, "Limit of " + g.name);
        }}),
        h("button", {type: "button", cls: "danger", "data-act": "delete", text: "Delete", onclick: function () {
          if (window.confirm("Delete load group " + g.name + "?")) groupWrite("DELETE", g.name, undefined, "Delete " + g.name);
        }})),
      h("div", {cls: "table-wrap"}, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {text: "Station"}), h("th", {cls: "narrow-hide", text: "Conn."}),
          h("th", {text: "Prio."}), h("th", {text: "Link"}), h("th", {text: "Tx"}), h("th", {cls: "num", text: "Allocated"}),
          h("th", {cls: "num", text: "Holds"}), h("th", {cls: "num", text: "Current"}))), tb))));
  });
  $("lg-empty").hidden = list.length > 0;
}

function groupWrite(method, name, body, label) {
  var out = $("lg-result");
  said(out, "busy", label + "\u2026");
  return api(method, "/api/load-groups" + (name ? "/" + encodeURIComponent(name) : ""), body).then(function () {
    said(out, "ok", label + ": done");
    refresh();
  }, function (e) {
    said(out, "bad", label + " failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message);
  });
}

function setupLoadGroups() {
  $("lg-form").addEventListener("submit", function () {
    var members = $("lg-members").value.split(",").map(function (x) { return x.trim(); }).filter(Boolean)
      .map(function (x) {
        var p = x.split(":");
        var m = {station: p[0]};
        if (p.length > 1) m.connector = Number(p[1]);
        if (p.length > 2) m.priority = Number(p[2]);
        return m;
      });
    var name = $("lg-name").value.trim();
    groupWrite("POST", "", {name: name, limit_a: Number($("lg-limit").value), phases: Number($("lg-phases").value),
                            members: members}, "Save " + name);
  });
}

function renderComposites(list) {
  var tb = $("cs").querySelector("tbody");
  tb.textContent = "";
  list.forEach(function (c) {
    var sch = c.charging_schedule;
    var periods = sch ? (sch.chargingSchedulePeriod || []).map(function (p) {
      return p.startPeriod + ": " + p.limit + " " + (sch.chargingRateUnit || "");
    }).join(", ") : "";
    tb.appendChild(h("tr", {"data-connector": String(c.connector_id)},
      h("td", {text: String(c.connector_id)}), h("td", {text: c.status}),
      h("td", {text: c.schedule_start ? clock(c.schedule_start, true) : ""}), h("td", {text: periods}),
      h("td", {text: clock(c.ts, true) + " (" + c.duration + " s)"})));
  });
  $("cs").hidden = !list.length;
  $("cs-empty").hidden = list.length > 0;
}

function profileCall(name, body, label) {
  var out = $("cp-result");
  said(out, "busy", label + ": sent, waiting for " + current + "\u2026");
  return api("POST", stationPath(current, name), body).then(function (r) {
    said(out, r.status === "Accepted" ? "ok" : "warn", label + ": " + current + " answered " + r.status);
    refresh();
  }, function (e) {
    said(out, "bad", label + " failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message);
  });
}

function setupProfiles() {
  $("cp-form").addEventListener("submit", function () {
    var purpose = $("cp-purpose").value;
    profileCall("set-charging-profile", {connector_id: Number($("cp-conn").value), cs_charging_profiles: {
      charging_profile_id: Number($("cp-id").value), stack_level: Number($("cp-stack").value),
      charging_profile_purpose: purpose, charging_profile_kind: "Relative",
      charging_schedule: {charging_rate_unit: "A", charging_schedule_period: [
        {start_period: 0, limit: Number($("cp-limit").value)}]}}}, "Set " + purpose);
  });
  $("btn-cp-clear").addEventListener("click", function () {
    var purpose = $("cp-purpose").value;
    profileCall("clear-charging-profile", {connector_id: Number($("cp-conn").value), charging_profile_purpose: purpose,
                                           stack_level: Number($("cp-stack").value)}, "Clear " + purpose);
  });
  $("cs-form").addEventListener("submit", function () {
    profileCall("get-composite-schedule", {connector_id: Number($("cs-conn").value), duration: Number($("cs-dur").value),
                                           charging_rate_unit: "A"}, "Composite schedule");
  });
}

// --- the loop ----------------------------------------------------------------------
// The station page polls every POLL_MS; the overview fetches its page when it opens, when the
// search, a filter or the page changes, and when the events say so (the events carry the rest).
var timer = null;

function refreshSoon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 150);
}

function refresh() {
  clearTimeout(timer);
  var p = loadFields().then(function () {
    return fwPage ? pollFirmwarePage() : tagsPage ? pollIdTags() : lbPage ? pollLoadGroups()
      : current === null ? pollOverview() : pollStation();
  });
  return p.then(function () {
    showBanner("");
    counted();
  }, function (e) {
    showBanner(e.status === 404 && current !== null ? "Unknown station " + current + ": " + e.message
                                                    : e.message);
    $("summary").textContent = e.status ? "error " + e.status : "offline";
  }).then(function () {
    // the overview's events keep it current; without them (an old browser, or before sign-in) it polls
    if (current !== null || fwPage || tagsPage || lbPage || !source || source.readyState === 2) timer = setTimeout(refresh, POLL_MS);
  });
}

var fwPage = false;     // the /firmware page: releases and rollouts
var tagsPage = false;   // the /id-tags page
var lbPage = false;     // the /load-groups page

function route() {
  var m = location.pathname.match(/^\/station\/(.+)$/);
  current = m ? decodeURIComponent(m[1]) : null;
  fwPage = location.pathname === "/firmware";
  tagsPage = location.pathname === "/id-tags";
  lbPage = location.pathname === "/load-groups";
  $("firmware").hidden = !fwPage;
  $("idtags").hidden = !tagsPage;
  $("loadgroups").hidden = !lbPage;
  $("overview").hidden = current !== null || fwPage || tagsPage || lbPage;
  $("station").hidden = current === null;
  if (current !== null) $("st-id").textContent = current;
}

pending(0);
setupToken();
setupStation();
setupFirmware();
setupIdTags();
setupReservations();
setupLoadGroups();
setupProfiles();
setupOverview();
route();
overviewExport = setupExport("ov-export", function () { return null; });
stationExport = setupExport("st-export", function () { return current; });
overviewExport();
var resizeTimer = null;
window.addEventListener("resize", function () {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(redrawAll, 100);
});
document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
// ages move on without any event: the cards are drawn again from what they hold (no request)
setInterval(function () {
  if (current !== null) return;
  Object.keys(cards).forEach(function (id) { renderCard(cards[id].st); });
}, 30000);
startSession();
