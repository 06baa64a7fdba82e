// The agent console: the desk's queue and conversations, one transcript with its context, and
// the reply box. It reads and changes everything through the admin API and follows the desk
// live through server-sent events. Everything typed by anyone is set as text, never as HTML.
(function () {
  'use strict';
  var root = document.getElementById('console');
  if (!root) return;
  var site = root.dataset.site, me = +root.dataset.me, csrf = root.dataset.csrf;
  var API = '/api/v1/sites/' + encodeURIComponent(site);
  var board = null, open = [], selected = null, transcript = null, lastSeq = 0;
  var typingOn = false, typingTimer = 0, theirTyping = 0;
  var $ = function (id) { return document.getElementById(id); };

  function h(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v == null || v === false) return;
      if (k === 'text') e.textContent = String(v);
      else if (typeof v === 'function') e.addEventListener(k, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    });
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }

  function api(method, path, body) {
    return fetch(API + path, {
      method: method,
      credentials: 'same-origin',
      headers: body === undefined ? { 'X-CSRF-Token': csrf } : { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      if (r.status === 204) return null;
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j && j.error ? j.error : 'the request failed (' + r.status + ')');
        return j;
      });
    });
  }
  function rid() { return 'a_' + Math.random().toString(36).slice(2, 12) + Date.now().toString(36); }
  function time(iso) { var d = new Date(iso); return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); }
  var STATUS = { bot: 'AI agent answering', queued: 'Waiting for a person', offered: 'Offered', active: 'With a person', missed: 'Nobody took it: follow-up', closed: 'Closed' };

  // ---- the desk: availability, people, queue
  var wanted = null; // whether the person chose to be available (kept across reconnects)
  function loadBoard() {
    return api('GET', '/desk').then(function (b) {
      board = b;
      $('available').checked = b.available;
      if (wanted === null) wanted = b.available;
      var online = b.people.filter(function (p) { return p.available; });
      $('desk-people').textContent = online.length ? online.map(function (p) { return p.name + ' (' + p.holding + '/' + p.capacity + ')'; }).join(', ') + ' online' : 'Nobody is online.';
      var t = $('transfer');
      t.replaceChildren(h('option', { value: '', text: 'Transfer to…' }));
      b.departments.forEach(function (d) { t.appendChild(h('option', { value: 'd:' + d.id, text: d.name + ' (team)' })); });
      b.people.filter(function (p) { return p.id !== me; }).forEach(function (p) { t.appendChild(h('option', { value: 'p:' + p.id, text: p.name })); });
      var c = $('canned');
      c.replaceChildren(h('option', { value: '', text: 'Canned replies…' }));
      b.canned.forEach(function (r, i) { c.appendChild(h('option', { value: String(i), text: r.shortcut })); });
      drawLists();
    });
  }
  function loadOpen() {
    return api('GET', '/conversations?state=open&limit=200').then(function (page) { open = page.items; drawLists(); });
  }
  function entry(c) {
    var waiting = c.status === 'queued' || c.status === 'offered';
    var label = c.prechat && c.prechat.name ? c.prechat.name : c.visitor;
    var li = h('li', { 'data-conversation': c.id, 'aria-current': selected === c.id ? 'true' : null }, [
      h('button', { type: 'button', class: 'conv-pick', click: function () { select(c.id); } }, [
        h('strong', { text: label }), ' ',
        c.unread ? h('span', { class: 'badge', text: String(c.unread), 'aria-label': c.unread + ' unread' }) : null,
        h('br'), h('small', { class: 'muted', text: (STATUS[c.status] || c.status) + (c.department ? ' · ' + c.department : '') + (c.handoff ? ' · ' + c.handoff : '') })
      ]),
      waiting ? h('button', { type: 'button', class: 'btn small', 'data-accept': c.id, text: c.status === 'offered' && c.assignee === me ? 'Accept (offered to you)' : 'Accept', click: function () { accept(c.id); } }) : null
    ]);
    return li;
  }
  function drawLists() {
    var waiting = open.filter(function (c) { return c.status === 'queued' || c.status === 'offered'; });
    var rest = open.filter(function (c) { return !(c.status === 'queued' || c.status === 'offered'); });
    $('queue').replaceChildren.apply($('queue'), waiting.length ? waiting.map(entry) : [h('li', { class: 'muted small', text: 'Nobody is waiting.' })]);
    $('open').replaceChildren.apply($('open'), rest.length ? rest.map(entry) : [h('li', { class: 'muted small', text: 'No open conversation.' })]);
  }

  // ---- one conversation
  function select(id) {
    selected = id;
    drawLists();
    return api('GET', '/conversations/' + encodeURIComponent(id)).then(function (t) {
      if (selected !== id) return;
      transcript = t;
      lastSeq = 0;
      $('transcript').replaceChildren();
      t.messages.forEach(addMessage);
      seen(t.conversation.visitor_read);
      drawHead();
      drawContext(t.conversation);
      markRead();
    }).catch(fail);
  }
  function drawHead() {
    var c = transcript.conversation;
    $('conv-title').textContent = (c.prechat && c.prechat.name ? c.prechat.name + ' · ' : '') + c.visitor;
    $('conv-status').textContent = (STATUS[c.status] || c.status) + (c.handoff ? ' — ' + c.handoff : '') + (c.rating ? ' · rated ' + c.rating + '/5' + (c.rating_comment ? ': “' + c.rating_comment + '”' : '') : '');
    var closed = c.status === 'closed';
    $('conv-actions').hidden = closed;
    $('accept').hidden = !(c.status === 'queued' || c.status === 'offered');
    $('reply').hidden = closed;
  }
  function addMessage(m) {
    // Messages are published as they are stored, not always in order: each goes by its seq.
    var log = $('transcript');
    if (log.querySelector('[data-seq="' + m.seq + '"]')) return;
    lastSeq = Math.max(lastSeq, m.seq);
    var who = m.from === 'visitor' ? 'Visitor' : m.from === 'ai' ? 'AI agent' : m.from === 'agent' ? (m.name || 'Agent') : '';
    var body = h('p', { text: m.text });
    if (m.file) {
      var url = API + '/conversations/' + encodeURIComponent(transcript.conversation.id) + '/files/' + encodeURIComponent(m.file.id);
      body = /^image\/(png|jpeg|gif|webp)$/.test(m.file.mime)
        ? h('a', { href: url, target: '_blank', rel: 'noopener' }, [h('img', { class: 'pic', src: url, alt: m.file.name })])
        : h('a', { href: url, download: m.file.name, text: 'File: ' + m.file.name + ' (' + Math.max(1, Math.round(m.file.size / 1024)) + ' KB)' });
    }
    var node = h('div', { class: 'line ' + m.from, 'data-seq': m.seq }, [
      who ? h('span', { class: 'who', text: who + ' · ' + time(m.at) }) : null,
      body
    ]);
    var after = Array.from(log.querySelectorAll('[data-seq]')).find(function (l) { return +l.dataset.seq > m.seq; });
    log.insertBefore(node, after || null);
    log.scrollTop = log.scrollHeight;
  }
  // "Seen" under the last of our messages the visitor has read.
  function seen(seq) {
    var old = document.querySelector('#transcript .seen');
    if (old) old.remove();
    var ours = Array.from(document.querySelectorAll('#transcript .line.agent')).filter(function (l) { return +l.dataset.seq <= seq; });
    var last = ours[ours.length - 1];
    if (last) last.after(h('p', { class: 'seen muted small', text: 'Seen' }));
  }
  function row(label, value) { return value ? h('div', {}, [h('dt', { text: label }), h('dd', { text: value })]) : null; }
  function drawContext(c) {
    var x = c.context;
    var kids = [h('dl', { class: 'facts' }, [
      row('Started from', c.origin === 'intervention' ? 'rule ' + c.rule : c.origin === 'agent' ? 'started from the console' : 'the chat launcher'),
      row('Department', c.department),
      row('Cart', x.cart ? x.cart.items + ' items · ' + x.cart.value.toFixed(2) + ' ' + x.cart.currency : 'empty'),
      row('Device', [x.device, x.browser, x.os].filter(Boolean).join(' · ')),
      row('Language', x.language),
      row('Referrer', x.referrer),
      c.prechat ? row('Name', c.prechat.name) : null,
      c.prechat ? row('E-mail', c.prechat.email) : null,
      c.prechat ? row('Topic', c.prechat.topic) : null
    ].concat(x.traits.map(function (t) { return row(t[0], t[1]); })))];
    kids.push(h('h3', { class: 'h4', text: 'Pages this visit' }));
    kids.push(x.pages.length ? h('ol', { class: 'pages' }, x.pages.slice().reverse().map(function (p) {
      return h('li', {}, [h('span', { text: p.title || p.path }), ' ', h('small', { class: 'muted', text: (p.page_type ? p.page_type + ' · ' : '') + p.path + ' · ' + time(p.at) })]);
    })) : h('p', { class: 'muted small', text: 'No page seen yet.' }));
    $('context').replaceChildren.apply($('context'), kids);
  }
  function markRead() {
    if (!transcript || document.hidden || !lastSeq) return;
    api('POST', '/conversations/' + encodeURIComponent(transcript.conversation.id) + '/read', { seq: lastSeq })
      .then(function () { soon(); }) // the list's unread counts
      .catch(function () {});
  }

  // ---- actions
  function fail(e) { $('reply-error').textContent = e.message || String(e); }
  function accept(id) {
    return api('POST', '/conversations/' + encodeURIComponent(id) + '/accept').then(function () {
      return Promise.all([loadOpen(), loadBoard()]).then(function () { return select(id); });
    }).catch(function (e) { fail(e); loadOpen(); });
  }
  $('accept').addEventListener('click', function () { if (transcript) accept(transcript.conversation.id); });
  $('close-conv').addEventListener('click', function () {
    if (!transcript) return;
    var id = transcript.conversation.id;
    api('POST', '/conversations/' + encodeURIComponent(id) + '/close').then(function () { loadOpen(); select(id); }).catch(fail);
  });
  $('transfer').addEventListener('change', function (e) {
    var v = e.target.value;
    if (!v || !transcript) return;
    var body = v[0] === 'd' ? { department: v.slice(2) } : { person: +v.slice(2) };
    api('POST', '/conversations/' + encodeURIComponent(transcript.conversation.id) + '/transfer', body)
      .then(function () { e.target.value = ''; loadOpen(); loadBoard(); }).catch(fail);
  });
  $('canned').addEventListener('change', function (e) {
    var reply = board && board.canned[+e.target.value];
    if (reply) { $('reply-text').value = reply.text; $('reply-text').focus(); }
    e.target.value = '';
  });
  $('available').addEventListener('change', function (e) {
    wanted = e.target.checked;
    api('PUT', '/desk/availability', { available: e.target.checked }).then(function () { loadBoard(); loadOpen(); }).catch(fail);
  });
  function stopTyping() {
    clearTimeout(typingTimer);
    if (typingOn && transcript) { typingOn = false; api('POST', '/conversations/' + encodeURIComponent(transcript.conversation.id) + '/typing', { on: false }).catch(function () {}); }
  }
  $('reply-text').addEventListener('input', function () {
    if (!transcript) return;
    if (!typingOn) { typingOn = true; api('POST', '/conversations/' + encodeURIComponent(transcript.conversation.id) + '/typing', { on: true }).catch(function () {}); }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, 4000);
  });
  $('reply-text').addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('reply').requestSubmit(); }
  });
  $('reply').addEventListener('submit', function (e) {
    e.preventDefault();
    var text = $('reply-text').value.trim();
    if (!text || !transcript) return;
    var id = transcript.conversation.id;
    $('reply-error').textContent = '';
    stopTyping();
    api('POST', '/conversations/' + encodeURIComponent(id) + '/messages', { id: rid(), text: text }).then(function (m) {
      $('reply-text').value = '';
      addMessage(m);
      if (transcript.conversation.status !== 'active') { loadOpen(); select(id); }
    }).catch(fail);
  });
  $('attach').addEventListener('change', function (e) {
    var f = e.target.files && e.target.files[0];
    e.target.value = '';
    if (!f || !transcript) return;
    var id = transcript.conversation.id;
    fetch(API + '/conversations/' + encodeURIComponent(id) + '/files?id=' + rid() + '&name=' + encodeURIComponent(f.name), {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/octet-stream', 'X-CSRF-Token': csrf }, body: f
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j && j.error ? j.error : 'the file could not be sent');
        addMessage(j);
      });
    }).catch(fail);
  });
  root.addEventListener('click', function (e) {
    var b = e.target.closest('[data-start]');
    if (!b) return;
    var text = window.prompt('Your first message to this visitor');
    if (!text) return;
    api('POST', '/conversations', { visitor: b.getAttribute('data-start'), text: text }).then(function (c) {
      loadOpen().then(function () { select(c.id); });
    }).catch(fail);
  });
  document.addEventListener('visibilitychange', markRead);

  // ---- live
  var refresh = 0;
  function soon() { clearTimeout(refresh); refresh = setTimeout(function () { loadOpen(); loadBoard(); }, 250); }
  function listen() {
    var es = new EventSource('/dash/sites/' + encodeURIComponent(site) + '/conversations/events');
    es.addEventListener('update', function (ev) {
      var u = JSON.parse(ev.data);
      var mine = transcript && u.conversation && (u.conversation === transcript.conversation.id || u.conversation.id === transcript.conversation.id);
      if (u.kind === 'message' && mine) { addMessage(u.message); markRead(); $('typing').textContent = ''; }
      if (u.kind === 'typing' && mine && u.from === 'visitor') {
        clearTimeout(theirTyping);
        $('typing').textContent = u.on ? 'The visitor is typing…' : '';
        if (u.on) theirTyping = setTimeout(function () { $('typing').textContent = ''; }, 15000);
      }
      if (u.kind === 'changed' && mine) { transcript.conversation = u.conversation; drawHead(); }
      if (u.kind === 'read' && mine && u.by === 'visitor') seen(u.seq);
      if (u.kind === 'message' || u.kind === 'changed' || u.kind === 'board') soon();
    });
    // The stream came back (the desk moved to another node, or the network broke): what
    // was missed is read again, and a person who chose to be available is again.
    var opened = 0;
    es.addEventListener('open', function () {
      if (opened++ === 0) return;
      loadOpen();
      loadBoard().then(function () {
        if (wanted && !board.available) return api('PUT', '/desk/availability', { available: true }).then(loadBoard);
      }).catch(fail);
      if (selected) select(selected);
    });
    es.addEventListener('stale', function () { loadOpen(); loadBoard(); if (selected) select(selected); });
  }
  Promise.all([loadBoard(), loadOpen()]).then(listen).catch(fail);
})();
