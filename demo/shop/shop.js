/*
 * Northwind Outfitters: the cart of Beckon's sample shop.
 *
 * The cart lives in localStorage["northwind:cart"] as [{sku, name, price, qty, size?, url?}], so
 * every page sees the same cart without a server. Every page load with a non-empty cart, and every
 * change (add, remove, quantity, coupon, order), is reported to Beckon with
 * beckon('cart', {value, currency, items}); an order is reported with beckon('convert', …).
 * The shop registers beckon('on', 'coupon', fn), so an offer's "apply" button works in one tap.
 *
 * Like the widget it feeds, this script must never break its page: storage access is guarded
 * (blocked storage falls back to memory) and every entry point is wrapped.
 */
(function () {
  'use strict';

  var CART_KEY = 'northwind:cart';
  var COUPON_KEY = 'northwind:coupon';
  var CURRENCY = 'USD';
  var MAX_QTY = 99;
  var FREE_SHIPPING_FROM = 75;
  var SHIPPING = { standard: 6.95, express: 14.95 };
  var COUPONS = { STAY10: { percent: 10, label: '10% off this order' } };
  var PLANS = {
    starter: { name: 'Starter', price: 19 },
    growth: { name: 'Growth', price: 49 },
    scale: { name: 'Scale', price: 99 }
  };

  // ---------- storage (guarded) ----------

  var memory = {};

  function storeGet(key) {
    if (Object.prototype.hasOwnProperty.call(memory, key)) return memory[key];
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  function storeSet(key, value) {
    memory[key] = value;
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) { /* blocked or full: the in-memory copy serves this page */ }
  }

  function loadCart() {
    var lines = [];
    try { lines = JSON.parse(storeGet(CART_KEY) || '[]'); } catch (e) { lines = []; }
    if (!Array.isArray(lines)) return [];
    return lines.filter(function (l) {
      return l && typeof l.sku === 'string' && typeof l.name === 'string' &&
        typeof l.price === 'number' && isFinite(l.price) && l.price >= 0 &&
        typeof l.qty === 'number' && l.qty >= 1;
    }).map(function (l) {
      var line = { sku: l.sku, name: l.name, price: round2(l.price), qty: clampQty(l.qty) };
      if (typeof l.size === 'string' && l.size) line.size = l.size;
      if (typeof l.url === 'string' && /^[\w./-]+(#[\w-]*)?$/.test(l.url)) line.url = l.url;
      return line;
    });
  }

  function saveCart(lines) {
    storeSet(CART_KEY, lines.length ? JSON.stringify(lines) : null);
    reportCart(lines);
    refresh();
  }

  function currentCoupon() {
    var code = storeGet(COUPON_KEY);
    return code && COUPONS[code] ? code : null;
  }

  // ---------- money ----------

  function round2(n) { return Math.round(n * 100) / 100; }
  function clampQty(n) { n = Math.floor(Number(n)) || 0; return Math.max(0, Math.min(MAX_QTY, n)); }

  var formatter = null;
  try { formatter = new Intl.NumberFormat('en-US', { style: 'currency', currency: CURRENCY }); } catch (e) { formatter = null; }
  function money(n) { return formatter ? formatter.format(n) : '$' + n.toFixed(2); }

  function itemCount(lines) {
    return lines.reduce(function (n, l) { return n + l.qty; }, 0);
  }

  /** Subtotal, discount, shipping and total of a cart (or of a plan, which ships nothing). */
  function totals(lines, shippingMethod, plan) {
    var subtotal = plan ? plan.price : round2(lines.reduce(function (s, l) { return s + l.price * l.qty; }, 0));
    var code = currentCoupon();
    var discount = code && !plan ? round2(subtotal * COUPONS[code].percent / 100) : 0;
    var shipping = 0;
    if (!plan && subtotal > 0) {
      if (shippingMethod === 'express') shipping = SHIPPING.express;
      else shipping = subtotal - discount >= FREE_SHIPPING_FROM ? 0 : SHIPPING.standard;
    }
    return {
      subtotal: subtotal, discount: discount, coupon: discount ? code : null, shipping: shipping,
      total: round2(subtotal - discount + shipping)
    };
  }

  // ---------- Beckon ----------

  function beckon() {
    try {
      if (typeof window.beckon === 'function') return window.beckon.apply(window, arguments);
    } catch (e) { /* the widget must never break the shop either */ }
    return undefined;
  }

  /** beckon('cart', …): the value of the goods after any coupon, and the number of items. */
  function reportCart(lines) {
    var t = totals(lines, 'standard', null);
    beckon('cart', { value: round2(t.subtotal - t.discount), currency: CURRENCY, items: itemCount(lines) });
  }

  // ---------- small DOM helpers ----------

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'className') node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  var toastTimer = null;
  function toast(message, link) {
    var box = $('.toast');
    if (!box) {
      box = el('div', { className: 'toast', role: 'status', 'aria-live': 'polite' });
      document.body.appendChild(box);
    }
    box.textContent = '';
    box.appendChild(el('span', { text: message }));
    if (link) box.appendChild(el('a', { href: link.href, text: link.text }));
    box.classList.add('is-visible');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.classList.remove('is-visible'); }, 5000);
  }

  // ---------- header count ----------

  function renderCount(lines, bump) {
    var n = itemCount(lines);
    $all('[data-cart-count]').forEach(function (node) {
      node.textContent = String(n);
      var badge = node.closest('.cart-count');
      if (badge) {
        badge.classList.toggle('is-empty', n === 0);
        if (bump) { badge.classList.remove('bump'); void badge.offsetWidth; badge.classList.add('bump'); }
      }
    });
  }

  // ---------- product page: add to cart ----------

  function bindBuyForms() {
    $all('form[data-buy]').forEach(function (form) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        try {
          var sizeField = form.elements.size;
          var qtyField = form.elements.qty;
          var size = sizeField ? sizeField.value : '';
          if (sizeField && !size) { sizeField.focus(); return; }
          var qty = clampQty(qtyField ? qtyField.value : 1) || 1;
          var sku = form.getAttribute('data-sku');
          var name = form.getAttribute('data-name');
          var price = Number(form.getAttribute('data-price'));
          var url = (window.location.pathname.split('/').pop() || 'index.html');
          var lines = loadCart();
          var line = lines.filter(function (l) { return l.sku === sku && (l.size || '') === size; })[0];
          if (line) line.qty = clampQty(line.qty + qty);
          else {
            line = { sku: sku, name: name, price: price, qty: qty, url: url };
            if (size) line.size = size;
            lines.push(line);
          }
          saveCart(lines);
          renderCount(lines, true);
          toast('Added to cart: ' + name + (size ? ' (' + size + ')' : '') + (qty > 1 ? ' \u00d7 ' + qty : '') + '.',
            { href: 'cart.html', text: 'View cart' });
        } catch (e) { /* never throw into the page */ }
      });
    });
  }

  // ---------- totals box (cart and checkout) ----------

  function renderTotals(t, opts) {
    $all('[data-totals]').forEach(function (dl) {
      dl.textContent = '';
      function row(label, value, cls) {
        dl.appendChild(el('dt', { className: cls || '', text: label }));
        dl.appendChild(el('dd', { className: cls || '', text: value }));
      }
      if (opts.plan) {
        row('Then, from day 15', money(t.subtotal) + '/mo');
        row('Due today', money(0), 'grand');
        return;
      }
      row('Subtotal', money(t.subtotal));
      if (t.discount) row('Coupon ' + t.coupon + ' (\u2212' + COUPONS[t.coupon].percent + '%)', '\u2212' + money(t.discount), 'discount');
      row(opts.estimate ? 'Shipping (standard)' : 'Shipping', t.shipping ? money(t.shipping) : 'Free');
      row(opts.estimate ? 'Estimated total' : 'Total', money(t.total), 'grand');
    });
    $all('[data-free-shipping-hint]').forEach(function (p) {
      var goods = t.subtotal - t.discount;
      p.textContent = opts.plan || goods <= 0 ? '' : goods >= FREE_SHIPPING_FROM
        ? 'Your order ships free (standard delivery).'
        : 'Add ' + money(FREE_SHIPPING_FROM - goods) + ' more for free standard shipping.';
    });
  }

  function renderCouponForms() {
    var code = currentCoupon();
    $all('form[data-coupon-form]').forEach(function (form) {
      var msg = $('[data-coupon-message]', form);
      var remove = $('[data-coupon-remove]', form);
      if (code) {
        if (msg && !msg.classList.contains('is-error')) {
          msg.className = 'form-message is-ok';
          msg.textContent = code + ' applied: ' + COUPONS[code].label + '.';
        }
        if (remove) remove.hidden = false;
      } else {
        if (msg && msg.classList.contains('is-ok')) { msg.textContent = ''; msg.className = 'form-message'; }
        if (remove) remove.hidden = true;
      }
    });
  }

  /**
   * Applies a coupon code: from the shop's own field, or from Beckon's offer ("apply" calls the
   * hook registered below). Returns true when the code is valid.
   */
  function applyCoupon(raw, source) {
    var code = String(raw && typeof raw === 'object' ? raw.code || '' : raw || '').trim().toUpperCase();
    if (!COUPONS[code]) return false;
    storeSet(COUPON_KEY, code);
    $all('[data-coupon-message]').forEach(function (m) { m.className = 'form-message'; });
    reportCart(loadCart());
    refresh();
    $all('form[data-coupon-form] input[name="coupon"]').forEach(function (i) { i.value = code; });
    if (source === 'beckon') {
      toast('Coupon ' + code + ' applied: ' + COUPONS[code].label + '.',
        $('#cart-root') || $('#checkout-form') ? null : { href: 'cart.html', text: 'View cart' });
    }
    return true;
  }

  function bindCouponForms() {
    $all('form[data-coupon-form]').forEach(function (form) {
      var input = form.elements.coupon;
      var msg = $('[data-coupon-message]', form);
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        try {
          var value = input ? input.value.trim() : '';
          if (!value) { input && input.focus(); return; }
          if (!applyCoupon(value, 'form') && msg) {
            msg.className = 'form-message is-error';
            msg.textContent = '\u201c' + value + '\u201d is not a valid code.';
          }
        } catch (e) { /* never throw */ }
      });
      var remove = $('[data-coupon-remove]', form);
      if (remove) remove.addEventListener('click', function () {
        storeSet(COUPON_KEY, null);
        if (input) input.value = '';
        if (msg) { msg.className = 'form-message'; msg.textContent = 'Coupon removed.'; }
        reportCart(loadCart());
        refresh();
        if (input) input.focus();
      });
    });
  }

  // ---------- cart page ----------

  function renderCartPage(focusAfter) {
    var root = $('#cart-root');
    if (!root) return;
    var lines = loadCart();
    var summary = $('#cart-summary');
    root.textContent = '';
    if (!lines.length) {
      if (summary) summary.hidden = true;
      root.appendChild(el('div', { className: 'empty-state' }, [
        el('h2', { text: 'Your cart is empty' }),
        el('p', { className: 'muted', text: 'Trail shoes, packs and layers are one click away.' }),
        el('a', { className: 'btn', href: 'category.html', text: 'Shop Trail & Hiking' })
      ]));
      return;
    }
    if (summary) summary.hidden = false;
    var list = el('ul', { className: 'cart-lines', 'aria-label': 'Items in your cart' });
    lines.forEach(function (line, i) {
      var id = 'qty-' + i;
      var qty = el('input', { id: id, type: 'number', min: '0', max: String(MAX_QTY), inputmode: 'numeric', value: String(line.qty) });
      var lineTotal = el('p', { className: 'line-total', 'aria-label': 'Line total', text: money(line.price * line.qty) });
      var remove = el('button', { type: 'button', className: 'link-button', 'data-beckon-track': 'remove-from-cart', 'data-beckon-item': line.sku, 'aria-label': 'Remove ' + line.name + (line.size ? ', ' + line.size : '') + ' from cart', text: 'Remove' });
      var initials = line.name.split(/\s+/).slice(0, 2).map(function (w) { return w.charAt(0); }).join('');
      list.appendChild(el('li', { className: 'cart-line' }, [
        el('div', { className: 'cart-thumb', 'data-sku': line.sku, 'aria-hidden': 'true', text: initials }),
        el('div', {}, [
          el('h2', {}, [line.url ? el('a', { href: line.url, text: line.name }) : line.name]),
          el('p', { className: 'meta' }, [(line.size ? line.size + ' \u00b7 ' : '') + money(line.price) + ' each \u00b7 ', el('span', { className: 'nowrap', text: 'SKU ' + line.sku })])
        ]),
        el('div', { className: 'cart-qty' }, [el('label', { 'for': id, text: 'Quantity' }), qty]),
        lineTotal,
        el('div', { className: 'line-actions' }, [remove])
      ]));
      qty.addEventListener('change', function () {
        try {
          var n = clampQty(qty.value);
          var current = loadCart();
          var target = current[i];
          if (!target || target.sku !== line.sku) { renderCartPage(); return; }
          if (n === 0) { current.splice(i, 1); saveCart(current); renderCartPage(true); return; }
          target.qty = n;
          qty.value = String(n);
          lineTotal.textContent = money(target.price * n);
          saveCart(current);
        } catch (e) { /* never throw */ }
      });
      remove.addEventListener('click', function () {
        try {
          var current = loadCart();
          current.splice(i, 1);
          saveCart(current);
          renderCartPage(true);
          toast('Removed ' + line.name + ' from your cart.');
        } catch (e) { /* never throw */ }
      });
    });
    root.appendChild(list);
    if (focusAfter) {
      var heading = $('#cart-heading');
      if (heading) heading.focus();
    }
  }

  // ---------- checkout page ----------

  function planFromUrl() {
    var m = /[?&]plan=([a-z]+)/.exec(window.location.search);
    return m && PLANS[m[1]] ? { key: m[1], name: PLANS[m[1]].name, price: PLANS[m[1]].price } : null;
  }

  function shippingMethod() {
    var checked = $('input[name="shipping"]:checked');
    return checked ? checked.value : 'standard';
  }

  var orderPlaced = false;  // once the thank-you is up, the emptied cart must not show "empty"

  function renderCheckout() {
    var form = $('#checkout-form');
    if (!form || orderPlaced) return;
    var plan = planFromUrl();
    var lines = loadCart();
    var list = $('[data-checkout-lines]');
    if (list) {
      list.textContent = '';
      if (plan) {
        list.appendChild(el('li', {}, [el('span', { text: 'Northwind Club ' + plan.name + ', monthly' }), el('span', { text: '14 days free' })]));
      } else {
        lines.forEach(function (l) {
          list.appendChild(el('li', {}, [
            el('span', {}, [el('span', { className: 'qty', text: l.qty + ' \u00d7 ' }), l.name + (l.size ? ' (' + l.size + ')' : '')]),
            el('span', { text: money(l.price * l.qty) })
          ]));
        });
      }
    }
    $all('[data-goods-only]').forEach(function (n) { n.hidden = !!plan; });
    $all('[data-plan-only]').forEach(function (n) { n.hidden = !plan; });
    $all('[data-goods-only] input, [data-goods-only] select').forEach(function (i) { i.disabled = !!plan; });
    var empty = !plan && !lines.length;
    var emptyBox = $('[data-checkout-empty]');
    var main = $('[data-checkout-main]');
    if (emptyBox) emptyBox.hidden = !empty;
    if (main) main.hidden = empty;
    var submit = $('[data-place-order]');
    if (submit) submit.textContent = plan ? 'Start free trial' : 'Place order \u00b7 ' + money(totals(lines, shippingMethod(), null).total);
    $all('[data-plan-name]').forEach(function (n) { n.textContent = plan ? plan.name : ''; });
  }

  function bindCheckout() {
    var form = $('#checkout-form');
    if (!form) return;
    $all('input[name="shipping"]').forEach(function (r) { r.addEventListener('change', refresh); });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      try {
        var plan = planFromUrl();
        var lines = loadCart();
        if (!plan && !lines.length) { refresh(); return; }
        var t = totals(lines, shippingMethod(), plan);
        var orderId = 'NW-' + Date.now().toString(36).toUpperCase() + Math.floor(Math.random() * 36).toString(36).toUpperCase();
        var email = form.elements.email ? form.elements.email.value : '';
        if (plan) {
          // A trial is the goal of the plan-comparison rule (goal = "event:trial_started").
          beckon('track', 'trial_started', { plan: plan.key, price: plan.price });
        } else {
          beckon('convert', { order_id: orderId, value: t.total });
          orderPlaced = true;
          storeSet(COUPON_KEY, null);
          saveCart([]);
        }
        showThanks({ orderId: orderId, total: plan ? money(0) + ' today, then ' + money(plan.price) + '/mo' : money(t.total), email: email, plan: plan });
      } catch (e) { /* never throw */ }
    });
  }

  function showThanks(o) {
    var thanks = $('[data-thanks]');
    if (!thanks) return;
    orderPlaced = true;
    $all('[data-checkout-main], [data-checkout-empty]').forEach(function (n) { n.hidden = true; });
    var intro = $('[data-checkout-intro]');
    if (intro) intro.hidden = true;
    $('[data-thanks-title]', thanks).textContent = o.plan ? 'Welcome to the Club!' : 'Thank you for your order!';
    $('[data-thanks-text]', thanks).textContent = o.plan
      ? 'Your 14-day free trial of Northwind Club ' + o.plan.name + ' has started. We have sent the details to ' + (o.email || 'your inbox') + '.'
      : 'We have sent a confirmation to ' + (o.email || 'your inbox') + '. Your gear leaves our warehouse in Portland within one business day.';
    $('[data-thanks-order]', thanks).textContent = o.orderId;
    $('[data-thanks-total]', thanks).textContent = o.total;
    thanks.hidden = false;
    var title = $('[data-thanks-title]', thanks);
    title.focus();
    window.scrollTo(0, 0);
  }

  // ---------- category page: sort ----------

  function bindSort() {
    var select = $('[data-sort]');
    var grid = $('[data-sort-grid]');
    if (!select || !grid) return;
    select.addEventListener('change', function () {
      try {
        var items = $all(':scope > li', grid);
        var by = select.value;
        items.sort(function (a, b) {
          var pa = Number(a.getAttribute('data-price')), pb = Number(b.getAttribute('data-price'));
          if (by === 'price-asc') return pa - pb;
          if (by === 'price-desc') return pb - pa;
          return Number(a.getAttribute('data-order')) - Number(b.getAttribute('data-order'));
        });
        items.forEach(function (li) { grid.appendChild(li); });
      } catch (e) { /* never throw */ }
    });
  }

  // ---------- wiring ----------

  /** Re-renders everything that depends on the cart (no reporting: callers report changes). */
  function refresh() {
    try {
      var lines = loadCart();
      var plan = planFromUrl();
      var onCheckout = !!$('#checkout-form');
      renderCount(lines, false);
      renderTotals(totals(lines, onCheckout ? shippingMethod() : 'standard', onCheckout ? plan : null),
        { plan: onCheckout ? plan : null, estimate: !onCheckout });
      renderCouponForms();
      renderCheckout();
    } catch (e) { /* never throw */ }
  }

  function start() {
    try {
      var lines = loadCart();
      if (lines.length) reportCart(lines);
      beckon('on', 'coupon', function (code) {
        try { return applyCoupon(code, 'beckon'); } catch (e) { return false; }
      });
      bindBuyForms();
      bindCouponForms();
      bindCheckout();
      bindSort();
      renderCartPage(false);
      refresh();
      // Back/forward cache and other tabs: show the cart as it is now.
      window.addEventListener('pageshow', function (ev) { if (ev.persisted) { renderCartPage(false); refresh(); } });
      window.addEventListener('storage', function (ev) {
        if (ev.key === CART_KEY || ev.key === COUPON_KEY) { delete memory[ev.key]; renderCartPage(false); refresh(); }
      });
    } catch (e) { /* never throw */ }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
