/*! Beckon widget: see widget/README.md and docs/wire-protocol.md */
(function (w, d) {
'use strict';
// A tracker must never break its host page: all of it runs inside try/catch.
try {
var VERSION = '1.0.0';
var old = w.beckon;
if (old && old.version) return; // loaded twice: the first copy keeps working

var BATCH_MS = 250, MAX_EVENTS = 100, MAX_CHARS = 20000, ACK_MS = 10000, MAX_TRIES = 8,
  MAX_OUTBOX = 500, SESSION_MS = 30 * 60000, ACTIVITY_MS = 5000, IDLE_MS = 30000,
  EXIT_MS = 10000, HOVER_MS = 300, NAV_MS = 100, HTTP_AFTER = 3, BACKOFF_MAX = 30000;
var ID_RE = /^[A-Za-z0-9._:-]{1,128}$/, TOKEN_RE = /^[\w.~+\/=-]{1,256}$/; // cookie-safe
// One bad event fails its whole batch: keep to the server's limits (MAX_CHARS UTF-16 units
// stay under 64 KiB of UTF-8).

var nav = w.navigator, loc = w.location, hist = w.history;
function guard(fn) {
  return function () {
    try { return fn.apply(this, arguments); } catch (e) {}
  };
}
function on(target, type, fn) {
  target.addEventListener(type, guard(fn), { passive: true, capture: true });
}
function str(v) { return v == null ? '' : String(v); }
// never half an emoji: a lone surrogate is invalid JSON
function cut(v, n) { v = str(v).slice(0, n); return /[\ud800-\udbff]$/.test(v) ? v.slice(0, -1) : v; }
function num(v) { v = +v; return isFinite(v) ? v : 0; }
function isObj(v) { return v && typeof v == 'object' && !Array.isArray(v); }
function list(v) { return Array.isArray(v) ? v : []; }
var later = w.requestIdleCallback
  ? function (fn) { w.requestIdleCallback(guard(fn), { timeout: 1000 }); }
  : function (fn) { setTimeout(guard(fn), 1); };

var script = d.currentScript; // a classic script's, async or not
var site = script && script.getAttribute('data-site');
var base = ((script && script.getAttribute('data-endpoint')) ||
  (script ? script.src.split(/[?#]/)[0].replace(/\/[^/]*$/, '') : '')).replace(/\/+$/, '');
if (!site || !/^https?:/.test(base)) return; // not configured: leave the page (and its queue) alone
var enc = encodeURIComponent, EVENTS = base + '/v1/events?site=' + enc(site);

// ---- the API (calls queue until setup is done)
var queue = (old && old.q) || [], ready = false;
function api() {
  if (!ready) queue.push(arguments);
  else run(arguments);
}
var vid, vtk = '', sid;
Object.defineProperties(api, {
  version: { value: VERSION, enumerable: true },
  visitor: { value: function () { return vid; } },
  session: { value: function () { return sid; } }
});
w.beckon = api;

// ---- storage (blocked: cookies for the visitor id and token, else memory)
function probe(name) {
  try { var s = w[name]; s.setItem('beckon:t', '1'); s.removeItem('beckon:t'); return s; } catch (e) { return null; }
}
var LS = probe('localStorage'), SS = probe('sessionStorage'), mem = {};
function get(s, k) {
  try { var v = s && s.getItem(k); if (v != null) return v; } catch (e) {}
  return mem[k];
}
function put(s, k, v) {
  mem[k] = v;
  try { if (s) s.setItem(k, v); } catch (e) {}
}
function cookie(k, v) {
  try {
    if (v) {
      d.cookie = 'beckon_' + k + '=' + v + ';path=/;max-age=31536000;SameSite=Lax' +
        (loc.protocol == 'https:' ? ';Secure' : '');
    }
    var m = RegExp('(?:^|;\\s*)beckon_' + k + '=([^;]+)').exec(d.cookie);
    return m && m[1];
  } catch (e) { return null; }
}
function keep(k, v) { if (LS) put(LS, 'beckon:' + k, v); else cookie(k, v); }
function kept(k, re) {
  var v = get(LS, 'beckon:' + k);
  if (!LS || !re.test(str(v))) v = cookie(k) || v;
  return re.test(str(v)) ? v : '';
}
// The server's visitor id and token replace ours.
function identity(o) {
  if (isObj(o) && ID_RE.test(str(o.visitor)) && TOKEN_RE.test(str(o.token))) {
    keep('vid', vid = o.visitor); keep('vtk', vtk = o.token);
  }
}
function rid(prefix, n) {
  var a = new Uint8Array(n), s = prefix;
  try { w.crypto.getRandomValues(a); } catch (e) {
    for (var j = 0; j < n; j++) a[j] = Math.random() * 256;
  }
  for (var k = 0; k < n; k++) s += (a[k] % 36).toString(36);
  return s;
}
// Event ids are session:load:seq: a duplicated tab copies the session and seq, not the load.
var load = rid('', 6);

var seq = 0, lastAt = 0;
function newSession() {
  sid = rid('s_', 20); seq = 0;
  put(SS, 'beckon:sid', sid);
}

// ---- the outbox: an event stays until the server acks its id
var box = []; // {e: event, s: sent at (0 = not in flight), n: tries}
// Marks automation leaves in a page (beckon-bots' MARKERS).
function context() {
  var marks = ['callPhantom', '_phantom', '__nightmare', 'domAutomation', 'domAutomationController', '_selenium', 'callSelenium', '__playwright__binding__'].filter(function (k) { return k in w; });
  return { lang: str((nav.languages || [])[0] || nav.language), tz_offset: -new Date().getTimezoneOffset(), webdriver: !!nav.webdriver, automation: marks.length ? marks : undefined };
}
function evOf(x) { return x.e; }
function unsent() { box.forEach(function (x) { x.s = 0; }); }
function sessionOf(e) { return e.id.split(':')[0]; }
function persist() {
  put(SS, 'beckon:outbox', JSON.stringify(box.map(evOf)));
}

var flushTimer = 0, retryTimer = 0;
function schedule(urgent) {
  if (urgent) { clearTimeout(flushTimer); flushTimer = setTimeout(flush, 0); }
  else if (!flushTimer) flushTimer = setTimeout(flush, BATCH_MS);
}

function emit(type, fields, urgent) {
  var now = Date.now();
  if (now - lastAt > SESSION_MS) {
    var renewed = lastAt > 0;
    newSession();
    lastAt = now;
    if (renewed) {
      reconnect(); // the socket belongs to the old session
      if (type != 'page') reportPage();
    }
  }
  lastAt = now;
  seq++;
  put(SS, 'beckon:seq', String(seq));
  put(SS, 'beckon:last', String(now));
  var e = { id: sid + ':' + load + ':' + seq, type: type, t: now };
  for (var k in fields) if (fields[k] !== undefined) e[k] = typeof fields[k] == 'string' ? cut(fields[k], 2048) : fields[k];
  box.push({ e: e, s: 0, n: 0 });
  if (box.length > MAX_OUTBOX) box.splice(0, box.length - MAX_OUTBOX);
  schedule(urgent);
}

function forget(ids) {
  var gone = {};
  for (var j = 0; j < ids.length; j++) gone[ids[j]] = 1;
  box = box.filter(function (x) { return !gone[x.e.id]; });
  persist();
}

function batches(list) {
  var out = [], cur = null;
  list.forEach(function (x) {
    var len = JSON.stringify(x.e).length + 1, s = sessionOf(x.e);
    if (!cur || cur.s != s || cur.list.length >= MAX_EVENTS || cur.len + len > MAX_CHARS) {
      out.push(cur = { s: s, list: [], len: 600 });
    }
    cur.list.push(x); cur.len += len;
  });
  return out;
}
function body(b) {
  return JSON.stringify({
    site: site, visitor: vid, token: vtk, session: b.s, context: context(),
    events: b.list.map(evOf)
  });
}
function mark(list, now) { list.forEach(function (x) { x.s = now; x.n++; }); }

var flush = guard(function () {
  flushTimer = 0;
  var now = Date.now();
  // An event the server keeps refusing must not be resent forever.
  box = box.filter(function (x) { return x.n < MAX_TRIES; });
  persist();
  var due = box.filter(function (x) { return !x.s || now - x.s >= ACK_MS; });
  if (due.length && (sockOpen || httpMode)) {
    batches(due).forEach(function (b) {
      if (sockOpen && b.s == sid) {
        sock.send(JSON.stringify({ type: 'events', context: context(), events: b.list.map(evOf) }));
        mark(b.list, now);
      } else post(b, now);
    });
  }
  if (box.length && !retryTimer) {
    retryTimer = setTimeout(function () { retryTimer = 0; flush(); }, ACK_MS);
  }
});

// POST /v1/events answers once the batch is stored: a 2xx is the ack.
function post(b, now) {
  if (!w.fetch) return;
  mark(b.list, now);
  var ids = b.list.map(function (x) { return x.e.id; });
  w.fetch(EVENTS, {
    method: 'POST', body: body(b), keepalive: true, credentials: 'omit',
    headers: { 'Content-Type': 'text/plain' } // no CORS preflight
  }).then(guard(function (r) {
    // A 4xx (other than 408/429) will not get better by resending.
    if (r.ok || (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429)) forget(ids);
    return r.ok ? r.json() : null;
  })).then(guard(function (j) {
    if (!j) return;
    identity(j.identity);
    list(j.interventions).forEach(onIntervention);
  }))['catch'](function () { b.list.forEach(function (x) { x.n--; }); }); // offline is no refusal
}

// A hidden page may never come back: the browser gets all unacked.
function beacon() {
  persist();
  if (!nav.sendBeacon) return flush();
  var now = Date.now();
  batches(box.filter(function (x) { return !x.b; })).forEach(function (b) {
    if (nav.sendBeacon(EVENTS, new Blob([body(b)], { type: 'text/plain' }))) {
      b.list.forEach(function (x) { x.s = x.b = now; });
    }
  });
}

// ---- the WebSocket, with backoff; HTTP after HTTP_AFTER failed connects
var sock = null, sockOpen = false, fails = 0, httpMode = false, backoff = 500, connTimer = 0;
function connect() {
  clearTimeout(connTimer); connTimer = 0;
  if (sock) return;
  var ws;
  try { // throws without WebSocket too
    ws = new w.WebSocket(base.replace(/^http/, 'ws') + '/v1/ws?site=' + enc(site) +
      '&visitor=' + enc(vid) + '&token=' + enc(vtk) + '&session=' + enc(sid));
  } catch (e) { httpMode = true; schedule(); return; }
  var healthy = false; // a socket closed before any answer is a failed connect
  sock = ws;
  ws.onopen = guard(function () {
    if (sock != ws) return;
    sockOpen = true;
    unsent();
    flush();
    if (chatMod) chatMod.frame({ type: 'chat_stale' }); // a new socket hears the chat once it asks
  });
  ws.onmessage = guard(function (m) {
    if (sock != ws) return;
    healthy = true; fails = 0; httpMode = false; backoff = 500;
    onFrame(JSON.parse(m.data));
  });
  ws.onclose = guard(function () {
    if (sock != ws) return;
    sock = null; sockOpen = false;
    if (!healthy && ++fails >= HTTP_AFTER) httpMode = true;
    unsent(); // resend on the next channel
    if (httpMode) schedule();
    var delay = Math.min(BACKOFF_MAX, backoff);
    backoff = Math.min(BACKOFF_MAX, backoff * 2);
    connTimer = setTimeout(guard(connect), delay * (0.5 + Math.random() / 2));
  });
}
function disconnect() {
  var ws = sock;
  sock = null; sockOpen = false; clearTimeout(connTimer); connTimer = 0;
  unsent();
  if (ws) try { ws.close(); } catch (e) {}
}
function reconnect() { if (ready) { disconnect(); connect(); } }

function onFrame(f) {
  if (!isObj(f)) return;
  if (f.type == 'ack') forget(list(f.ids));
  else if (f.type == 'identity') identity(f);
  else if (f.type == 'intervention') onIntervention(f);
  else if (/^(chat|said)/.test(str(f.type))) withChat(function (c) { c.frame(f); });
}

// ---- page views
var PAGE_TYPES = /^(home|category|product|pricing|cart|checkout|article|other)$/;
var override = null, curPath = null, pageUrl = null, pageRef = '', navTimer = 0, pageDone = false;
function meta(name) {
  var m = d.querySelector('meta[name="beckon:' + name + '"]');
  return m ? str(m.getAttribute('content')).trim() : '';
}
// The same URL again (a re-report) keeps its referrer and depth.
function reportPage() {
  clearTimeout(navTimer); navTimer = 0;
  pageDone = true;
  curPath = loc.pathname;
  var o = override || {}, fresh = loc.href != pageUrl;
  if (fresh) {
    pageRef = pageUrl == null ? d.referrer : pageUrl;
    pageUrl = loc.href;
    depth = reported = 0; hovered = new WeakSet();
  }
  var type = str(o.type || meta('page-type')).toLowerCase(), product = str(o.product || meta('product'));
  emit('page', {
    url: loc.href, path: loc.pathname, title: str(d.title),
    page_type: PAGE_TYPES.test(type) ? type : 'other', referrer: str(pageRef), product: product || undefined
  });
  if (fresh) later(measure);
  lastAct = Date.now(); idle = false; // idle counts from a page view too
  armIdle();
}
// Routers set the title (and may call beckon('page')) just after a route change.
function onNav() {
  if (loc.pathname == curPath) return;
  curPath = loc.pathname; override = null;
  clearTimeout(navTimer);
  navTimer = setTimeout(guard(reportPage), NAV_MS);
}

// ---- scroll depth and the mobile exit intent
var depth = 0, reported = 0, rafPending = false;
function measure() {
  rafPending = false;
  var de = d.documentElement, h = Math.max(de.scrollHeight, d.body ? d.body.scrollHeight : 0);
  var vh = w.innerHeight, y = w.pageYOffset;
  var pct = h <= vh ? 100 : Math.min(100, Math.round((y + vh) / h * 100));
  if (pct > depth) depth = pct;
  if (depth - reported >= 10 || (depth == 100 && reported < 100)) {
    reported = depth;
    emit('scroll', { depth: depth });
  }
}
var touch = false;
try { touch = w.matchMedia('(pointer: coarse)').matches; } catch (e) {}
var exitAt = 0;
function exitIntent() {
  var now = Date.now();
  if (now - exitAt < EXIT_MS) return;
  exitAt = now;
  emit('exit_intent', 0, true);
}
var flick = 0, fast = 0, prevY = 0, prevT = 0, touchAt = 0;
function onTouch() { touchAt = Date.now(); activity(); }
function onScroll() {
  activity();
  if (!rafPending) { rafPending = true; w.requestAnimationFrame(guard(measure)); }
  if (!touch) return;
  // A finger's flick up, not a script's jump: 3+ scroll events in a row faster than
  // 1.5 px/ms, 150 px or more in all, from below the first screen.
  var y = w.pageYOffset, t = Date.now();
  if (t - touchAt < 1000 && (prevY - y) / Math.max(1, t - prevT) > 1.5) { flick += prevY - y; fast++; } else flick = fast = 0;
  if (fast > 2 && flick >= 150 && y + flick > w.innerHeight) { flick = fast = 0; exitIntent(); }
  prevY = y; prevT = t;
}

// ---- activity and idle
var actAt = 0, lastAct = 0, idle = false, idleTimer = 0;
function checkIdle() {
  var left = IDLE_MS - (Date.now() - lastAct);
  if (left > 0) { idleTimer = setTimeout(guard(checkIdle), left); return; }
  idleTimer = 0; idle = true;
  emit('idle');
}
function activity() {
  var now = Date.now();
  lastAct = now;
  if (idle || now - actAt >= ACTIVITY_MS) { idle = false; actAt = now; emit('activity'); }
  armIdle();
}
function armIdle() { if (!idleTimer) idleTimer = setTimeout(guard(checkIdle), IDLE_MS); }

// ---- tracked elements
var hovered = new WeakSet(), hoverEl = null, hoverTimer = 0;
function tracked(t) { return t && t.closest ? t.closest('[data-beckon-track]:not([data-beckon-track=""])') : null; }
function trackFields(el) {
  var item = el.getAttribute('data-beckon-item');
  return { element: str(el.getAttribute('data-beckon-track')), item: item || undefined };
}
function onOver(e) {
  var el = tracked(e.target);
  if (el == hoverEl) return;
  clearTimeout(hoverTimer); hoverEl = el;
  if (el && !hovered.has(el)) {
    hoverTimer = setTimeout(guard(function () {
      if (hoverEl != el || hovered.has(el)) return;
      hovered.add(el);
      emit('hover', trackFields(el));
    }), HOVER_MS);
  }
}

// ---- the commands
var hooks = { coupon: [], intervention: [] };
function props(o) {
  var out = {};
  if (isObj(o)) {
    Object.keys(o).slice(0, 32).forEach(function (k) {
      var v = o[k], t = typeof v;
      if (k.length > 64) return;
      if (t == 'string') out[k] = cut(v, 500);
      else if ((t == 'number' && isFinite(v)) || t == 'boolean') out[k] = v;
    });
  }
  return out;
}
var cmds = {
  page: function (o) {
    o = isObj(o) ? o : {};
    override = { type: o.type, product: o.product };
    reportPage();
  },
  cart: function (o) {
    o = isObj(o) ? o : {};
    var it = o.items, n = Array.isArray(it)
      ? it.reduce(function (s, x) { return s + (x && x.quantity != null ? num(x.quantity) : 1); }, 0)
      : num(it);
    emit('cart', { value: Math.max(0, num(o.value)), currency: str(o.currency).toUpperCase(), items: Math.min(1e6, Math.max(0, Math.round(n))) }, true);
  },
  convert: function (o) {
    o = isObj(o) ? o : {};
    emit('convert', { order_id: o.order_id != null ? str(o.order_id) : undefined, value: num(o.value) }, true);
  },
  identify: function (o) { emit('identify', { traits: props(o) }); },
  track: function (name, p) { if (name) emit('track', { name: cut(name, 64), props: props(p) }); },
  on: function (ev, fn) { if (hooks[ev] && typeof fn == 'function') hooks[ev].push(fn); },
  open: function () { openChat(true); },
  close: function () { closeChat(); }
};
function run(a) {
  try { if (cmds.hasOwnProperty(a[0])) cmds[a[0]](a[1], a[2]); } catch (e) {}
}
function callHooks(name, arg) {
  hooks[name].forEach(function (fn) { try { fn(arg); } catch (e) {} });
  return hooks[name].length > 0;
}

// ---- rendering, never with innerHTML
var CSS = `*{box-sizing:border-box}
.w{position:fixed;right:16px;bottom:16px;z-index:2147483000;width:min(360px,100vw - 32px);display:flex;flex-direction:column;gap:12px;pointer-events:none;font:15px/1.45 system-ui,sans-serif;color:#1f2328;--a:var(--beckon-accent,#4338ca)}
.c{position:relative;pointer-events:auto;background:#fff;border:1px solid #e5e8eb;border-radius:16px;box-shadow:0 16px 40px -10px #0f172a4d;padding:18px;overflow:hidden;animation:bk .26s cubic-bezier(.2,.8,.2,1)}
@keyframes bk{from{opacity:0;transform:translateY(14px)}}
@media(prefers-reduced-motion:reduce){.c{animation:none}}
h2{margin:0 30px 6px 0;font-size:16px;line-height:1.3}
h3{margin:0;font-size:15px}
p{margin:0 0 8px}
.t{margin-right:30px;font-weight:600}
.n{font-weight:400}
.m{color:#59636e;font-size:13px}
.c>:last-child,.m:last-child{margin-bottom:0}
.x{position:absolute;top:10px;right:10px;width:32px;height:32px;border:0;border-radius:8px;background:#fffc;color:#59636e;font:inherit;font-size:22px;line-height:1;cursor:pointer}
.img{display:block;width:calc(100% + 36px);max-height:170px;object-fit:cover;margin:-18px -18px 14px}
.acts{display:flex;flex-wrap:wrap;gap:8px;margin-top:14px}
.b{display:inline-flex;align-items:center;justify-content:center;min-height:38px;padding:8px 16px;border:1px solid var(--a);border-radius:10px;background:var(--a);color:#fff;font:inherit;font-weight:600;text-decoration:none;cursor:pointer}
.b:hover{opacity:.9}
.b.s{background:#fff;color:var(--a)}
.b:disabled{opacity:.7;cursor:default}
:focus-visible{outline:2px solid var(--a);outline-offset:2px}
.code{display:flex;align-items:center;justify-content:space-between;gap:10px;margin:12px 0 4px;padding:10px 12px;border:1.5px dashed var(--a);border-radius:10px;background:#f6f6fe}
.code b{font:700 18px ui-monospace,monospace;letter-spacing:.06em;color:var(--a)}
.cmp{display:grid;grid-template-columns:1fr 1fr;gap:10px;margin-top:10px}
.col{display:flex;flex-direction:column;border:1px solid #e5e8eb;border-radius:12px;padding:12px}
.pr{font-weight:700;font-size:17px;margin-bottom:6px}
ul{margin:0 0 12px;padding-left:16px;font-size:13px;flex:1;list-style:"\\2713  "}
li::marker{color:var(--a)}
.col .b{padding:6px 10px;min-height:34px;width:100%}
label{display:block;margin-top:10px;font-size:13px;font-weight:600}
input,textarea{display:block;width:100%;margin-top:4px;padding:9px 11px;border:1px solid #c5ccd4;border-radius:9px;font:inherit;font-size:16px;color:inherit;background:#fff}
textarea{resize:vertical}
.ck{display:flex;gap:8px;align-items:flex-start;font-weight:400;color:#59636e}
.ck input{width:auto;margin:3px 0 0}
[hidden]{display:none!important}
.lc{align-self:flex-end;pointer-events:auto;border-radius:999px;box-shadow:0 8px 24px -8px #0f172a80}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}`;

var host = null, root = null, wrap = null, live = null;
// el('tag.cls', {attr, text, event: fn}, kids): setAttribute/textContent only.
function el(spec, attrs, kids) {
  var p = spec.split('.'), e = d.createElement(p[0]);
  if (p[1]) e.className = p.slice(1).join(' ');
  for (var k in attrs) {
    var v = attrs[k];
    if (v == null || v === false) continue;
    if (k == 'text') e.textContent = str(v);
    else if (typeof v == 'function') e.addEventListener(k, guard(v));
    else e.setAttribute(k, v === true ? '' : str(v));
  }
  (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
  return e;
}
function ensureRoot() {
  if (host && host.isConnected) return true;
  if (!d.body) return false;
  // Inline !important: the page's CSS (div{display:none}) cannot reach it.
  host = el('div', { id: 'beckon-root', style: 'all:initial!important;display:block!important' });
  root = host.attachShadow({ mode: 'open' });
  root.appendChild(el('style', { text: CSS }));
  live = el('div.sr', { 'aria-live': 'polite', role: 'status' });
  wrap = el('div.w');
  root.appendChild(live);
  root.appendChild(wrap);
  root.addEventListener('focusin', guard(function (e) {
    var r = e.relatedTarget;
    if (r && r.getRootNode && r.getRootNode() != root) returnTo = r;
  }));
  d.body.appendChild(host);
  return true;
}
function announce(text) {
  live.textContent = '';
  setTimeout(guard(function () { live.textContent = text; }), 100);
}
// http(s) or a "/path" (never "//host"); no spaces, backslashes, controls.
function safeUrl(u) {
  u = str(u);
  return /[\s\\\x00-\x1f]/.test(u) || !/^(https?:\/\/|\/(?!\/))/i.test(u) ? null : u;
}

// ---- focus: never taken on arrival, given back on close
var returnTo = null;
function focusInside(node) {
  return d.activeElement == host && root.activeElement && node.contains(root.activeElement);
}
function giveBack() {
  var r = returnTo;
  returnTo = null;
  if (r && r.isConnected && r.focus) r.focus({ preventScroll: true });
}

// ---- interventions
var cur = null, waiting = null;
var TYPES = /^(text|card|offer|comparison|email_capture|open_chat)$/;
function onIntervention(f) {
  if (!isObj(f) || !isObj(f.message) || !TYPES.test(f.message.type) || !ID_RE.test(str(f.rule)) || !ID_RE.test(str(f.id))) return;
  if (cur) return; // one at a time
  var iv = { id: str(f.id), rule: str(f.rule), msg: f.message, el: null, engaged: false };
  // Shown means seen: a hidden tab waits until it is visible.
  if (d.hidden || !ensureRoot()) { waiting = f; return; }
  show(iv);
}
function outcome(type, iv, urgent) { emit(type, { rule: iv.rule, intervention: iv.id }, urgent); }
function engage(iv) {
  if (iv.engaged) return;
  iv.engaged = true;
  outcome('engaged', iv, true);
}
function close(iv, dismissed) {
  if (!iv || cur != iv) return;
  if (iv.chat) return closeChat();
  cur = null;
  var had = focusInside(iv.el);
  iv.el.remove();
  if (dismissed && !iv.engaged) outcome('dismissed', iv, true);
  if (had) giveBack();
}
function show(iv) {
  cur = iv;
  var m = iv.msg, t = m.type;
  if (t == 'open_chat') {
    iv.chat = true;
    shown(iv);
    openChat(false, iv, str(m.text), str(m.question));
    return;
  }
  var title = t == 'card' || t == 'comparison' ? str(m.title) : str(m.text);
  var kids = [], acts = [];
  var head = function (tag) { kids.push(el(tag, { id: 'bk-t', text: title })); };
  var btn = function (label, action, fn, secondary) {
    return el('button.b' + (secondary ? '.s' : ''), { type: 'button', 'data-beckon-action': action, text: label, click: fn });
  };
  var link = function (label, href, secondary, aria) {
    return el('a.b' + (secondary ? '.s' : ''), { href: href, 'data-beckon-action': 'accept', 'aria-label': aria, text: label, click: function () { engage(iv); } });
  };
  var toChat = function (visitorText, greeting) {
    engage(iv);
    close(iv, false);
    openChat(true, iv, greeting, visitorText);
  };
  var applyCoupon = function (b, code) {
    engage(iv);
    if (!callHooks('coupon', code)) {
      try { nav.clipboard.writeText(code)['catch'](function () {}); } catch (e) {}
      b.textContent = 'Copied';
    } else b.textContent = 'Applied \u2713';
    b.disabled = true;
    announce(b.textContent);
  };

  if (t == 'card') {
    var img = safeUrl(m.image);
    if (img) kids.push(el('img.img', { src: img, alt: '', loading: 'lazy' }));
    head('h2');
    if (m.body) kids.push(el('p', { text: m.body }));
    list(m.buttons).slice(0, 3).forEach(function (b, n) {
      if (!isObj(b)) return;
      var label = str(b.label), v = str(b.value), sec = n > 0;
      if (b.action == 'url') { var u = safeUrl(v); if (u) acts.push(link(label, u, sec)); }
      else if (b.action == 'coupon') acts.push(btn(label, 'apply-coupon', function () { applyCoupon(this, v); }, sec));
      else if (b.action == 'chat') acts.push(btn(label, 'accept', function () { toChat(v || label); }, sec));
      else if (b.action == 'reply') acts.push(btn(label, 'accept', function () { toChat(label); }, sec));
    });
  } else if (t == 'text') {
    head('p.t.n');
    acts.push(btn('Reply', 'accept', function () { toChat('', title); }));
  } else if (t == 'offer') {
    var code = str(m.code);
    head('p.t');
    if (m.description) kids.push(el('p.m', { text: m.description }));
    var apply = btn('Apply', 'apply-coupon', function () { applyCoupon(apply, code); });
    kids.push(el('div.code', {}, [el('b', { text: code }), apply]));
    var exp = m.expires && expiry(str(m.expires));
    if (exp) kids.push(el('p.m', { text: 'Expires ' + exp }));
  } else if (t == 'comparison') {
    head('h2');
    var items = list(m.items).filter(isObj).slice(0, 2);
    kids.push(el('div.cmp', {}, items.map(function (it) {
      var u = safeUrl(it.url);
      return el('div.col', {}, [
        el('h3', { text: it.name }),
        it.price != null && el('div.pr', { text: it.price }),
        el('ul', {}, list(it.features).slice(0, 6).map(function (x) { return el('li', { text: x }); })),
        u && link('Choose', u, true, 'Choose ' + str(it.name))
      ]);
    })));
  } else if (t == 'email_capture') {
    head('p.t');
    kids.push(form(iv, m));
  }
  if (acts.length) kids.push(el('div.acts', {}, acts));
  kids.push(el('button.x', { type: 'button', 'aria-label': 'Dismiss', 'data-beckon-action': 'dismiss', text: '\u00d7', click: function () { close(iv, true); } }));
  iv.el = el('div.c', {
    role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'bk-t',
    'data-beckon-rule': iv.rule, 'data-beckon-intervention': iv.id, 'data-beckon-type': t
  }, kids);
  wrap.insertBefore(iv.el, wrap.firstChild);
  announce('New message: ' + title);
  shown(iv);
}
function shown(iv) {
  outcome('shown', iv);
  callHooks('intervention', { id: iv.id, rule: iv.rule, message: iv.msg });
}
// Not Intl: its first use is a long task on slow phones.
function expiry(s) {
  var p = /^(\d{4})-(0[1-9]|1[0-2])-(\d\d)/.exec(s);
  return p ? 'JanFebMarAprMayJunJulAugSepOctNovDec'.substr(p[2] * 3 - 3, 3) + ' ' + +p[3] + ', ' + p[1] : s;
}
function form(iv, m) {
  var email = el('input', { type: 'email', name: 'email', required: true, autocomplete: 'email', maxlength: 254 });
  var name = m.ask_name && el('input', { name: 'name', autocomplete: 'name', maxlength: 200 });
  var q = m.ask_question && el('textarea', { name: 'question', rows: 3, maxlength: 2000 });
  var kids = [
    el('label', { text: 'Email' }, [email]),
    name && el('label', { text: 'Name (optional)' }, [name]),
    q && el('label', { text: 'Your question (optional)' }, [q]),
    el('label.ck', {}, [el('input', { type: 'checkbox', name: 'consent', required: true }), el('span', { text: m.consent || 'I agree to be contacted about my request.' })]),
    el('div.acts', {}, [el('button.b', { type: 'submit', 'data-beckon-action': 'submit', text: 'Send' })])
  ];
  var f = el('form', {
    submit: function (e) {
      e.preventDefault();
      var val = function (x) { return (x && x.value.trim()) || undefined; };
      emit('lead', { rule: iv.rule, intervention: iv.id, email: val(email), name: val(name), question: val(q), consent: true }, true);
      engage(iv);
      var thanks = el('p', { tabindex: '-1', text: 'Thank you! We will be in touch soon.' });
      var had = focusInside(f);
      f.replaceWith(thanks);
      if (had) thanks.focus();
      announce(thanks.textContent);
    }
  }, kids);
  return f;
}

// ---- the chat: chat.js, loaded on first use; frames wait for it
var chatMod = null, chatWait = [], chatLoading = false, chatOpen = false, launcher = null;
function withChat(fn) {
  if (chatMod) return fn(chatMod);
  chatWait.push(fn);
  if (chatLoading || !ensureRoot()) return;
  chatLoading = true;
  var s = d.createElement('script');
  s.async = true; s.src = base + '/chat.js?v=' + VERSION;
  s.onerror = guard(function () { chatLoading = false; chatWait = []; });
  (d.head || d.body).appendChild(s);
}
// chat.js hands over its factory; the kit is what it may use of the widget.
Object.defineProperty(api, '_chat', { value: guard(function (factory) {
  if (chatMod || typeof factory != 'function') return;
  chatMod = factory({
    el: el, root: function () { return root; }, wrap: function () { return wrap; }, announce: announce,
    safeUrl: safeUrl, guard: guard, rid: rid, keep: keep, kept: kept, base: base, site: site,
    who: function () { return { visitor: vid, token: vtk }; },
    send: sendChat, live: function () { return sockOpen; }, emit: emit, engage: engage, focusInside: focusInside, giveBack: giveBack,
    remember: function () { if (d.activeElement != host) returnTo = d.activeElement; },
    opened: function (open) {
      if (open == chatOpen) return;
      chatOpen = open;
      emit(open ? 'chat_opened' : 'chat_closed', 0, true);
      if (launcher) launcher.hidden = open;
      if (!open && cur && cur.chat) { var iv = cur; cur = null; if (!iv.engaged) outcome('dismissed', iv, true); }
    }
  });
  var q = chatWait; chatWait = [];
  q.forEach(function (fn) { fn(chatMod); });
}) });
function sendChat(frame) {
  if (sockOpen) { sock.send(JSON.stringify(frame)); return; }
  if (!vtk) return; // no identity yet: the socket or the first batch brings one
  w.fetch(base + '/v1/chat?site=' + enc(site), {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ visitor: vid, token: vtk, frame: frame })
  }).then(function (r) { return r.json(); }).then(guard(function (j) {
    list(j.frames).forEach(onFrame);
  }))['catch'](function () {});
}
function openChat(focus, iv, greeting, question) {
  withChat(function (c) { c.open(focus, iv, greeting, question); });
}
function closeChat() { if (chatMod) chatMod.hide(); }
function showLauncher() {
  if (launcher || !ensureRoot()) return;
  launcher = el('button.b.lc', { type: 'button', 'aria-label': 'Open the chat', text: 'Chat with us', click: function () { openChat(true); } });
  launcher.hidden = chatOpen;
  wrap.appendChild(launcher);
}
function chatConfig() {
  if (w.fetch) w.fetch(base + '/v1/chat/config?site=' + enc(site)).then(function (r) { return r.json(); })
    .then(guard(function (j) { if (isObj(j) && j.launcher) showLauncher(); }))['catch'](function () {});
}

// Escape closes what has focus, or the intervention when the page body has it.
function onKey(e) {
  if (e.key != 'Escape' && e.key != 'Esc') return;
  var a = d.activeElement;
  if (host && a == host) {
    var inner = root.activeElement;
    if (chatOpen && chatMod && chatMod.has(inner)) closeChat();
    else if (cur && cur.el && cur.el.contains(inner)) close(cur, true);
  } else if ((!a || a == d.body || a == d.documentElement) && cur) close(cur, true);
}

// Setup, in small pieces so that no long task lands on the page.
var steps = [
  function () { // identity
    vid = kept('vid', ID_RE); vtk = kept('vtk', TOKEN_RE);
    if (!vid) { vid = rid('v_', 20); vtk = ''; } // until the server issues one
    keep('vid', vid);
    sid = get(SS, 'beckon:sid');
    lastAt = +get(SS, 'beckon:last') || 0;
    seq = +get(SS, 'beckon:seq') || 0;
    if (!ID_RE.test(str(sid)) || Date.now() - lastAt > SESSION_MS) { newSession(); lastAt = Date.now(); }
    try {
      var saved = JSON.parse(get(SS, 'beckon:outbox') || '[]');
      box = list(saved).filter(function (e) { return isObj(e) && ID_RE.test(str(e.id)) && e.id.indexOf(':') > 0; })
        .map(function (e) { return { e: e, s: 0, n: 0 }; });
    } catch (e) {}
  },
  function () { // queued calls and the first page view
    ready = true;
    var q = queue, isPage = function (a) { return a[0] == 'page'; };
    queue = [];
    q.filter(isPage).forEach(run);
    if (!pageDone) reportPage();
    q.filter(function (a) { return !isPage(a); }).forEach(run);
    if (d.hidden) emit('visibility', { visible: false });
  },
  function () { // listeners, then the connection
    ['mousemove', 'keydown', 'click'].forEach(function (t) { on(w, t, activity); });
    ['touchstart', 'touchmove'].forEach(function (t) { on(w, t, onTouch); });
    on(w, 'scroll', onScroll);
    on(d, 'mouseover', onOver);
    on(d, 'click', function (e) { var t = tracked(e.target); if (t) emit('click', trackFields(t)); });
    on(d, 'mouseout', function (e) {
      if (!e.relatedTarget && e.clientY <= 0) exitIntent();
    });
    on(d, 'keydown', onKey);
    on(d, 'visibilitychange', function () {
      if (d.hidden && touch) exitIntent();
      emit('visibility', { visible: !d.hidden });
      if (d.hidden) beacon();
      else {
        var f = waiting;
        waiting = null;
        onIntervention(f);
      }
    });
    on(w, 'pagehide', function (e) { beacon(); if (e.persisted) disconnect(); }); // keep bfcache usable
    on(w, 'pageshow', function (e) { if (e.persisted) { reportPage(); connect(); } });
    on(w, 'popstate', onNav);
    ['pushState', 'replaceState'].forEach(function (m) {
      var orig = hist[m];
      if (typeof orig != 'function') return;
      hist[m] = function () {
        var r = orig.apply(this, arguments); // unguarded: the page's errors stay its own
        guard(onNav)();
        return r;
      };
    });
    connect();
  },
  function () { ensureRoot(); }, // a live region must exist before it speaks
  function () { // the launcher, and a conversation left open on the last page
    chatConfig();
    if (kept('chat', /^(open|min)$/)) withChat(function (c) { c.resume(); });
  }
];
function next() {
  var s = steps.shift();
  if (!s) return;
  try { s(); } catch (e) {}
  later(next);
}
later(next);
} catch (e) {}
})(window, document);
