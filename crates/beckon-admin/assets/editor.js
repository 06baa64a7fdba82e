/* Beckon's rule editor. Plain JavaScript, no build step.
 *
 * The pickers come from the engine's own catalogue (embedded in the page as #catalogue): a
 * variable offers only the operators the compiler accepts for it, and a value editor of its
 * type. The rule is kept as the rule file's JSON and saved through the admin API, whose
 * refusals name the field; each refusal is shown beside that field. Nothing typed here is
 * ever parsed as HTML: every text goes in through textContent or an input's value.
 */
(function () {
  'use strict';
  var root = document.querySelector('.editor');
  if (!root) return;
  var cat = JSON.parse(document.getElementById('catalogue').textContent);
  var rule = JSON.parse(document.getElementById('rule-json').textContent);
  var site = root.dataset.site;
  var version = Number(root.dataset.version);
  var isNew = root.dataset.new === 'true';
  var headers = JSON.parse(document.body.getAttribute('hx-headers') || '{}');
  var csrf = headers['X-CSRF-Token'] || '';
  var api = '/api/v1/sites/' + encodeURIComponent(site);

  var vars = {};
  cat.vars.forEach(function (v) { vars[v.name] = v; });
  var uid = 0;
  function nextId(p) { uid += 1; return p + '-' + uid; }

  /* ---- building DOM without HTML strings */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') node.textContent = v;
      else if (k === 'value') node.value = v;
      else if (k === 'checked') node.checked = !!v;
      else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      (Array.isArray(c) ? c : [c]).forEach(function (x) {
        node.appendChild(typeof x === 'string' ? document.createTextNode(x) : x);
      });
    }
    return node;
  }
  function select(options, current, attrs) {
    var s = el('select', attrs);
    options.forEach(function (o) {
      var opt = el('option', { value: o[0], text: o[1] });
      if (String(o[0]) === String(current)) opt.selected = true;
      s.appendChild(opt);
    });
    return s;
  }

  /* ---- the variable a leaf names: a fixed one, or a family with a key (visitor.traits.plan) */
  function lookup(name) {
    if (vars[name]) return { info: vars[name], key: null };
    for (var n in vars) {
      var i = n.indexOf('<name>');
      if (i > 0 && name.indexOf(n.slice(0, i)) === 0) return { info: vars[n], key: name.slice(i) };
    }
    return { info: null, key: null };
  }

  /* ---- conditions: the rule's tree as groups (all / any / none) of leaves and groups */
  function parse(node) {
    if (node && Array.isArray(node.all)) return { kind: 'all', children: node.all.map(parse) };
    if (node && Array.isArray(node.any)) return { kind: 'any', children: node.any.map(parse) };
    if (node && node.not) {
      var inner = node.not;
      return { kind: 'none', children: Array.isArray(inner.any) ? inner.any.map(parse) : [parse(inner)] };
    }
    return { leaf: { var: node && node['var'] || 'cart.items', op: node && node.op || 'gt', value: node ? node.value : 0 } };
  }
  function serialize(g) {
    if (g.leaf) {
      var out = { 'var': g.leaf['var'], op: g.leaf.op };
      if (g.leaf.value !== undefined && g.leaf.value !== null && g.leaf.op !== 'exists') out.value = g.leaf.value;
      if (g.leaf.op === 'exists' && g.leaf.value === false) out.value = false;
      return out;
    }
    var kids = g.children.map(serialize);
    if (g.kind === 'any') return { any: kids };
    if (g.kind === 'none') return { not: { any: kids } };
    return { all: kids };
  }
  var tree = parse(rule.when || { all: [] });
  if (tree.leaf) tree = { kind: 'all', children: [tree] };

  function childPath(g, path, i) {
    if (g.kind === 'any') return path + '.any[' + i + ']';
    if (g.kind === 'none') return path + '.not.any[' + i + ']';
    return path + '.all[' + i + ']';
  }

  function defaultValue(info, op) {
    if (op === 'exists') return true;
    if (op === 'between') return info.kind === 'date' ? ['2026-01-01', '2026-12-31'] : [0, 10];
    if (op === 'in' || op === 'not_in') return info.choices.length ? [info.choices[0]] : [];
    if (info.kind === 'number') return 0;
    if (info.kind === 'boolean') return true;
    if (info.choices.length) return info.choices[0];
    if (info.kind === 'date') return '2026-01-01';
    return '';
  }

  function toTyped(info, text) {
    if (info.kind === 'number') return text === '' ? 0 : Number(text);
    if (info.kind === 'boolean') return text === 'true';
    if (info.kind === 'any' && text !== '' && !isNaN(Number(text))) return Number(text);
    return text;
  }

  function valueEditor(leaf, info, path) {
    var op = leaf.op;
    var label = 'Value for ' + leaf['var'];
    var wrap = el('span', { 'class': 'value', 'data-field': path + '.value' });
    function set(v) { leaf.value = v; changed(); }
    if (op === 'exists') {
      wrap.appendChild(select([['true', 'has a value'], ['false', 'has no value']], leaf.value === false ? 'false' : 'true',
        { 'aria-label': label, onchange: function (e) { set(e.target.value === 'true'); } }));
    } else if (op === 'between') {
      var pair = Array.isArray(leaf.value) ? leaf.value.slice(0, 2) : defaultValue(info, op);
      var type = info.kind === 'date' ? 'date' : 'text';
      [0, 1].forEach(function (i) {
        wrap.appendChild(el('input', { type: type, value: pair[i], 'aria-label': (i ? 'Highest ' : 'Lowest ') + leaf['var'],
          inputmode: info.kind === 'number' ? 'decimal' : null,
          oninput: function (e) { pair[i] = toTyped(info, e.target.value); set(pair.slice()); } }));
        if (i === 0) wrap.appendChild(el('span', { 'class': 'and', text: 'and' }));
      });
    } else if (op === 'in' || op === 'not_in') {
      var items = Array.isArray(leaf.value) ? leaf.value : [];
      if (info.choices.length) {
        var box = el('span', { 'class': 'multi', role: 'group', 'aria-label': label });
        info.choices.forEach(function (c) {
          box.appendChild(el('label', { 'class': 'check' }, el('input', { type: 'checkbox', checked: items.indexOf(c) >= 0 || items.indexOf(c === 'true') >= 0,
            onchange: function () {
              var picked = [];
              box.querySelectorAll('input').forEach(function (x, j) { if (x.checked) picked.push(toTyped(info, info.choices[j])); });
              set(picked);
            } }), ' ' + c));
        });
        wrap.appendChild(box);
      } else {
        wrap.appendChild(el('input', { value: items.join(', '), 'aria-label': label + ' (separate with commas)', placeholder: 'a, b, c',
          oninput: function (e) {
            set(e.target.value.split(',').map(function (s) { return s.trim(); }).filter(Boolean).map(function (s) { return toTyped(info, s); }));
          } }));
      }
    } else if (info.kind === 'boolean') {
      wrap.appendChild(select([['true', 'true'], ['false', 'false']], String(leaf.value !== false),
        { 'aria-label': label, onchange: function (e) { set(e.target.value === 'true'); } }));
    } else if (info.choices.length) {
      wrap.appendChild(select(info.choices.map(function (c) { return [c, c]; }), leaf.value,
        { 'aria-label': label, onchange: function (e) { set(e.target.value); } }));
    } else {
      wrap.appendChild(el('input', { type: info.kind === 'date' ? 'date' : 'text', value: leaf.value === undefined ? '' : leaf.value,
        inputmode: info.kind === 'number' ? 'decimal' : null, 'aria-label': label,
        oninput: function (e) { set(toTyped(info, e.target.value)); } }));
    }
    return wrap;
  }

  function varPicker(leaf, path, redraw) {
    var found = lookup(leaf['var']);
    var groups = {};
    cat.vars.forEach(function (v) {
      var head = v.name.split('.')[0];
      (groups[head] = groups[head] || []).push(v);
    });
    var s = el('select', { 'aria-label': 'Variable', 'data-field': path + '.var', title: found.info ? found.info.doc : '' });
    Object.keys(groups).forEach(function (head) {
      var og = el('optgroup', { label: head });
      groups[head].forEach(function (v) {
        var opt = el('option', { value: v.name, text: v.name.replace('<name>', '…') + ' — ' + v.doc });
        if (found.info && found.info.name === v.name) opt.selected = true;
        og.appendChild(opt);
      });
      s.appendChild(og);
    });
    if (!found.info) s.insertBefore(el('option', { value: leaf['var'], text: leaf['var'] + ' (unknown)', selected: true }), s.firstChild);
    s.addEventListener('change', function () {
      var info = vars[s.value];
      leaf['var'] = s.value.replace('<name>', 'name');
      if (info.ops.indexOf(leaf.op) < 0) leaf.op = info.ops[0];
      leaf.value = defaultValue(info, leaf.op);
      redraw();
    });
    var out = [s];
    if (found.key !== null) {
      var prefix = found.info.name.slice(0, found.info.name.indexOf('<name>'));
      out.push(el('input', { 'class': 'key', value: found.key, 'aria-label': 'Name after ' + prefix, size: 10,
        oninput: function (e) { leaf['var'] = prefix + e.target.value.trim(); changed(); } }));
    }
    return out;
  }

  function leafRow(g, parent, index, path) {
    var leaf = g.leaf;
    var found = lookup(leaf['var']);
    var info = found.info || { kind: 'text', ops: [leaf.op], choices: [], doc: '' };
    var row = el('li', { 'class': 'leaf', 'data-field': path });
    function redraw() { drawConditions(); changed(); }
    var ops = el('select', { 'aria-label': 'Operator', 'data-field': path + '.op',
      onchange: function (e) { leaf.op = e.target.value; leaf.value = defaultValue(info, leaf.op); redraw(); } });
    info.ops.forEach(function (o) {
      var opt = el('option', { value: o, text: cat.op_labels[o] || o });
      if (o === leaf.op) opt.selected = true;
      ops.appendChild(opt);
    });
    if (info.ops.indexOf(leaf.op) < 0) ops.insertBefore(el('option', { value: leaf.op, text: leaf.op + ' (not valid here)', selected: true }), ops.firstChild);
    row.appendChild(el('span', { 'class': 'pickers' }, varPicker(leaf, path, redraw), ops, valueEditor(leaf, info, path)));
    row.appendChild(el('button', { type: 'button', 'class': 'btn ghost small remove', 'aria-label': 'Remove condition on ' + leaf['var'],
      text: 'Remove', onclick: function () { parent.children.splice(index, 1); redraw(); } }));
    return row;
  }

  function groupBox(g, parent, index, path, depth) {
    var box = el('div', { 'class': 'group depth-' + depth, 'data-field': path });
    var head = el('div', { 'class': 'group-head' });
    var kindId = nextId('kind');
    head.appendChild(el('label', { 'for': kindId, text: depth ? 'Group: match' : 'Match' }));
    head.appendChild(select([['all', 'all of these'], ['any', 'any of these'], ['none', 'none of these']], g.kind,
      { id: kindId, onchange: function (e) { g.kind = e.target.value; drawConditions(); changed(); } }));
    if (parent) {
      head.appendChild(el('button', { type: 'button', 'class': 'btn ghost small remove', text: 'Remove group',
        onclick: function () { parent.children.splice(index, 1); drawConditions(); changed(); } }));
    }
    box.appendChild(head);
    var list = el('ul', { 'class': 'conds' });
    g.children.forEach(function (c, i) {
      var p = childPath(g, path, i);
      list.appendChild(c.leaf ? leafRow(c, g, i, p) : el('li', { 'class': 'nested' }, groupBox(c, g, i, p, depth + 1)));
    });
    if (!g.children.length) list.appendChild(el('li', { 'class': 'empty', text: depth ? 'An empty group holds always.' : 'No condition yet: add one. A rule waits for a real signal.' }));
    box.appendChild(list);
    var foot = el('div', { 'class': 'group-foot' });
    foot.appendChild(el('button', { type: 'button', 'class': 'btn small add-condition', text: '+ Condition',
      onclick: function () {
        var v = cat.vars[0];
        g.children.push({ leaf: { 'var': 'cart.items', op: 'gt', value: 0 } });
        if (!vars['cart.items']) g.children[g.children.length - 1].leaf = { 'var': v.name, op: v.ops[0], value: defaultValue(v, v.ops[0]) };
        drawConditions(); changed();
        var rows = document.querySelectorAll('#conditions [data-field="' + childPath(g, path, g.children.length - 1) + '.var"]');
        if (rows.length) rows[0].focus();
      } }));
    if (depth < 3) {
      foot.appendChild(el('button', { type: 'button', 'class': 'btn small add-group', text: '+ Group',
        onclick: function () {
          g.children.push({ kind: g.kind === 'all' ? 'any' : 'all', children: [{ leaf: { 'var': 'behaviour.exit_intent', op: 'equals', value: true } }] });
          drawConditions(); changed();
        } }));
    }
    box.appendChild(foot);
    return box;
  }

  function drawConditions() {
    var host = document.getElementById('conditions');
    host.textContent = '';
    host.appendChild(groupBox(tree, null, 0, 'when', 0));
  }

  /* ---- messages: every type of the rule language, with its fields */
  var FIELDS = {
    text: [['text', 'Text', 'area']],
    card: [['title', 'Title'], ['body', 'Body', 'area'], ['image', 'Image URL'], ['buttons', 'Buttons', 'buttons']],
    offer: [['text', 'Pitch', 'area'], ['code', 'Coupon code'], ['description', 'What it gives'], ['expires', 'Expires', 'date']],
    comparison: [['title', 'Title'], ['items', 'Items (none: read from the page)', 'items']],
    email_capture: [['text', 'Pitch', 'area'], ['consent', 'Consent wording', 'area'], ['ask_name', 'Ask for a name', 'bool'], ['ask_question', 'Ask for a question', 'bool']],
    open_chat: [['question', 'Starter question'], ['text', 'Line above the chat']]
  };
  var TYPE_NAMES = [['text', 'Text'], ['card', 'Card with buttons'], ['offer', 'Coupon offer'], ['comparison', 'Comparison'], ['email_capture', 'E-mail capture'], ['open_chat', 'Open the chat']];

  function messageEditor(msg, path, onRemove, title) {
    var box = el('div', { 'class': 'message-box', 'data-field': path });
    var typeId = nextId('mtype');
    var head = el('div', { 'class': 'inline' }, el('label', { 'for': typeId, text: title }));
    var types = select(TYPE_NAMES, msg.type, { id: typeId, 'data-field': path + '.type',
      onchange: function (e) {
        var keep = msg.text;
        Object.keys(msg).forEach(function (k) { delete msg[k]; });
        msg.type = e.target.value;
        if (keep && FIELDS[msg.type].some(function (f) { return f[0] === 'text'; })) msg.text = keep;
        drawMessages(); changed();
      } });
    head.appendChild(types);
    if (onRemove) head.appendChild(el('button', { type: 'button', 'class': 'btn ghost small remove', text: 'Remove translation', onclick: onRemove }));
    box.appendChild(head);
    var grid = el('div', { 'class': 'grid-form' });
    (FIELDS[msg.type] || []).forEach(function (f) {
      var name = f[0], label = f[1], kind = f[2], id = nextId('m-' + name);
      var field = el('div', { 'class': 'field' + (kind === 'area' || kind === 'buttons' || kind === 'items' ? ' wide' : ''), 'data-field': path + '.' + name });
      if (kind === 'bool') {
        field.appendChild(el('label', { 'class': 'check' }, el('input', { type: 'checkbox', id: id, checked: !!msg[name],
          onchange: function (e) { msg[name] = e.target.checked; changed(); } }), ' ' + label));
      } else if (kind === 'buttons' || kind === 'items') {
        field.appendChild(el('span', { 'class': 'label', text: label }));
        field.appendChild(listEditor(msg, name, kind, path + '.' + name));
      } else {
        field.appendChild(el('label', { 'for': id, text: label }));
        field.appendChild(el(kind === 'area' ? 'textarea' : 'input', { id: id, type: kind === 'date' ? 'date' : null, rows: kind === 'area' ? 2 : null,
          value: msg[name] || '', oninput: function (e) { if (e.target.value) msg[name] = e.target.value; else delete msg[name]; changed(); } }));
      }
      grid.appendChild(field);
    });
    box.appendChild(grid);
    box.appendChild(el('p', { 'class': 'help', text: 'Texts may use {{ cart.items }}, {{ cart.value | money }}, {{ visitor.traits.name }}, {{ page.product }}.' }));
    return box;
  }

  function listEditor(msg, name, kind, path) {
    var items = msg[name] = msg[name] || [];
    var max = kind === 'buttons' ? 3 : 2;
    var wrap = el('div', { 'class': 'sublist' });
    items.forEach(function (item, i) {
      var row = el('div', { 'class': 'subrow', 'data-field': path + '[' + i + ']' });
      var fields = kind === 'buttons'
        ? [['label', 'Label'], ['value', 'Reply, URL, question or code']]
        : [['name', 'Name'], ['price', 'Price'], ['url', 'Link']];
      fields.forEach(function (f) {
        row.appendChild(el('input', { value: item[f[0]] || '', 'aria-label': f[1] + ' of ' + (kind === 'buttons' ? 'button ' : 'item ') + (i + 1), placeholder: f[1],
          oninput: function (e) { if (e.target.value) item[f[0]] = e.target.value; else delete item[f[0]]; changed(); } }));
      });
      if (kind === 'buttons') {
        row.appendChild(select([['reply', 'replies'], ['url', 'opens a link'], ['chat', 'opens the chat'], ['coupon', 'applies a coupon']], item.action || 'reply',
          { 'aria-label': 'What button ' + (i + 1) + ' does', onchange: function (e) { item.action = e.target.value; changed(); } }));
        item.action = item.action || 'reply';
      } else {
        row.appendChild(el('input', { value: (item.features || []).join(', '), 'aria-label': 'Points of item ' + (i + 1) + ' (separate with commas)', placeholder: 'Points, separated by commas',
          oninput: function (e) { item.features = e.target.value.split(',').map(function (s) { return s.trim(); }).filter(Boolean); changed(); } }));
      }
      row.appendChild(el('button', { type: 'button', 'class': 'btn ghost small remove', text: 'Remove', 'aria-label': 'Remove ' + (kind === 'buttons' ? 'button ' : 'item ') + (i + 1),
        onclick: function () { items.splice(i, 1); drawMessages(); changed(); } }));
      wrap.appendChild(row);
    });
    if (items.length < max) {
      wrap.appendChild(el('button', { type: 'button', 'class': 'btn small', text: kind === 'buttons' ? '+ Button' : '+ Item',
        onclick: function () { items.push(kind === 'buttons' ? { label: '', action: 'reply' } : { name: '' }); drawMessages(); changed(); } }));
    }
    return wrap;
  }

  rule.message = rule.message || { type: 'text', text: '' };
  rule.translations = rule.translations || {};
  function drawMessages() {
    var host = document.getElementById('message');
    host.textContent = '';
    host.appendChild(messageEditor(rule.message, 'message', null, 'Type'));
    var tr = document.getElementById('translations');
    tr.textContent = '';
    Object.keys(rule.translations).sort().forEach(function (lang) {
      tr.appendChild(messageEditor(rule.translations[lang], 'translations.' + lang,
        function () { delete rule.translations[lang]; drawMessages(); changed(); }, 'In “' + lang + '”'));
    });
  }
  document.getElementById('add-lang').addEventListener('click', function () {
    var input = document.getElementById('f-new-lang');
    var lang = input.value.trim().toLowerCase();
    if (!/^[a-z]{2,3}$/.test(lang) || rule.translations[lang]) return;
    rule.translations[lang] = JSON.parse(JSON.stringify(rule.message));
    input.value = '';
    drawMessages(); changed();
  });

  /* ---- the rule from the form */
  function val(id) { var e = document.getElementById(id); return e ? e.value.trim() : ''; }
  function collect() {
    var r = {};
    r.id = val('f-id');
    r.name = val('f-name');
    r.status = rule.status || 'draft';
    var p = val('f-priority');
    if (p !== '') r.priority = Number(p);
    r.when = serialize(tree);
    ['delay', 'repeat_after', 'department'].forEach(function (k) {
      var v = document.querySelector('[data-bind="' + k + '"]').value.trim();
      if (v) r[k] = v;
    });
    var max = val('f-max');
    if (max !== '') r.max_per_visitor = Number(max);
    var roll = val('f-rollout');
    if (roll !== '' && Number(roll) !== 100) r.rollout = Number(roll);
    var pages = [];
    root.querySelectorAll('input[name="pages"]:checked').forEach(function (c) { pages.push(c.value); });
    if (pages.length) r.pages = pages;
    var schedule = {};
    if (val('f-start')) schedule.start = val('f-start');
    if (val('f-end')) schedule.end = val('f-end');
    if (document.getElementById('f-hours-on').checked) {
      var days = [];
      root.querySelectorAll('input[name="days"]:checked').forEach(function (c) { days.push(c.value); });
      schedule.hours = { days: days, from: val('f-from'), to: val('f-to') };
    }
    if (Object.keys(schedule).length) r.schedule = schedule;
    var goal = val('f-goal');
    r.goal = goal === 'event' ? 'event:' + val('f-goal-event') : goal;
    r.message = rule.message;
    if (Object.keys(rule.translations).length) r.translations = rule.translations;
    if (document.getElementById('f-ai-on').checked) {
      var chars = val('f-ai-max');
      r.ai_greeting = { prompt: val('f-ai-prompt'), max_chars: chars === '' ? 160 : Number(chars) };
    }
    return r;
  }

  /* ---- talking to the API */
  function call(method, path, body) {
    return fetch(api + path, {
      method: method, credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; }, function () { return { status: r.status, body: {} }; });
    });
  }

  function clearProblems() {
    root.querySelectorAll('.field-error').forEach(function (e) { e.remove(); });
    root.querySelectorAll('[aria-invalid]').forEach(function (e) { e.removeAttribute('aria-invalid'); });
    var box = document.getElementById('problems');
    box.hidden = true; box.textContent = '';
  }
  // The element a problem belongs to: the field the engine named, or the nearest one above it.
  function fieldFor(name) {
    var path = name;
    while (path) {
      var found = root.querySelector('[data-field="' + path.replace(/"/g, '') + '"]');
      if (found) return found;
      var cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
      path = cut > 0 ? path.slice(0, cut) : '';
    }
    return null;
  }
  function showProblems(error) {
    clearProblems();
    var problems = (error.problems && error.problems.length) ? error.problems : [{ field: error.field || '', message: error.message }];
    var box = document.getElementById('problems');
    box.appendChild(el('p', { text: problems.length === 1 ? 'This rule cannot be saved yet:' : 'This rule cannot be saved yet (' + problems.length + ' problems):' }));
    var list = el('ul');
    problems.forEach(function (p) {
      list.appendChild(el('li', { text: (p.field ? p.field + ': ' : '') + p.message }));
      var target = p.field && fieldFor(p.field);
      if (target) {
        var id = nextId('err');
        var note = el('p', { 'class': 'field-error', id: id, text: p.message });
        var control = target.matches('input, select, textarea') ? target : target.querySelector('input, select, textarea');
        if (control) { control.setAttribute('aria-invalid', 'true'); control.setAttribute('aria-describedby', id); }
        if (target.matches('input, select, textarea')) target.insertAdjacentElement('afterend', note);
        else target.appendChild(note);
      }
    });
    box.appendChild(list);
    box.hidden = false;
  }
  function flashSaved(text) {
    var s = document.getElementById('saved');
    s.textContent = text; s.hidden = false;
  }

  function save(status) {
    var r = collect();
    if (status) r.status = status;
    if (!r.id) { showProblems({ field: 'id', message: 'give the rule an id' }); return; }
    call('PUT', '/rules/' + encodeURIComponent(r.id), { rule: r, base: version }).then(function (a) {
      if (a.status === 200) {
        version = a.body.version;
        location.assign('/dash/sites/' + encodeURIComponent(site) + '/rules/' + encodeURIComponent(r.id) + '?saved=' + (status || 'draft'));
      } else showProblems(a.body.error || { message: 'the server answered ' + a.status });
    }, function () { showProblems({ message: 'the server could not be reached; nothing was saved' }); });
  }
  function setStatus(status) {
    call('POST', '/rules/' + encodeURIComponent(rule.id) + '/status', { status: status, base: version }).then(function (a) {
      if (a.status === 200) location.assign('/dash/sites/' + encodeURIComponent(site) + '/rules/' + encodeURIComponent(rule.id) + '?saved=' + status);
      else showProblems(a.body.error || { message: 'the server answered ' + a.status });
    });
  }
  document.getElementById('save').addEventListener('click', function () { save(isNew ? 'draft' : null); });
  var launch = document.getElementById('launch');
  if (launch) launch.addEventListener('click', function () { save('live'); });
  var pause = document.getElementById('pause');
  if (pause) pause.addEventListener('click', function () { setStatus('paused'); });
  var archive = document.getElementById('archive');
  if (archive) archive.addEventListener('click', function () { setStatus('archived'); });
  root.querySelectorAll('.restore').forEach(function (b) {
    b.addEventListener('click', function () {
      call('POST', '/rules/' + encodeURIComponent(rule.id) + '/restore', { version: Number(b.dataset.version), base: version }).then(function (a) {
        if (a.status === 200) location.assign('/dash/sites/' + encodeURIComponent(site) + '/rules/' + encodeURIComponent(rule.id) + '?saved=restored');
        else showProblems(a.body.error || { message: 'the server answered ' + a.status });
      });
    });
  });

  /* ---- the live preview: the real widget, in a sandboxed frame, for the sample visitor */
  var previewTimer = 0;
  function sample() {
    var s = { page_type: val('s-page'), language: val('s-lang'), device: val('s-device'), traits: {} };
    if (val('s-items') !== '') s.cart_items = Math.max(0, Math.floor(Number(val('s-items')) || 0));
    if (val('s-value') !== '') s.cart_value = Number(val('s-value')) || 0;
    if (val('s-name')) s.traits.name = val('s-name');
    return s;
  }
  function preview() {
    var r = collect();
    r.id = r.id || 'draft';
    r.name = r.name || 'Draft';
    var errorBox = document.getElementById('preview-error');
    call('POST', '/preview', { rule: r, sample: sample() }).then(function (a) {
      if (a.status === 200) {
        errorBox.hidden = true;
        document.getElementById('preview-frame').src = a.body.frame;
      } else {
        var e = a.body.error || {};
        errorBox.textContent = 'No preview yet: ' + (e.problems && e.problems.length ? e.problems[0].field + ': ' + e.problems[0].message : e.message || a.status);
        errorBox.hidden = false;
      }
    });
  }
  function changed() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, 400);
  }
  root.addEventListener('input', function (e) { if (!e.target.closest('#conditions, #message, #translations')) changed(); });
  root.addEventListener('change', function (e) { if (!e.target.closest('#conditions, #message, #translations')) changed(); });

  /* ---- the backtest: the rule as it stands, over past traffic (every value set as text) */
  function fillList(id, items) {
    var list = document.getElementById(id);
    list.textContent = '';
    if (!items.length) {
      var none = document.createElement('li');
      none.className = 'muted';
      none.textContent = 'none';
      list.appendChild(none);
    }
    items.forEach(function (c) {
      var li = document.createElement('li');
      li.textContent = c.name + ': ' + c.n;
      list.appendChild(li);
    });
  }
  document.getElementById('bt-run').addEventListener('click', function () {
    var button = this;
    var r = collect();
    r.id = r.id || 'draft';
    r.name = r.name || 'Draft';
    var bar = document.getElementById('bt-progress');
    var errorBox = document.getElementById('bt-error');
    button.disabled = true;
    bar.hidden = false;
    errorBox.hidden = true;
    call('POST', '/backtest', { rule: r, days: Number(val('bt-days')) }).then(function (a) {
      button.disabled = false;
      bar.hidden = true;
      if (a.status !== 200) {
        var e = a.body.error || {};
        errorBox.textContent = 'No backtest: ' + (e.problems && e.problems.length ? e.problems[0].field + ': ' + e.problems[0].message : e.message || a.status);
        errorBox.hidden = false;
        return;
      }
      var b = a.body;
      document.getElementById('bt-summary').textContent = 'Over the last ' + b.days + ' days (' + b.visitors + ' visitors), it would have fired ' +
        b.fired + ' times for ' + b.visitors_fired + ' visitors: ' + b.shown + ' shown, ' + b.ghosts + ' for held-out visitors.';
      fillList('bt-pages', b.pages);
      fillList('bt-displaced', b.displaced);
      fillList('bt-blocked', b.blocked_by);
      document.getElementById('bt-result').hidden = false;
    }, function () {
      button.disabled = false;
      bar.hidden = true;
      errorBox.textContent = 'No backtest: the server could not be reached. Try again.';
      errorBox.hidden = false;
    });
  });

  drawConditions();
  drawMessages();
  var saved = new URLSearchParams(location.search).get('saved');
  if (saved) flashSaved(saved === 'live' ? 'Launched: it fires from the next event of every live visitor.' : saved === 'paused' ? 'Paused: it no longer fires.' : saved === 'archived' ? 'Archived.' : saved === 'restored' ? 'Restored that version.' : 'Saved.');
  preview();
})();
