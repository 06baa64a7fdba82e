/*! Beckon chat: loaded by widget.js on first use; see docs/wire-protocol.md (Chat) */
(function (w, d) {
'use strict';
// Like the widget, it must never break its host page: all of it runs inside try/catch.
try {
var B = w.beckon;
if (!B || typeof B._chat != 'function') return;
B._chat(function (k) {
var el = k.el, g = k.guard;
var GIVE_UP_MS = 60000, RESEND_MS = 5000, TYPING_MS = 4000, POLL_PAUSE_MS = 5000, MAX_FILE = 5 * 1024 * 1024;
var ACCEPT = 'image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain';
var CSS = `.chat{padding:0;display:flex;flex-direction:column}
.hd{display:flex;flex-wrap:wrap;align-items:center;gap:2px 12px;padding:12px 48px 8px 16px;border-bottom:1px solid #e5e8eb}
.hd h2{margin:0;flex:1 0 100%}
.lk{border:0;background:none;padding:2px 0;color:var(--a);font:inherit;font-size:13px;font-weight:600;cursor:pointer;text-decoration:underline}
.log{display:flex;flex-direction:column;gap:8px;padding:14px 16px;height:min(360px,50vh);overflow-y:auto}
.msg{max-width:85%;padding:8px 12px;border-radius:14px;background:#f1f3f5;align-self:flex-start;white-space:pre-wrap;overflow-wrap:anywhere}
.msg.me{align-self:flex-end;background:var(--a);color:#fff;border-bottom-right-radius:4px}
.msg.me a{color:#fff}
.msg.sys{align-self:center;background:none;color:#59636e;font-size:13px;text-align:center}
.msg.draft{opacity:.75}
.msg.bad{background:#fde8e8;color:#8a1c1c}
.who{display:block;font-size:12px;font-weight:600;color:#59636e;margin-bottom:2px}
.st{font-size:12px;color:#59636e;align-self:flex-end;margin-top:-4px}
.ty{min-height:18px;padding:0 16px;font-size:12px;color:#59636e}
.bn{margin:0 16px 8px;padding:8px 10px;border-radius:10px;background:#f6f6fe;font-size:13px}
.f{display:flex;gap:8px;padding:12px;border-top:1px solid #e5e8eb}
.f input{margin:0;flex:1}
.fx{padding:12px 16px;border-top:1px solid #e5e8eb}
.fx .acts{margin-top:10px}
.stars{display:flex;gap:6px;margin-top:6px}
.stars button{width:40px;height:40px;border:1px solid #c5ccd4;border-radius:10px;background:#fff;font-size:20px;cursor:pointer;color:#59636e}
.stars button[aria-pressed=true]{background:var(--a);border-color:var(--a);color:#fff}
.pic{display:block;max-width:100%;max-height:220px;border-radius:10px;margin-top:4px}
.fl{color:inherit;font-weight:600}
.att{padding:8px 10px}
.att svg{width:18px;height:18px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}
select{display:block;width:100%;margin-top:4px;padding:9px 11px;border:1px solid #c5ccd4;border-radius:9px;font:inherit;background:#fff;color:inherit}`;

function str(v) { return v == null ? '' : String(v); }
function isObj(v) { return v && typeof v == 'object' && !Array.isArray(v); }
function list(v) { return Array.isArray(v) ? v : []; }

var panel = null, log, input, picker, title, ask, end, banner, typing, foot, form, extra = null, extraKind = null;
var conv = null, last = 0, readSent = 0, bySeq = {}, pending = {}, draft = null, iv = null;
var shown = false, reopen = false, typingOn = false, typingTimer = 0, theirTyping = 0, polling = false, cfg = null;

function build() {
  if (panel) return true;
  var root = k.root();
  if (!root) return false;
  root.appendChild(el('style', { text: CSS }));
  title = el('h2', { id: 'bk-ct', text: 'Chat with us' });
  ask = el('button.lk', { type: 'button', 'data-beckon-action': 'handoff', text: 'Talk to a person', click: function () { send({ type: 'handoff' }); } });
  end = el('button.lk', { type: 'button', 'data-beckon-action': 'end', text: 'End chat', hidden: true, click: function () { send({ type: 'chat_end' }); } });
  log = el('div.log', { role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
  typing = el('div.ty', { 'aria-live': 'polite' });
  banner = el('div.bn', { hidden: true, role: 'status' });
  input = el('input', { type: 'text', 'data-beckon-input': true, 'aria-label': 'Your message', placeholder: 'Type your message\u2026', autocomplete: 'off', maxlength: 4000, input: onInput });
  form = el('form.f', {
    submit: function (e) {
      e.preventDefault();
      var v = input.value.trim();
      if (!v) return;
      input.value = '';
      stopTyping();
      say(v);
    }
  }, [input, picker = el('input', { type: 'file', accept: ACCEPT, hidden: true, 'aria-label': 'Attach a file', change: onPick }),
    el('button.b.s.att', { type: 'button', 'aria-label': 'Attach a file', 'data-beckon-action': 'attach', click: function () { picker.click(); } }, [clip()]),
    el('button.b', { type: 'submit', 'data-beckon-action': 'submit', text: 'Send' })]);
  foot = el('div');
  panel = el('div.c.chat', { role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'bk-ct', hidden: true }, [
    el('div.hd', {}, [title, ask, end]),
    log, typing, banner, foot, form,
    el('button.x', { type: 'button', 'aria-label': 'Close chat', 'data-beckon-action': 'dismiss', text: '\u00d7', click: hide })
  ]);
  k.wrap().appendChild(panel);
  setInterval(g(resend), RESEND_MS);
  return true;
}

// ---- showing and hiding (the conversation goes on while hidden)
function show(focus) {
  if (!build()) return;
  if (focus) k.remember();
  panel.hidden = false;
  shown = true;
  k.keep('chat', conv && conv.status != 'closed' ? 'open' : 'none');
  k.opened(true);
  if (focus) input.focus({ preventScroll: true });
  log.scrollTop = log.scrollHeight;
  markRead();
}
function hide() {
  if (!panel || !shown) return;
  var had = k.focusInside(panel);
  panel.hidden = true;
  shown = false;
  if (conv && conv.status != 'closed') k.keep('chat', 'min');
  stopTyping();
  k.opened(false);
  if (had) k.giveBack();
}

// ---- messages: text only, links made from checked URLs
var LINK = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)])/g;
function rich(text) {
  var frag = d.createDocumentFragment(), at = 0, m;
  text = str(text);
  LINK.lastIndex = 0;
  while ((m = LINK.exec(text))) {
    var u = k.safeUrl(m[1]);
    if (!u) continue;
    frag.appendChild(d.createTextNode(text.slice(at, m.index)));
    frag.appendChild(el('a', { href: u, target: '_blank', rel: 'noopener noreferrer nofollow', text: u }));
    at = m.index + m[1].length;
  }
  frag.appendChild(d.createTextNode(text.slice(at)));
  return frag;
}
// A paperclip, drawn (an emoji needs a font the page may not have).
function clip() {
  var NS = 'http://www.w3.org/2000/svg', svg = d.createElementNS(NS, 'svg'), path = d.createElementNS(NS, 'path');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  path.setAttribute('d', 'M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l8-8');
  svg.appendChild(path);
  return svg;
}
function fileUrl(f) {
  var who = k.who();
  return k.base + '/v1/chat/files/' + encodeURIComponent(str(f.id)) + '?site=' + encodeURIComponent(k.site) +
    '&visitor=' + encodeURIComponent(who.visitor) + '&token=' + encodeURIComponent(who.token);
}
function size(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + ' MB' : Math.max(1, Math.round(n / 1024)) + ' KB'; }
function bubble(cls, who, text, file) {
  var b = el('div.msg.' + cls, {}, [who ? el('span.who', { text: who }) : /^me/.test(cls) ? el('span.sr', { text: 'You: ' }) : null]);
  if (isObj(file) && /^image\/(png|jpeg|gif|webp)$/.test(str(file.mime))) {
    b.appendChild(el('img.pic', { src: fileUrl(file), alt: str(file.name), loading: 'lazy', referrerpolicy: 'no-referrer' }));
  } else if (isObj(file)) {
    b.appendChild(el('a.fl', { href: fileUrl(file), download: str(file.name), rel: 'noopener', text: 'File: ' + str(file.name) + ' (' + size(+file.size || 0) + ')' }));
  } else b.appendChild(rich(text));
  return b;
}
function place(node, seq) {
  // In order of seq: a message published late still lands where it belongs.
  var after = null;
  for (var s in bySeq) if (+s > seq && (!after || +s < after.s)) after = { s: +s, n: bySeq[s] };
  log.insertBefore(node, after ? after.n : (draft && draft.parentNode == log ? draft : null));
  log.scrollTop = log.scrollHeight;
}
function add(m) {
  if (!isObj(m) || !(m.seq > 0) || bySeq[m.seq]) return;
  var from = str(m.from), node;
  if (from == 'visitor') {
    var p = m.id && pending[m.id];
    node = p && !m.file ? p.el : bubble('me', '', m.text, m.file);
    if (p && m.file) p.el.remove();
    node.classList.remove('pending');
    if (p) delete pending[m.id];
  } else if (from == 'system') node = bubble('sys', '', m.text);
  else {
    node = bubble(from, from == 'agent' ? str(m.name) || 'Agent' : 'Assistant', m.text, m.file);
    if (draft && from == 'ai') { draft.remove(); draft = null; }
  }
  node.setAttribute('data-seq', m.seq);
  bySeq[m.seq] = node;
  if (!node.parentNode || node.parentNode != log || p) place(node, m.seq);
  if (m.seq > last) last = m.seq;
  if (from != 'visitor') {
    typing.textContent = '';
    if (!shown && from == 'agent') show(false);
    markRead();
  }
}
function local(cls, who, text) {
  if (!build() || !text) return;
  log.appendChild(bubble(cls, who, text));
  log.scrollTop = log.scrollHeight;
}

// ---- sending: each message keeps its id until the server says it is stored
function send(frame) { k.send(frame); }
function say(text) {
  var id = k.rid('m_', 16), f = { type: 'say', id: id, text: text };
  if (iv && !conv) { f.rule = iv.rule; f.intervention = iv.id; }
  if (iv) k.engage(iv);
  var b = bubble('me.pending', '', text);
  log.appendChild(b);
  log.scrollTop = log.scrollHeight;
  pending[id] = { f: f, el: b, at: Date.now(), first: Date.now() };
  send(f);
  poll();
}
function onPick() {
  var f = picker.files && picker.files[0], who = k.who();
  picker.value = '';
  if (!f) return;
  if (f.size > MAX_FILE) return local('sys', '', 'A file may be at most 5 MB.');
  if (!who.token || !w.fetch) return local('sys', '', 'Files cannot be sent just now; try again in a moment.');
  var id = k.rid('m_', 16), b = bubble('me.pending', '', 'File: ' + f.name);
  log.appendChild(b);
  pending[id] = { f: null, el: b, at: Date.now(), failed: true }; // a file is not resent by the timer
  if (iv) k.engage(iv);
  w.fetch(k.base + '/v1/chat/files?site=' + encodeURIComponent(k.site) + '&visitor=' + encodeURIComponent(who.visitor) +
    '&token=' + encodeURIComponent(who.token) + '&id=' + id + '&name=' + encodeURIComponent(f.name), {
    method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: f
  }).then(function (r) { return r.json(); }).then(g(function (j) {
    if (j && j.error) frame({ type: 'chat_error', id: id, error: j.error });
    list(j && j.frames).forEach(frame);
  }))['catch'](g(function () { frame({ type: 'chat_error', id: id, error: 'The file could not be sent.' }); }));
}
function resend() {
  var now = Date.now();
  for (var id in pending) {
    var p = pending[id];
    if (!p.failed && now - p.at >= RESEND_MS) { p.at = now; send(p.f); } // the same id: stored once
  }
}
function onInput() {
  if (!typingOn && conv && conv.status == 'active') { typingOn = true; send({ type: 'typing', on: true }); }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(g(stopTyping), TYPING_MS);
}
function stopTyping() {
  clearTimeout(typingTimer);
  if (typingOn) { typingOn = false; send({ type: 'typing', on: false }); }
}
function markRead() {
  if (shown && !d.hidden && conv && conv.status != 'closed' && last > readSent) { readSent = last; send({ type: 'read', seq: last }); }
}

// ---- the conversation's standing: waiting, a person, missed, closed
function state(c) {
  conv = isObj(c) ? c : null;
  var st = conv ? str(conv.status) : '';
  ask.hidden = st == 'waiting' || st == 'active' || st == 'closed';
  end.hidden = !conv || st == 'closed';
  banner.hidden = st != 'waiting';
  banner.textContent = st == 'waiting' ? 'Waiting for a person\u2026 You can keep writing.' : '';
  form.hidden = st == 'closed' || (!conv && extraKind == 'prechat');
  if (!conv || st == 'closed') k.keep('chat', 'none');
  else k.keep('chat', shown || reopen ? 'open' : 'min');
  if (reopen && conv && st != 'closed') show(false);
  reopen = false;
  if (conv) markReadMarks(conv.read);
  var want = st == 'missed' && !conv.follow_up ? 'follow' : st == 'closed' && conv.rate ? 'rate' : null;
  // A form asked for stays until it is answered; a thank-you stays until there is news.
  if (want != extraKind && (want || !/^(prechat|thanks)$/.test(extraKind))) {
    setExtra(want == 'follow' ? followUp() : want == 'rate' ? rating() : null, want);
  }
  if (conv && st != 'closed') poll();
}
function setExtra(node, kind) {
  if (extra) extra.remove();
  extra = node;
  extraKind = node ? kind : null;
  if (node) foot.appendChild(node);
}
function markReadMarks(seq) {
  var mark = log.querySelector('.st');
  if (mark) mark.remove();
  var mine = log.querySelectorAll('.msg.me[data-seq]'), lastMine = null;
  for (var i = 0; i < mine.length; i++) if (+mine[i].getAttribute('data-seq') <= seq) lastMine = mine[i];
  if (lastMine) lastMine.after(el('div.st', { text: 'Read' }));
}
function followUp() {
  var email = el('input', { type: 'email', required: true, autocomplete: 'email', maxlength: 254, 'aria-label': 'Your e-mail address' });
  return el('form.fx', {
    submit: function (e) { e.preventDefault(); send({ type: 'follow_up', email: email.value.trim() }); }
  }, [el('label', { text: 'Your e-mail address' }, [email]), el('div.acts', {}, [el('button.b', { type: 'submit', 'data-beckon-action': 'submit', text: 'Send' })])]);
}
function rating() {
  var score = 0, comment = el('textarea', { rows: 2, maxlength: 1000, 'aria-label': 'A comment (optional)' });
  var stars = [1, 2, 3, 4, 5].map(function (n) {
    return el('button', { type: 'button', 'aria-pressed': 'false', 'aria-label': n + ' of 5', 'data-beckon-rating': n, text: '\u2605', click: function () {
      score = n;
      stars.forEach(function (s, i) { s.setAttribute('aria-pressed', i < n ? 'true' : 'false'); });
    } });
  });
  return el('form.fx', {
    submit: function (e) {
      e.preventDefault();
      if (!score) return;
      send({ type: 'rate', score: score, comment: comment.value.trim() });
      setExtra(el('p.fx', { role: 'status', text: 'Thank you for your rating!' }), 'thanks');
    }
  }, [el('p', { text: 'How was this chat?' }), el('div.stars', { role: 'group', 'aria-label': 'Your rating' }, stars),
    el('label', { text: 'A comment (optional)' }, [comment]),
    el('div.acts', {}, [el('button.b', { type: 'submit', 'data-beckon-action': 'submit', text: 'Send rating' })])]);
}
function prechatForm() {
  var p = cfg && isObj(cfg.prechat) ? cfg.prechat : {};
  if (!p.name && !p.email && !list(p.topics).length) return null;
  var name = p.name && el('input', { autocomplete: 'name', maxlength: 100 });
  var email = p.email && el('input', { type: 'email', autocomplete: 'email', maxlength: 254 });
  var topic = list(p.topics).length && el('select', {}, list(p.topics).map(function (t) { return el('option', { value: str(t), text: str(t) }); }));
  var f = el('form.fx', {
    submit: function (e) {
      e.preventDefault();
      var v = function (x) { return x ? x.value.trim() : ''; };
      send({ type: 'chat_start', prechat: { name: v(name), email: v(email), topic: v(topic) } });
      setExtra(null);
      form.hidden = false;
    }
  }, [name && el('label', { text: 'Your name' }, [name]), email && el('label', { text: 'Your e-mail address' }, [email]),
    topic && el('label', { text: 'Topic' }, [topic]),
    el('div.acts', {}, [el('button.b', { type: 'submit', 'data-beckon-action': 'submit', text: 'Start chat' })])]);
  return f;
}

// ---- without a socket: the conversation is read over HTTP, waiting for news
function poll() {
  if (polling || k.live() || !conv || conv.status == 'closed') return;
  var who = k.who();
  if (!who.token || !w.fetch) return;
  polling = true;
  w.fetch(k.base + '/v1/chat?site=' + encodeURIComponent(k.site) + '&visitor=' + encodeURIComponent(who.visitor) +
    '&token=' + encodeURIComponent(who.token) + '&after=' + last)
    .then(function (r) { return r.json(); })
    .then(g(function (j) { polling = false; list(j.frames).forEach(frame); }))
    ['catch'](function () { setTimeout(g(function () { polling = false; poll(); }), POLL_PAUSE_MS); });
}

// ---- frames from the server
function frame(f) {
  if (!isObj(f) || !build()) return;
  var t = f.type;
  if (t == 'chat_state') {
    list(f.messages).forEach(add);
    state(f.conversation);
  } else if (t == 'chat') {
    add(f);
    if (!conv) send({ type: 'chat_sync', after: 0 });
  } else if (t == 'chat_draft') {
    if (!draft) { draft = bubble('ai.draft', 'Assistant', ''); log.appendChild(draft); }
    draft.replaceChildren(draft.firstChild, rich(f.text));
    log.scrollTop = log.scrollHeight;
  } else if (t == 'chat_typing') {
    clearTimeout(theirTyping);
    typing.textContent = f.on ? 'Typing\u2026' : '';
    if (f.on) theirTyping = setTimeout(g(function () { typing.textContent = ''; }), 15000);
  } else if (t == 'chat_read') markReadMarks(+f.seq || 0);
  else if (t == 'said') {
    var p = pending[str(f.id)];
    if (p) p.el.classList.remove('pending');
    if (!conv) send({ type: 'chat_sync', after: last }); // a tab without a socket learns of it here
  } else if (t == 'chat_error') {
    var q = f.id && pending[str(f.id)];
    // Unavailable for a moment: a pending message is sent again, for a minute at most.
    if (f.retry && q && Date.now() - q.first < GIVE_UP_MS) return;
    if (q) { q.failed = true; q.el.classList.add('bad'); delete pending[str(f.id)]; }
    local('sys', '', str(f.error));
  } else if (t == 'chat_stale') send({ type: 'chat_sync', after: last });
  else if (t == 'chat_invite') { reopen = true; send({ type: 'chat_sync', after: last }); }
}

return {
  open: function (focus, ivArg, greeting, question) {
    if (!build()) return;
    if (ivArg) {
      iv = ivArg;
      panel.setAttribute('data-beckon-rule', iv.rule);
      panel.setAttribute('data-beckon-intervention', iv.id);
      iv.el = panel;
    }
    show(focus);
    if (greeting) local('ai', 'Assistant', greeting);
    if (question) say(question);
    else if (!conv) {
      send({ type: 'chat_sync', after: last });
      if (!ivArg && !cfg && w.fetch) {
        w.fetch(k.base + '/v1/chat/config?site=' + encodeURIComponent(k.site)).then(function (r) { return r.json(); })
          .then(g(function (j) {
            cfg = j;
            if (isObj(j) && j.title) title.textContent = str(j.title);
            var pf = !conv && prechatForm();
            if (pf) { setExtra(pf, 'prechat'); form.hidden = true; local('sys', '', 'Tell us a little about you, and we will be right with you.'); }
          }))['catch'](function () {});
      }
    }
  },
  hide: hide,
  frame: g(frame),
  resume: function () {
    reopen = k.kept('chat', /^(open|min)$/) == 'open';
    if (build()) send({ type: 'chat_sync', after: last });
  },
  has: function (node) { return !!panel && panel.contains(node); }
};
});
} catch (e) {}
})(window, document);
