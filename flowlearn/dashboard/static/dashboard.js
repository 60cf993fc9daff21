// flowlearn dashboard: polls the JSON endpoints and redraws. Plain JS, no build step; charts by uPlot.
"use strict";

const KIND_COLORS = {batch: "#1f77b4", online: "#2ca02c", rebase: "#d62728", rollback: "#9467bd", unknown: "#7f7f7f"};
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const METRIC_LABELS = {auc: "AUC", log_loss: "log loss", accuracy: "accuracy", rmse: "RMSE"};
const MAX_VERSION_SERIES = 8;

const state = {refresh: 1000, latest: null, served: null, pinned: null, shownPipeline: null, charts: {}};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function fmt(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString();
  return x.toFixed(digits === undefined ? 4 : digits);
}
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "-"; }
function ago(t) {
  if (!t) return "-";
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${s.toFixed(0)}s ago` : s < 5400 ? `${(s / 60).toFixed(0)}min ago` : `${(s / 3600).toFixed(1)}h ago`;
}
async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// -- charts --------------------------------------------------------------------------------
// One uPlot per container; rebuilt when its series change, otherwise setData (keeps zoom/cursor).
function chart(id, container, title, xIsTime, seriesDefs, data, height) {
  const key = seriesDefs.map(s => s.label).join("|");
  let c = state.charts[id];
  const width = Math.max(300, container.clientWidth || 600);
  if (!c || c.key !== key || c.width !== width) {
    if (c) c.u.destroy();
    container.textContent = "";
    const opts = {
      title: title, width: width, height: height || 220,
      scales: {x: {time: xIsTime}},
      series: [{label: xIsTime ? "time" : "window"}].concat(seriesDefs.map(s => Object.assign({
        stroke: s.color, width: 1.5, spanGaps: false, points: {show: true, size: 5}}, s))),
      // windows are whole numbers: ticks at integer steps only
      axes: [xIsTime ? {} : {incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000]}, {size: 60}],
      legend: {live: true},
    };
    c = state.charts[id] = {u: new uPlot(opts, data, container), key: key, width: width};
  } else {
    c.u.setData(data);
  }
  container.dataset.points = String(data[0].length);
  container.dataset.series = String(seriesDefs.length);
  return c.u;
}

// -- versions ------------------------------------------------------------------------------
function renderVersions(doc) {
  state.versions = doc.versions;
  document.getElementById("store").textContent = doc.store;
  const lv = document.getElementById("latest-version");
  lv.textContent = doc.latest === null ? "-" : "v" + doc.latest;
  lv.dataset.version = doc.latest === null ? "" : String(doc.latest);
  state.latest = doc.latest;

  const vs = doc.versions.slice().sort((a, b) => a.created_at - b.created_at);
  const kinds = [...new Set(vs.map(v => v.kind))];
  const legend = document.getElementById("kind-legend");
  legend.textContent = "";
  for (const k of kinds) legend.append(el("span", {}, el("span", {class: "badge kind-" + (KIND_COLORS[k] ? k : "unknown"), text: k})));
  const xs = vs.map(v => v.created_at);
  const series = kinds.map(k => ({label: k, color: KIND_COLORS[k] || KIND_COLORS.unknown,
                                  paths: () => null, points: {show: true, size: 9, fill: KIND_COLORS[k] || KIND_COLORS.unknown}}));
  const data = [xs].concat(kinds.map(k => vs.map(v => (v.kind === k ? v.version : null))));
  if (xs.length) chart("versions", document.getElementById("versions-chart"), "version by publication time", true, series, data, 180);

  const tbody = document.querySelector("#versions-table tbody");
  tbody.textContent = "";
  for (const v of doc.versions.slice().reverse()) {
    const g = v.gate;
    const gate = g ? el("span", {class: "passed", text: `passed ${g.metric} ${fmt(g.value)} (${fmt(g.rows)} rows)`}) : "-";
    const tr = el("tr", {"data-version": String(v.version)},
      el("td", {text: "v" + v.version}), el("td", {text: fmtTime(v.created_at)}),
      el("td", {}, el("span", {class: "badge kind-" + (KIND_COLORS[v.kind] ? v.kind : "unknown"), text: v.kind})),
      el("td", {text: (v.class || "").split(".").pop()}), el("td", {}, gate));
    if (v.version === state.served) tr.children[0].append(" ", el("span", {class: "badge served", text: "served"}));
    if (v.version === (state.pinned || state.served || state.latest)) tr.classList.add("selected");
    tr.addEventListener("click", () => { state.pinned = v.version; loadPipeline(); renderVersions(doc); });
    tbody.append(tr);
  }
}

// A passed candidate's store version: published by the gate itself, or by the job's store sink,
// which records the trainer's number as metadata.model_version next to the gate's verdict.
function storeVersion(g) {
  if (g.published) return "v" + g.published;
  const v = (state.versions || []).find(x => x.gate && x.metadata.model_version === g.version && g.version !== null);
  return v ? "v" + v.version : "-";
}
function renderGates(jobs) {
  const box = document.getElementById("gate-decisions");
  box.textContent = "";
  const rows = [];
  for (const j of jobs) for (const g of j.gates || []) rows.push([j.job, g]);
  if (!rows.length) return;
  box.append(el("h3", {text: "Gate decisions (candidates judged by the jobs' ModelGates)"}));
  const t = el("table", {id: "gates-table"}, el("thead", {}, el("tr", {},
    ...["job", "candidate", "decision", "metric", "value", "held-out rows", "store version / reason"].map(h => el("th", {text: h})))));
  const tb = el("tbody");
  for (const [job, g] of rows.slice(-50).reverse()) {
    tb.append(el("tr", {}, el("td", {text: job}), el("td", {text: g.version === null ? "-" : String(g.version)}),
      el("td", {class: g.passed ? "passed" : "rejected", text: g.passed ? "passed" : "rejected"}),
      el("td", {text: g.metric}), el("td", {text: fmt(g.value)}), el("td", {text: fmt(g.rows)}),
      el("td", {text: g.passed ? storeVersion(g) : g.reason})));
  }
  t.append(tb);
  box.append(el("div", {class: "scroll"}, t));
}

// -- evaluation metrics --------------------------------------------------------------------
function renderMetrics(doc) {
  const names = Object.keys(doc.evaluations);
  document.getElementById("metrics-empty").hidden = names.length > 0;
  const root = document.getElementById("metrics-charts");
  for (const name of names) {
    const ev = doc.evaluations[name];
    let group = document.getElementById("eval-" + name);
    if (!group) {
      group = el("div", {class: "metric-group", id: "eval-" + name}, el("h3", {text: name}), el("div", {class: "metric-charts"}));
      root.append(group);
    }
    const grid = group.querySelector(".metric-charts");
    const windows = ev.windows;
    const xs = windows.map(r => r.window);
    // the newest versions that scored rows get a series each
    const versions = [...new Set(ev.versions.map(r => r.model_version))].sort((a, b) => a - b);
    const shown = versions.slice(-MAX_VERSION_SERIES);
    for (const m of ev.metrics) {
      const id = `chart-${name}-${m}`;
      let box = document.getElementById(id);
      if (!box) { box = el("div", {class: "chart", id: id, "data-points": "0"}); grid.append(box); }
      const series = [{label: "all versions", color: "#1b2a3a", width: 2},
                      {label: "cumulative", color: "#888", dash: [5, 4], points: {show: false}}];
      const data = [xs, windows.map(r => r["window_" + m]), windows.map(r => r["cumulative_" + m])];
      const byKey = {};
      for (const r of ev.versions) byKey[r.window + ":" + r.model_version] = r["window_" + m];
      shown.forEach((v, i) => {
        series.push({label: "mv " + v, color: PALETTE[i % PALETTE.length], width: 1, points: {show: true, size: 4}});
        data.push(xs.map(w => (byKey[w + ":" + v] === undefined ? null : byKey[w + ":" + v])));
      });
      chart(id, box, `${name}: ${METRIC_LABELS[m] || m} per window`, false, series, data, 220);
    }
    renderVersionTotals(group, name, ev);
  }
}

// The newest row of each model version: its cumulative metrics over every window it scored.
function renderVersionTotals(group, name, ev) {
  let box = group.querySelector(".version-totals");
  if (!box) { box = el("div", {class: "scroll version-totals"}); group.append(box); }
  box.textContent = "";
  if (!ev.versions.length) return;
  const last = {};
  for (const r of ev.versions) last[r.model_version] = r;
  const t = el("table", {id: `totals-${name}`}, el("thead", {}, el("tr", {},
    ...["mv (model_version as scored)", "rows", "last window"].concat(ev.metrics.map(m => (METRIC_LABELS[m] || m) + ", cumulative"))
      .map(h => el("th", {text: h})))));
  const tb = el("tbody");
  for (const r of Object.values(last).sort((a, b) => b.model_version - a.model_version)) {
    tb.append(el("tr", {"data-model-version": String(r.model_version)}, el("td", {text: String(r.model_version)}),
      el("td", {text: fmt(r.cumulative_rows)}), el("td", {text: String(r.window)}),
      ...ev.metrics.map(m => el("td", {text: fmt(r["cumulative_" + m])}))));
  }
  t.append(tb);
  box.append(t);
}

// -- jobs ----------------------------------------------------------------------------------
function renderJobs(doc) {
  const jobs = doc.jobs;
  document.getElementById("jobs-empty").hidden = jobs.length > 0;
  const tbody = document.querySelector("#jobs-table tbody");
  tbody.textContent = "";
  for (const j of jobs) {
    const m = j.metrics || {};
    const h = j.history || [];
    const last = h.length ? h[h.length - 1] : {};
    const cp = j.checkpoint;
    tbody.append(el("tr", {"data-job": j.job},
      el("td", {text: j.job}), el("td", {class: "status-" + j.status, text: j.status + (j.error ? ": " + j.error : "")}),
      el("td", {text: fmt(m.rows_in)}), el("td", {text: fmt(m.rows_out)}), el("td", {text: fmt(last.rows_per_second, 0)}),
      el("td", {text: fmt(last.lag)}), el("td", {text: fmt(m.checkpoints) + (m.restored_from ? ` (resumed from ${m.restored_from})` : "")}),
      el("td", {text: cp && cp.latest ? `#${cp.latest}, ${ago(cp.at)}` : "-"}), el("td", {text: fmt(m.dead_letters)}),
      el("td", {text: ago(j.updated_at)})));
  }
  renderGates(jobs);
  if (!jobs.length) return;
  // one time axis for every job: the union of their history times
  const times = [...new Set(jobs.flatMap(j => (j.history || []).map(r => r.time)))].sort((a, b) => a - b);
  const idx = new Map(times.map((t, i) => [t, i]));
  const series = jobs.map((j, i) => ({label: j.job, color: PALETTE[i % PALETTE.length]}));
  const col = (field) => jobs.map(j => {
    const a = new Array(times.length).fill(null);
    for (const r of j.history || []) a[idx.get(r.time)] = r[field];
    return a;
  });
  chart("throughput", document.getElementById("throughput-chart"), "", true,
        series.map(s => Object.assign({spanGaps: true}, s)), [times].concat(col("rows_per_second")), 200);
  chart("lag", document.getElementById("lag-chart"), "", true,
        series.map(s => Object.assign({spanGaps: true}, s)), [times].concat(col("lag")), 200);
}

// -- pipeline graph ------------------------------------------------------------------------
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawPipeline(g) {
  const root = document.getElementById("pipeline-graph");
  root.textContent = "";
  const W = 200, H = 46, GX = 150, GY = 28;
  const layers = {};
  for (const n of g.nodes) (layers[n.layer] = layers[n.layer] || []).push(n);
  const pos = {};
  let maxRows = 1;
  for (const [layer, ns] of Object.entries(layers)) {
    maxRows = Math.max(maxRows, ns.length);
    ns.forEach((n, i) => { pos[n.id] = {x: 10 + Number(layer) * (W + GX), y: 10 + i * (H + GY)}; });
  }
  const nLayers = Object.keys(layers).length;
  root.setAttribute("width", String(20 + nLayers * (W + GX)));
  root.setAttribute("height", String(20 + maxRows * (H + GY)));
  const defs = svg("defs");
  const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto"});
  marker.append(svg("path", {d: "M0,0 L10,5 L0,10 z", fill: "#8a98a8"}));
  defs.append(marker);
  root.append(defs);
  for (const e of g.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    // an edge spanning several layers drops into the free lane below its source's row in the
    // first gap, runs along it past the boxes in between and bends into its target in the last gap
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, xb = x2 - GX, mx = (xb + x2) / 2;
    let d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
    const lane = a.y + H + GY / 2, m1 = x1 + GX / 2;
    if (xb > x1) d = `M${x1},${y1} C${m1},${y1} ${m1},${lane} ${x1 + GX},${lane} L${xb},${lane} ` +
                     `C${mx},${lane} ${mx},${y2} ${x2},${y2}`;
    root.append(svg("path", {class: "edge", d: d, "marker-end": "url(#arrow)"}));
    if (e.columns.length) {
      const label = e.columns.join(", ");
      const [lx, ly] = xb > x1 ? [(x1 + GX + xb) / 2, lane - 3] : [mx, (y1 + y2) / 2 - 4];
      root.append(svg("text", {class: "edge-label", x: String(lx), y: String(ly), "text-anchor": "middle"},
                      label.length > 24 ? label.slice(0, 22) + "…" : label));
    }
  }
  for (const n of g.nodes) {
    const p = pos[n.id];
    const grp = svg("g", {class: "node " + n.kind, transform: `translate(${p.x},${p.y})`, "data-stage": n.label});
    grp.append(svg("rect", {width: String(W), height: String(H)}));
    grp.append(svg("text", {x: "8", y: "18", "font-weight": "600"}, n.label));
    const outs = (n.outputs || []).join(", ");
    if (outs) grp.append(svg("text", {x: "8", y: "36", fill: "#555"}, "→ " + (outs.length > 26 ? outs.slice(0, 24) + "…" : outs)));
    grp.append(svg("title", {}, n.class || n.label));
    grp.addEventListener("click", () => {
      document.getElementById("stage-params").textContent = `${n.class || n.label}\n` + JSON.stringify(n.params, null, 1);
    });
    root.append(grp);
  }
  root.dataset.nodes = String(g.nodes.length);
}
function renderServed(doc) {
  const box = document.getElementById("served-box");
  box.hidden = !doc.server;
  const sv = document.getElementById("served-version");
  state.served = doc.version;
  sv.textContent = doc.error ? "? (" + doc.error + ")" : (doc.version === null ? "-" : "v" + doc.version);
  sv.dataset.version = doc.version === null ? "" : String(doc.version);
}
async function loadPipeline() {
  const v = state.pinned || state.served || state.latest;
  document.getElementById("follow-latest").hidden = state.pinned === null;
  if (v === null || v === state.shownPipeline) return;
  try {
    const g = await getJSON("api/pipeline?version=" + v);
    state.shownPipeline = v;
    document.getElementById("pipeline-version").textContent = "v" + v;
    drawPipeline(g);
  } catch (err) {
    document.getElementById("pipeline-version").textContent = `v${v} (${err.message})`;
  }
}

// -- the loop ------------------------------------------------------------------------------
async function tick() {
  const upd = document.getElementById("updated");
  try {
    const [versions, metrics, jobs, served] = await Promise.all([getJSON("api/versions"), getJSON("api/metrics"),
                                                                 getJSON("api/jobs"), getJSON("api/served")]);
    renderServed(served);
    renderMetrics(metrics);
    renderVersions(versions);
    renderJobs(jobs);
    await loadPipeline();
    upd.textContent = "updated " + new Date().toLocaleTimeString();
    upd.classList.remove("stale");
    document.body.dataset.ticks = String(Number(document.body.dataset.ticks || 0) + 1);
  } catch (err) {
    upd.textContent = "cannot reach the dashboard server: " + err.message;
    upd.classList.add("stale");
  }
}
async function main() {
  try {
    const cfg = await getJSON("api/config");
    state.refresh = Math.max(50, cfg.refresh * 1000);
  } catch (err) { /* keep the default */ }
  document.getElementById("follow-latest").addEventListener("click", () => { state.pinned = null; loadPipeline(); });
  const loop = async () => { await tick(); setTimeout(loop, state.refresh); };
  loop();
}
main();
