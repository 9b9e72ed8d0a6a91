"""Pure: the report page's inline style sheet and script (no data: the script reads the
rendered rows' ``data-*`` attributes)."""

CSS = """
:root{--red:#d0021b;--amber:#c77700;--info:#5b6b7f;--ink:#1d2733;--mute:#6b7785;--line:#e3e8ee}
*{box-sizing:border-box}
body{
  margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
  background:#f6f8fa;
}
header{background:#1d2733;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d3dd}
main{padding:8px 28px 28px;max-width:1400px}
section{
  background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:16px 0;
}
h2{font-size:17px;margin:0 0 10px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:110px}
.card b{display:block;font-size:24px}
.card span{color:var(--mute)}
.card.high b{color:var(--red)}
.card.medium b{color:var(--amber)}
.card.info b{color:var(--info)}
.card.ok b{color:#1a7f37}
.na{margin:12px 0 0;padding-left:18px;color:var(--mute)}
.picture{overflow-x:auto}
.legend{color:var(--mute);margin:0 0 8px}
.k{
  display:inline-block;width:28px;height:0;border-top:3px solid var(--red);vertical-align:middle;
  margin:0 4px 0 10px;
}
.k.medium{border-top-style:dashed}
.k.info{border-top-style:dotted}
svg text{font:12px system-ui,sans-serif;fill:var(--ink)}
svg .col{font-weight:600;fill:var(--mute)}
svg .name{font-weight:600}
svg .meta,svg .port{fill:var(--mute);font-size:11px}
.vm rect{fill:#eef4ff;stroke:#7aa2e3}
.vm.off rect{fill:#f3f3f3;stroke:#aaa}
.vm .nic{fill:#fff;stroke:#b9c8e0}
.nictext{font-size:11px}
.pool rect{fill:#f3f0ff;stroke:#a08be0}
.lb rect{fill:#fafbfc;stroke:#c9d1da;stroke-dasharray:4 3}
.fe rect{fill:#fff7e8;stroke:#e0a94a}
path.member,path.rule{fill:none;stroke:#9aa7b4;stroke-width:1.3}
.loop path{fill:none;stroke:var(--red);stroke-width:2.6}
.loop.medium path{stroke-dasharray:7 5}
.loop.info path{stroke-dasharray:2 4;stroke-width:2}
.loop.label text{fill:var(--red);font-weight:600;font-size:12px}
.loop{cursor:pointer}
.loop.dim{opacity:.12}
.loop.hl path{stroke-width:4.5}
.filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin-bottom:10px}
.chip{border:1px solid var(--line);border-radius:14px;padding:3px 10px}
.filters select,.filters input[type=search]{
  padding:4px 6px;border:1px solid #c9d1da;border-radius:6px;
}
#f-count{color:var(--mute)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:8px;border-top:1px solid var(--line)}
th{color:var(--mute);font-weight:600}
tr.hl{background:#fff3f3}
.badge{border-radius:10px;padding:1px 8px;color:#fff;font-size:12px}
.badge.high{background:var(--red)}
.badge.medium{background:var(--amber)}
.badge.info{background:var(--info)}
.meter{
  display:inline-block;width:50px;height:7px;background:#eee;border-radius:4px;
  vertical-align:middle;
}
.meter span{display:block;height:7px;background:var(--red);border-radius:4px}
td.reason{max-width:520px}
td:nth-child(2),td:nth-child(4),td:nth-child(5){white-space:nowrap}
details{margin-top:4px;color:var(--mute)}
.empty,.note{color:var(--mute)}
footer{color:var(--mute);padding:0 28px 20px}
"""


JS = """
(function () {
  'use strict';
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.finding'));
  var loops = Array.prototype.slice.call(document.querySelectorAll('g.loop'));
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name=sev]'));
  var vm = document.getElementById('f-vm');
  var text = document.getElementById('f-text');
  var count = document.getElementById('f-count');
  function apply() {
    var on = {}, shown = {}, n = 0;
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    var v = vm ? vm.value : '', t = text ? text.value.trim().toLowerCase() : '';
    rows.forEach(function (r) {
      var ok = !!on[r.dataset.severity] && (!v || r.dataset.vm === v) &&
               (!t || r.dataset.text.indexOf(t) >= 0);
      r.hidden = !ok;
      if (ok) { n += 1; shown[r.dataset.finding] = true; }
    });
    loops.forEach(function (g) { g.classList.toggle('dim', !shown[g.dataset.finding]); });
    if (count) { count.textContent = n + ' of ' + rows.length; }
  }
  function highlight(id) {
    rows.forEach(function (r) { r.classList.toggle('hl', r.dataset.finding === id); });
    loops.forEach(function (g) { g.classList.toggle('hl', g.dataset.finding === id); });
  }
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  if (vm) { vm.addEventListener('change', apply); }
  if (text) { text.addEventListener('input', apply); }
  rows.forEach(function (r) {
    r.addEventListener('mouseenter', function () { highlight(r.dataset.finding); });
  });
  loops.forEach(function (g) {
    g.addEventListener('click', function () {
      highlight(g.dataset.finding);
      rows.forEach(function (r) {
        if (r.dataset.finding === g.dataset.finding) { r.scrollIntoView({block: 'center'}); }
      });
    });
  });
  apply();
  document.documentElement.dataset.ready = 'true';
})();
"""
