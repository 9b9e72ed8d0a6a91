"""Pure: the report page's inline style sheet (the script is `page_script`)."""

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
h3{font-size:14px;margin:14px 0 6px}
.card.blocked b{color:#7a4b00}
.trend{margin:12px 0 0}
.trend .new{color:var(--red)}
.trend .resolved{color:#1a7f37}
.columns{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
table.small{width:auto}
table.small th,table.small td{padding:4px 10px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.n.high{color:var(--red)}
td.n.medium{color:var(--amber)}
tr.scope,tr.lb-row{cursor:pointer}
tr.scope:hover,tr.lb-row:hover,tr.lb-row.open{background:#f3f6fa}
tr.lb-row small{color:var(--mute)}
th[data-sort]{cursor:pointer;text-decoration:underline dotted}
.blockers{margin:0;padding-left:18px}
.pager{display:flex;gap:12px;align-items:center;margin-top:10px}
.pager .page{color:var(--mute)}
button{font:inherit;border:1px solid #c9d1da;border-radius:6px;background:#fff;padding:2px 8px;
  cursor:pointer}
button.more{margin-left:6px;font-size:12px;color:var(--mute)}
tr.detail td{border-top:0;color:var(--mute);padding-top:0}
#f-scope{border:1px solid var(--line);border-radius:14px;padding:2px 4px 2px 10px}
"""

