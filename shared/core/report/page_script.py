"""Pure: the report page's inline script. It reads the embedded data (`page_data`), pages the
load balancer and findings tables, filters, searches and sorts over all findings, opens one
load balancer's picture at a time (its SVG chunk decompressed on first use) and sets every
estate value as text, never as markup."""

JS = r"""
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('hairpin-data').textContent);
  var PAGE = 50, LB_PAGE = 20, RANK = {high: 0, medium: 1, info: 2};
  var findings = [], chunks = {}, openDetails = {};
  var lbs = data.lbs.map(objects(data.lb_columns));
  var st = {sev: {}, fix: '', text: '', scope: null, sort: null, dir: 1, page: 0, shown: []};
  var lbSt = {sort: null, dir: 1, page: 0, open: null};
  var $ = function (id) { return document.getElementById(id); };

  function objects(columns) {
    return function (row) {
      var o = {};
      columns.forEach(function (c, i) { o[c] = row[i]; });
      return o;
    };
  }
  function inflate(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }
  function onEnter(row) {  // rows that open on a click open on Enter too (keyboard users)
    row.addEventListener('keydown', function (e) {
      if (e.key === 'Enter') { e.preventDefault(); row.click(); }
    });
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function pct(p) { return Math.round((Number(p) || 0) * 100) + '%'; }
  function ipNumber(ip) {
    var parts = String(ip || '').split('.');
    if (parts.length !== 4) { return Infinity; }
    return parts.reduce(function (n, p) { return n * 256 + (Number(p) || 0); }, 0);
  }
  var KEYS = {
    severity: function (f) { return RANK[f.severity]; },
    vm: function (f) { return String(f.vm || '').toLowerCase(); },
    ip: function (f) { return ipNumber(f.ip); },
    likelihood: function (f) { return -(f.likelihood || 0); },
    caller: function (f) { return String(f.caller || ''); },
    fix: function (f) { return f.fix; },
    name: function (l) { return String(l.name || '').toLowerCase(); },
    high: function (l) { return -l.high; }, medium: function (l) { return -l.medium; },
    info: function (l) { return -l.info; }, blocked: function (l) { return -l.blocked; },
    vms: function (l) { return -l.vms; }
  };
  function sorted(list, key, dir) {
    if (!key) { return list; }
    var k = KEYS[key];
    return list.map(function (x, i) { return [k(x), i, x]; }).sort(function (a, b) {
      return (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] - b[1]);
    }).map(function (t) { return t[2]; });
  }
  function pager(nav, page, total, size, go) {
    nav.textContent = '';
    var pages = Math.max(1, Math.ceil(total / size));
    if (pages < 2) { return; }
    var prev = el('button', 'prev', '\u2039 previous'), next = el('button', 'next', 'next \u203a');
    prev.type = next.type = 'button';
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    prev.addEventListener('click', function () { go(page - 1); });
    next.addEventListener('click', function () { go(page + 1); });
    nav.appendChild(prev);
    nav.appendChild(el('span', 'page', 'page ' + (page + 1) + ' of ' + pages));
    nav.appendChild(next);
  }

  function matches(f) {
    var s = st.scope;
    var fix = !st.fix || (st.fix === 'blocked' ? f.blocked : f.fix === 'yes');
    return !!st.sev[f.severity] && fix && (!s || f[s.kind] === s.index) &&
      (!st.text || f.text.indexOf(st.text) >= 0);
  }
  function apply() {
    st.shown = sorted(findings.filter(matches), st.sort, st.dir);
    var pages = Math.max(1, Math.ceil(st.shown.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    drawFindings();
    dimLoops();
    $('f-count').textContent = st.shown.length + ' of ' + findings.length;
  }
  function drawFindings() {
    var body = document.querySelector('#findings tbody');
    body.textContent = '';
    st.shown.slice(st.page * PAGE, (st.page + 1) * PAGE).forEach(function (f) {
      body.appendChild(findingRow(f));
      if (openDetails[f.id]) { body.appendChild(detailRow(f)); }
    });
    pager($('findings-pager'), st.page, st.shown.length, PAGE, function (p) {
      st.page = p; drawFindings();
    });
  }
  function findingRow(f) {
    var tr = el('tr', 'finding ' + f.severity);
    tr.id = 'row-' + f.id;
    tr.dataset.finding = f.id; tr.dataset.severity = f.severity; tr.dataset.vm = f.vm;
    tr.appendChild(el('td')).appendChild(el('span', 'badge ' + f.severity, f.severity));
    tr.appendChild(el('td', null, f.vm)).title = f.vm_id || '';
    var fe = tr.appendChild(el('td'));
    fe.appendChild(el('b', null, f.ip));
    fe.appendChild(el('br'));
    fe.appendChild(el('small', null, (lbs[f.lb] ? lbs[f.lb].name : '') + ' / ' + f.frontend));
    tr.appendChild(el('td', null, f.ports));
    var lk = tr.appendChild(el('td'));
    var meter = lk.appendChild(el('span', 'meter')).appendChild(el('span'));
    meter.style.width = Math.max(0, Math.min(100, (f.likelihood || 0) * 100)) + '%';
    lk.appendChild(document.createTextNode(' ' + pct(f.likelihood)));
    tr.appendChild(el('td', null, f.caller));
    tr.appendChild(el('td', null, f.fix));
    var reason = tr.appendChild(el('td', 'reason', f.reason));
    var more = reason.appendChild(el('button', 'more', openDetails[f.id] ? 'hide' : 'details'));
    more.type = 'button';
    more.addEventListener('click', function () {
      openDetails[f.id] = !openDetails[f.id];
      drawFindings();
    });
    tr.addEventListener('mouseenter', function () { highlight(f.id); });
    return tr;
  }
  function detailRow(f) {
    var tr = el('tr', 'detail'), td = tr.appendChild(el('td'));
    td.colSpan = 8;
    tr.dataset.finding = f.id;
    var p = td.appendChild(el('p'));
    p.appendChild(el('b', null, 'Likelihood: '));
    p.appendChild(document.createTextNode(f.likelihood_text || ''));
    (f.facts || []).forEach(function (fact) {  // evidence and what the fix would do
      var line = td.appendChild(el('p', 'fact'));
      line.appendChild(el('b', null, fact[0] + ': '));
      line.appendChild(document.createTextNode(fact[1]));
    });
    var parts = [['Fix blockers and unknowns:', f.issues, true], ['Notes:', f.notes, false]];
    parts.forEach(function (s) {
      if (!s[1] || !s[1].length) { return; }
      td.appendChild(el('p')).appendChild(el('b', null, s[0]));
      var ul = td.appendChild(el('ul'));
      s[1].forEach(function (item) {
        var li = ul.appendChild(el('li'));
        if (s[2]) {
          li.appendChild(el('code', null, item[0]));
          li.appendChild(document.createTextNode(' ' + item[1]));
        } else { li.textContent = item; }
      });
    });
    var id = td.appendChild(el('p')).appendChild(el('small', null, 'ID '));
    id.appendChild(el('code', null, f.id));
    return tr;
  }
  function loops() {
    return Array.prototype.slice.call(document.querySelectorAll('#lb-table g.loop'));
  }
  function dimLoops() {
    var shown = {};
    st.shown.forEach(function (f) { shown[f.id] = true; });
    loops().forEach(function (g) { g.classList.toggle('dim', !shown[g.dataset.finding]); });
  }
  function highlight(id) {
    document.querySelectorAll('tr.finding').forEach(function (r) {
      r.classList.toggle('hl', r.dataset.finding === id);
    });
    loops().forEach(function (g) { g.classList.toggle('hl', g.dataset.finding === id); });
  }
  function setScope(kind, index, label) {
    st.scope = kind === null ? null : {kind: kind, index: index};
    $('f-scope').hidden = kind === null;
    $('f-scope').firstChild.textContent = kind === null ? '' : kind + ': ' + label;
    st.page = 0;
    apply();
  }
  function showFinding(id) {
    $('f-text').value = id;
    st.text = id.toLowerCase(); st.page = 0;
    apply();
    $('findings-section').scrollIntoView({block: 'start'});
  }

  function picture(lb) {
    if (lb.chunk < 0) { return Promise.resolve(''); }
    if (!chunks[lb.chunk]) { chunks[lb.chunk] = inflate(data.pictures[lb.chunk]); }
    return chunks[lb.chunk].then(function (c) { return c[lb.key] || ''; });
  }
  function drawLbs() {
    var body = document.querySelector('#lb-table tbody');
    body.textContent = '';
    var list = sorted(lbs, lbSt.sort, lbSt.dir);
    list.slice(lbSt.page * LB_PAGE, (lbSt.page + 1) * LB_PAGE).forEach(function (lb) {
      body.appendChild(lbRow(lb));
      if (lbSt.open === lb.key) { body.appendChild(lbPicture(lb)); }
    });
    pager($('lb-pager'), lbSt.page, lbs.length, LB_PAGE, function (p) {
      lbSt.page = p; drawLbs();
    });
  }
  function lbRow(lb) {
    var tr = el('tr', 'lb-row' + (lbSt.open === lb.key ? ' open' : ''));
    tr.dataset.lb = lb.key;
    tr.tabIndex = 0;
    var name = tr.appendChild(el('td'));
    name.appendChild(el('b', null, lb.name));
    if (lb.rg) { name.appendChild(el('small', null, ' ' + lb.rg)); }
    ['high', 'medium', 'info', 'blocked', 'vms'].forEach(function (k) {
      tr.appendChild(el('td', 'n ' + k, lb[k]));
    });
    var act = tr.appendChild(el('td')).appendChild(el('button', 'lb-findings', 'findings'));
    act.type = 'button';
    act.addEventListener('click', function (e) {
      e.stopPropagation();
      setScope('lb', lbs.indexOf(lb), lb.name);
      $('findings-section').scrollIntoView({block: 'start'});
    });
    tr.addEventListener('click', function () {
      lbSt.open = lbSt.open === lb.key ? null : lb.key;
      drawLbs();
    });
    onEnter(tr);
    return tr;
  }
  function lbPicture(lb) {
    var tr = el('tr', 'lb-picture'), td = tr.appendChild(el('td'));
    td.colSpan = 7;
    if (lb.omitted) {
      td.appendChild(el('p', 'note', 'The picture shows ' + (lb.vms - lb.omitted) + ' VMs; ' +
                         lb.omitted + ' more are only in the table.'));
    }
    var box = td.appendChild(el('div', 'picture'));
    picture(lb).then(function (svg) {
      box.innerHTML = svg;  // markup rendered and escaped by the report's Python side
      box.querySelectorAll('g.loop').forEach(function (g) {
        g.addEventListener('click', function () { showFinding(g.dataset.finding); });
      });
      dimLoops();
      document.documentElement.dataset.picture = lb.key;
    });
    return tr;
  }

  function wire() {
    document.querySelectorAll('input[name=sev]').forEach(function (b) {
      st.sev[b.value] = b.checked;
      b.addEventListener('change', function () {
        st.sev[b.value] = b.checked; st.page = 0; apply();
      });
    });
    $('f-fix').addEventListener('change', function (e) {
      st.fix = e.target.value; st.page = 0; apply();
    });
    $('f-text').addEventListener('input', function (e) {
      st.text = e.target.value.trim().toLowerCase(); st.page = 0; apply();
    });
    $('f-scope-clear').addEventListener('click', function () { setScope(null); });
    document.querySelectorAll('tr.scope').forEach(function (r) {
      onEnter(r);
      r.addEventListener('click', function () {
        setScope(r.dataset.kind, Number(r.dataset.index), r.cells[0].textContent);
        $('findings-section').scrollIntoView({block: 'start'});
      });
    });
    [['#findings', st, apply], ['#lb-table', lbSt, drawLbs]].forEach(function (t) {
      document.querySelectorAll(t[0] + ' th[data-sort]').forEach(function (th) {
        th.addEventListener('click', function () {
          var s = t[1];
          s.dir = s.sort === th.dataset.sort ? -s.dir : 1;
          s.sort = th.dataset.sort; s.page = 0;
          t[2]();
        });
      });
    });
  }

  wire();
  lbSt.open = lbs.length ? lbs[0].key : null;
  drawLbs();
  inflate(data.findings).then(function (rows) {
    findings = rows.map(objects(data.finding_columns));
    findings.forEach(function (f) {
      f.text = [f.vm, f.ip, lbs[f.lb] ? lbs[f.lb].name : '', f.frontend, f.id, f.reason, f.ports,
                f.caller].join(' ').toLowerCase();
    });
    apply();
    return lbs.length ? picture(lbs[0]) : '';
  }).then(function () {
    requestAnimationFrame(function () {
      performance.mark('hairpin-ready');  // the table and the first picture are drawn
      document.documentElement.dataset.ready = 'true';
    });
  });
})();
"""
