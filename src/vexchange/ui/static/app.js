// vex ui: the page. Plain JavaScript, no build step, no library, nothing fetched from elsewhere.
// Every value from the store is put into the page as text (textContent), never as HTML.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#aaaaaa"];
const state = { status: null, ready: false, map: null, points: {} };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(4)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function put(parent, ...children) {
  for (const c of children.flat(3)) if (c !== null && c !== undefined) parent.append(c);
  return parent;
}

const fmt = (n) => (n === null || n === undefined ? "-" : typeof n === "number" ? n.toLocaleString("en-US") : String(n));
const num = (n, d = 4) => (n === null || n === undefined ? "-" : Number(n).toFixed(d));
const nsLabel = (ns) => (ns === null ? "(none)" : ns === "" ? '""' : ns);

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error + (body.hint ? "\nhint: " + body.hint : ""));
  return body;
}

function showError(err) {
  const box = document.getElementById("error");
  box.hidden = !err;
  box.textContent = err ? String(err.message || err) : "";
}

function table(heads, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, heads.map((h) =>
    el("th", { class: h.startsWith("#") ? "num" : null, text: h.replace(/^#/, "") })))),
  el("tbody", {}, rows));
}

function countTable(title, counts, id) {
  const rows = Object.entries(counts || {}).map(([k, v]) =>
    el("tr", { "data-key": k }, el("td", { class: "mono", text: k === "" ? '""' : k }), el("td", { class: "num", text: fmt(v) })));
  return el("section", { id }, el("h2", { text: title }),
    rows.length ? table([title.toLowerCase(), "#count"], rows) : el("p", { class: "muted", text: "none" }));
}

function recordLink(key, side, i, label) {
  const q = new URLSearchParams({ side: side || "location", key: JSON.stringify(key) });
  if (i !== null && i !== undefined) q.set("i", i);
  return el("a", { href: "#record?" + q.toString(), class: "record-link mono", text: label || key[1] });
}

// ------------------------------------------------------------------------------ status

async function pollStatus() {
  try {
    const s = await api("/api/status");
    state.status = s;
    document.getElementById("location").textContent = s.store.location +
      (s.store.against ? "  against  " + s.store.against : "");
    const scan = s.scan;
    const bar = document.getElementById("progress");
    if (scan && scan.state === "scanning") {
      bar.hidden = false;
      const share = scan.expected ? Math.min(1, scan.seen / scan.expected) : 0;
      document.getElementById("progress-bar").style.width = (share * 100).toFixed(1) + "%";
      document.getElementById("progress-text").textContent = "scanning: " + fmt(scan.seen) +
        (scan.expected ? " of " + fmt(scan.expected) : "") + " records read";
      setTimeout(pollStatus, 400);
      return;
    }
    bar.hidden = true;
    if (scan && scan.state === "failed") showError("the scan failed: " + scan.error);
    const wasReady = state.ready;
    state.ready = true;
    if (!wasReady) route();
    if (s.diff.state === "running") setTimeout(pollStatus, 800);
    else if (state.diffWasRunning && location.hash.startsWith("#runs")) route();
    state.diffWasRunning = s.diff.state === "running";
  } catch (err) {
    showError(err);
    setTimeout(pollStatus, 1500);
  }
}

function sampleNote(sample) {
  const note = document.getElementById("sample-note");
  note.hidden = !(sample && sample.sampled);
  if (sample && sample.sampled) {
    note.textContent = "The map and the search show a uniform sample of " + fmt(sample.size) + " of " +
      fmt(sample.records) + " records; the overview counts every record.";
  }
}

// ------------------------------------------------------------------------------ overview

async function viewOverview(view) {
  const o = await api("/api/overview");
  const r = o.inspect;
  sampleNote(o.sample);
  const unreadable = Object.values(r.unreadable || {}).reduce((a, b) => a + b, 0);
  const stats = [["records", r.records], ["with vector", r.with_vector], ["without vector", r.without_vector],
    ["with text", r.with_text], ["without text", r.without_text], ["unreadable", unreadable]];
  const sidecar = r.sidecar;
  put(view, 
    el("section", { id: "ov-summary" }, el("h2", { text: "Overview" }),
      el("p", { class: "muted mono", text: r.location + (o.store.connector ? "  (" + o.store.connector + ")" : "") }),
      stats.map(([label, value]) => el("span", { class: "stat" },
        el("b", { id: "ov-" + label.replace(/ /g, "-"), text: fmt(value) }), label)),
      el("p", {}, "created ", el("span", { id: "ov-created-from", class: "mono", text: r.created_from || "-" }),
        " to ", el("span", { id: "ov-created-to", class: "mono", text: r.created_to || "-" }),
        el("span", { class: "muted", text: "  scanned in " + num(o.scan_seconds, 1) + " s" +
          (o.checks.bytes !== null ? ", " + (o.checks.bytes / 1e6).toFixed(1) + " MB on disk" : "") })),
      el("p", { id: "ov-sidecar" }, sidecar ? ["sidecar: ",
        el("b", { class: sidecar.status.startsWith("ok") ? "ok" : "bad", text: sidecar.status }),
        sidecar.record_count !== undefined ? "  record count " + fmt(sidecar.record_count) +
          (sidecar.record_count_matches ? " (matches)" : " (does not match)") : "",
        sidecar.exported_at ? "  exported " + sidecar.exported_at : "",
        sidecar.imported_to ? "  imported to " + sidecar.imported_to : ""] :
        el("span", { class: "muted", text: "no sidecar for this kind of location" })),
      o.checks.read_checks.length ? el("p", { id: "ov-read-checks" }, "checked while scanned: ",
        o.checks.unverified ? [el("b", { class: "bad", text: o.checks.read_checks.join(", ") + ": FAILED" }),
          el("pre", { text: o.checks.unverified + "\nEverything below is the data as read, without the checks." })] :
          el("b", { class: "ok", text: o.checks.read_checks.join(", ") + ": ok" })) : null,
      o.checks.manifest ? el("p", { id: "ov-manifest" }, "pack manifest and hashes: ",
        el("b", { class: o.checks.manifest.ok ? "ok" : "bad", text: o.checks.manifest.ok ? "verified" : "problems" }),
        o.checks.manifest.problems.length ? el("pre", { text: o.checks.manifest.problems.join("\n") }) : null) : null),
    el("section", { id: "ov-histogram" }, el("h2", { text: "created_at" }), histogram(o.histogram)),
    el("div", { class: "grid" },
      countTable("Namespaces", r.namespaces, "ov-namespaces"),
      countTable("Models", r.models, "ov-models"),
      countTable("Dims", r.dims, "ov-dims"),
      countTable("Sources", r.sources, "ov-sources"),
      countTable("Unreadable", r.unreadable, "ov-unreadable")));
}

function histogram(h) {
  if (!h.bins.length) return el("p", { class: "muted", text: "no record has a created_at" });
  const canvas = el("canvas", { id: "hist-canvas", width: 900, height: 160 });
  const ctx = canvas.getContext("2d");
  const max = Math.max(...h.bins.map((b) => b.count));
  const w = canvas.width / h.bins.length;
  ctx.fillStyle = "#5b8fd6";
  h.bins.forEach((b, i) => {
    const height = max ? (b.count / max) * (canvas.height - 20) : 0;
    ctx.fillRect(i * w + 1, canvas.height - 16 - height, Math.max(1, w - 2), height);
  });
  ctx.fillStyle = "#667085";
  ctx.font = "11px sans-serif";
  ctx.fillText(h.bins[0].from, 2, canvas.height - 3);
  const last = h.bins[h.bins.length - 1].to;
  ctx.fillText(last, canvas.width - ctx.measureText(last).width - 2, canvas.height - 3);
  const tip = document.getElementById("tooltip");
  canvas.addEventListener("mousemove", (e) => {
    const rect = canvas.getBoundingClientRect();
    const b = h.bins[Math.floor(((e.clientX - rect.left) / rect.width) * h.bins.length)];
    if (!b) return;
    tip.hidden = false;
    tip.textContent = b.from + " to " + b.to + ": " + fmt(b.count) + " records";
    tip.style.left = e.clientX + 12 + "px";
    tip.style.top = e.clientY + 12 + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  return el("div", {}, canvas, el("p", { class: "muted", text: fmt(h.bins.reduce((a, b) => a + b.count, 0)) +
    " records with a created_at, in " + h.bins.length + " bins" }));
}

// ----------------------------------------------------------------------------------- map

async function viewMap(view, params) {
  const q = new URLSearchParams();
  for (const k of ["vector", "method", "colour"]) if (params.get(k) !== null) q.set(k, params.get(k));
  const m = await api("/api/map?" + q.toString());
  sampleNote(m.sample);
  if (!m.points) {
    put(view, el("section", {}, el("h2", { text: "Embedding map" }), el("p", { text: m.reason || "no vectors" })));
    return;
  }
  state.map = m;
  const select = (name, options, current) => el("select", { id: "map-" + name, onchange: (e) => {
    params.set(name, e.target.value);
    location.hash = "map?" + params.toString();
  } }, options.map((o) => el("option", { value: o, selected: o === current, text: o === "" ? "(default)" : o })));
  const canvas = el("canvas", { id: "map-canvas", width: 960, height: 640 });
  const legend = el("div", { class: "legend", id: "map-legend" }, m.colour.categories.map((c, i) =>
    el("span", {}, el("i", { class: "swatch-" + i }), c.label + " (" + fmt(c.count) + ")")));
  put(view, el("section", {}, el("h2", { text: "Embedding map" }),
    el("div", { class: "controls" },
      "vector ", select("vector", Object.keys(m.vectors), m.vector),
      " projection ", select("method", m.methods, m.method),
      " colour by ", select("colour", m.colour_keys, m.colour.key),
      el("span", { class: "muted", id: "map-count", text: fmt(m.points) + " points, " + m.dims + " dims" +
        (m.explained.length ? ", PCA axes explain " + m.explained.map((x) => (x * 100).toFixed(1) + "%").join(" + ") : "") +
        (m.left_out ? ", " + fmt(m.left_out) + " vectors of another size left out" : "") })),
    canvas, legend));
  legend.querySelectorAll("i").forEach((node, i) => { node.style.background = PALETTE[i % PALETTE.length]; });
  drawMap(canvas, m);
}

function drawMap(canvas, m) {
  const ctx = canvas.getContext("2d");
  const pad = 10, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  const n = m.points, xy = m.xy, codes = m.colour.codes;
  const sx = new Float32Array(n), sy = new Float32Array(n);
  const cell = 8, cols = Math.ceil(canvas.width / cell), grid = new Map();
  const byColour = PALETTE.map(() => []);
  for (let i = 0; i < n; i++) {
    sx[i] = pad + xy[2 * i] * w;
    sy[i] = pad + (1 - xy[2 * i + 1]) * h;
    byColour[codes[i] % PALETTE.length].push(i);
    const key = Math.floor(sy[i] / cell) * cols + Math.floor(sx[i] / cell);
    const list = grid.get(key);
    if (list) list.push(i); else grid.set(key, [i]);
  }
  ctx.globalAlpha = 0.75;
  byColour.forEach((list, c) => {
    ctx.fillStyle = PALETTE[c];
    for (const i of list) ctx.fillRect(sx[i] - 1.5, sy[i] - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
  const nearest = (e) => {
    const rect = canvas.getBoundingClientRect();
    const x = ((e.clientX - rect.left) / rect.width) * canvas.width;
    const y = ((e.clientY - rect.top) / rect.height) * canvas.height;
    let best = -1, bestD = 36;
    const cx = Math.floor(x / cell), cy = Math.floor(y / cell);
    for (let gy = cy - 1; gy <= cy + 1; gy++) for (let gx = cx - 1; gx <= cx + 1; gx++) {
      for (const i of grid.get(gy * cols + gx) || []) {
        const d = (sx[i] - x) ** 2 + (sy[i] - y) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      }
    }
    return best;
  };
  const tip = document.getElementById("tooltip");
  let pending = null;
  canvas.addEventListener("mousemove", (e) => {
    const p = nearest(e);
    if (p < 0) { tip.hidden = true; return; }
    const row = m.rows[p];
    tip.style.left = e.clientX + 12 + "px";
    tip.style.top = e.clientY + 12 + "px";
    const show = (pt) => {
      tip.hidden = false;
      tip.textContent = nsLabel(pt.key[0]) + " / " + pt.key[1] + "\n" + (pt.text || "(no text)");
    };
    if (state.points[row]) { show(state.points[row]); return; }
    clearTimeout(pending);
    pending = setTimeout(() => api("/api/point?i=" + row).then((pt) => { state.points[row] = pt; show(pt); }), 60);
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (e) => {
    const p = nearest(e);
    if (p >= 0) { tip.hidden = true; location.hash = "record?i=" + m.rows[p]; }
  });
  canvas.dataset.drawn = String(n);
}

// -------------------------------------------------------------------------------- search

async function viewSearch(view, params) {
  const status = state.status;
  const mode = params.get("mode") || "keyword";
  const form = el("form", { id: "search-form", class: "controls", onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const [k, v] of data.entries()) if (v !== "") next.set(k, v);
    if (params.get("i") && data.get("mode") === "record") next.set("i", params.get("i"));
    if (params.get("key") && data.get("mode") === "record") next.set("key", params.get("key"));
    location.hash = "search?" + next.toString();
  } },
  el("select", { name: "mode", id: "search-mode" }, [["keyword", "keywords"], ["text", "typed text (embedder)"],
    ["record", "nearest to a record"]].map(([v, t]) => el("option", { value: v, selected: v === mode, text: t }))),
  el("input", { type: "text", name: "q", id: "search-q", value: params.get("q") || "", placeholder: "words, or a text to embed" }),
  el("select", { name: "embedder", id: "search-embedder" }, el("option", { value: "", text: "embedder: auto" }),
    (status ? status.embedders : []).map((name) => el("option", { value: name, selected: name === params.get("embedder"), text: name }))),
  el("button", { type: "submit", id: "search-go", text: "Search" }));
  const results = el("div", { id: "search-results" });
  put(view, el("section", {}, el("h2", { text: "Search" + (status && status.pack ? " (vex search ranking: similarity, Elo, recency)" : "") }),
    form, results));
  if (!params.get("mode")) return;
  const q = new URLSearchParams(params);
  const r = await api("/api/search?" + q.toString());
  sampleNote(r.sample);
  const heads = ["#rank", "#score"].concat(r.pack ? ["#similarity", "#elo", "#recency"] : [], ["namespace", "id", "text"]);
  const rows = r.hits.map((h) => el("tr", { class: "hit" },
    el("td", { class: "num", text: h.rank }), el("td", { class: "num", text: Number(h.score).toPrecision(4) }),
    r.pack ? [el("td", { class: "num", text: num(h.similarity) }), el("td", { class: "num", text: num(h.elo, 1) }),
      el("td", { class: "num", text: num(h.recency) })] : [],
    el("td", { class: "mono", text: nsLabel(h.key[0]) }), el("td", {}, recordLink(h.key, "location", h.i)),
    el("td", { text: h.text })));
  put(results, el("p", { class: "muted", id: "search-count", text: r.hits.length + " hits" +
    (r.pack ? " over the whole pack" : r.sample.sampled ? " in the sample of " + fmt(r.sample.size) : " over every record") }),
  table(heads, rows, { id: "search-table" }));
}

// -------------------------------------------------------------------------------- record

async function viewRecord(view, params) {
  const r = await api("/api/record?" + params.toString());
  const f = r.fields;
  const kv = (k, v, cls) => el("tr", {}, el("th", { text: k }), el("td", { class: cls || "mono", text: v }));
  const stamp = (s) => (s ? s.iso + "  (" + s.ms + " ms)" : "null");
  const nearest = new URLSearchParams({ mode: "record", key: JSON.stringify(r.key) });
  if (r.i !== null) nearest.set("i", r.i);
  put(view, 
    el("section", { id: "record" }, el("h2", {}, "Record ", el("span", { class: "mono", id: "record-id", text: f.id })),
      el("p", { class: "muted", text: (r.side === "against" ? "in the --against location" : "in the location") +
        (r.in_sample ? ", in the sample" : ", read from the store") }),
      r.vectors.length ? el("p", {}, el("a", { href: "#search?" + nearest.toString(), id: "record-nearest", text: "nearest neighbours" })) : null,
      table(["field", "value"], [kv("id", f.id), kv("id_type", f.id_type), kv("namespace", f.namespace === null ? "null" : JSON.stringify(f.namespace)),
        kv("text", f.text === null ? "null" : f.text, "text"), kv("created_at", stamp(f.created_at)),
        kv("updated_at", stamp(f.updated_at)), kv("source_store", f.source_store === null ? "null" : f.source_store),
        kv("score", f.score === null ? "null" : f.score), kv("modality", f.modality === null ? "null" : f.modality)], { id: "record-fields" })),
    el("section", {}, el("h2", { text: "Metadata" + (r.metadata_is_null ? " (null)" : "") }),
      table(["key", "type", "value"], r.metadata.map((m) => el("tr", { "data-key": m.key },
        el("td", { class: "mono", text: m.key }), el("td", { class: "muted", text: m.type }), el("td", { class: "mono", text: m.value }))), { id: "record-metadata" })),
    el("section", {}, el("h2", { text: "Vectors" }),
      table(["name", "model", "#dims", "#norm", "#min", "#max", "#mean", "first values"], r.vectors.map((v) => el("tr", {},
        el("td", { class: "mono", text: v.name || "(default)" }), el("td", { class: "mono", text: v.model || "(none)" }),
        el("td", { class: "num", text: v.dims }), el("td", { class: "num", text: num(v.norm, 6) }),
        el("td", { class: "num", text: num(v.min) }), el("td", { class: "num", text: num(v.max) }),
        el("td", { class: "num", text: num(v.mean) }), el("td", { class: "mono", text: v.head.join(", ") + (v.dims > v.head.length ? ", ..." : "") }))), { id: "record-vectors" }),
      r.sparse.length ? table(["sparse", "model", "#nnz", "first (index, value)"], r.sparse.map((s) => el("tr", {},
        el("td", { class: "mono", text: s.name }), el("td", { class: "mono", text: s.model || "(none)" }), el("td", { class: "num", text: s.nnz }),
        el("td", { class: "mono", text: s.head.map((p) => p.join(":")).join(", ") })))) : null),
    r.extra.length ? el("section", {}, el("h2", { text: "Extra fields" }), table(["key", "type", "value"], r.extra.map((m) => el("tr", {},
      el("td", { class: "mono", text: m.key }), el("td", { class: "muted", text: m.type }), el("td", { class: "mono", text: m.value }))))) : null,
    el("section", { id: "record-lineage" }, el("h2", { text: "Lineage and runs" }),
      el("p", {}, "source_store: ", el("span", { class: "mono", text: r.lineage.source_store || "(none)" })),
      r.lineage.sidecar ? el("pre", { text: JSON.stringify(r.lineage.sidecar, null, 2) }) : null,
      r.lineage.runs.length ? table(["run", "role", "operation", "status", "finished"], r.lineage.runs.map((x) => el("tr", {},
        el("td", {}, el("a", { href: "#runs", text: "run " + x.run })), el("td", { text: x.role }), el("td", { text: x.operation }),
        el("td", { text: x.status }), el("td", { class: "mono", text: x.finished_at || "-" })))) :
        el("p", { class: "muted", text: "no receipt of this location names its namespace" }),
      r.rejected_in.length ? [el("h3", { text: "Refused in a run" }), table(["run", "#line", "reason", "detail"], r.rejected_in.map((x) => el("tr", {},
        el("td", { text: x.run }), el("td", { class: "num", text: x.line }), el("td", { text: x.reason }), el("td", { text: x.detail }))))] : null),
    el("section", {}, el("h2", { text: "As a .vmig.jsonl line" }), el("pre", { id: "record-line", text: r.line })));
}

// ---------------------------------------------------------------------------------- runs

async function viewRuns(view, params) {
  const r = await api("/api/runs");
  if (!r.runs.length) put(view, el("section", { id: "runs-none" }, el("h2", { text: "Runs" }),
    el("p", { class: "muted", text: "No receipt or rejects file beside this location (a run into it writes <location>.receipt.json and .rejects.jsonl)." })));
  for (const run of r.runs) put(view, await runSection(run, params));
  put(view, diffSection(r.diff));
}

async function runSection(run, params) {
  const rc = run.receipt;
  const section = el("section", { class: "run", id: "run-" + run.run }, el("h2", { text: "Run " + run.run + " (" + run.role + ")" }));
  if (run.error) put(section, el("p", { class: "bad", text: run.error }));
  if (rc) {
    const c = rc.counts;
    put(section, el("p", { class: "mono", text: (rc.source.location || rc.source.connector) + "  ->  " + (rc.target.location || rc.target.connector) }),
      el("p", {}, el("b", { class: rc.status.startsWith("completed") ? "ok" : "bad", text: rc.status }), "  " + rc.operation +
        "  started " + (rc.started_at || "-") + ", finished " + (rc.finished_at || "-") +
        ", " + num(rc.duration_s, 2) + " s" + (rc.records_per_s ? ", " + fmt(Math.round(rc.records_per_s)) + " records/s" : "")),
      rc.error ? el("p", { class: "bad", text: rc.error }) : null,
      table(["read", "filtered", "selected", "written", "skipped", "reembedded", "adapted"].map((x) => "#" + x),
        [el("tr", {}, [c.read, c.filtered, c.selected, c.written, Object.values(c.skipped).reduce((a, b) => a + b, 0),
          c.reembedded, c.adapted].map((v) => el("td", { class: "num", text: fmt(v) })))], { class: "run-counts" }),
      el("p", { class: "muted mono", text: "receipt: " + run.receipt_file }));
  }
  const reasons = Object.entries(run.rejects.by_reason);
  put(section, el("h3", { text: "Rejects: " + fmt(run.rejects.lines) + " lines" + (run.rejects_file ? "" : " (no rejects file)") }));
  if (!reasons.length) return section;
  put(section, table(["reason", "#records"], reasons.map(([k, v]) => el("tr", { "data-reason": k },
    el("td", {}, el("a", { href: "#runs?run=" + run.run + "&reason=" + encodeURIComponent(k), text: k })),
    el("td", { class: "num", text: fmt(v) }))), { class: "reject-reasons" }));
  const wanted = params.get("run") === String(run.run) ? params : new URLSearchParams();
  const q = new URLSearchParams({ run: run.run, offset: wanted.get("offset") || 0 });
  if (wanted.get("reason")) q.set("reason", wanted.get("reason"));
  const page = await api("/api/rejects?" + q.toString());
  put(section, el("p", { class: "muted", text: "rows " + (page.offset + 1) + "-" + (page.offset + page.rows.length) + " of " + fmt(page.total) +
    (wanted.get("reason") ? " with reason " + wanted.get("reason") : "") }),
  table(["#line", "reason", "detail", "namespace", "id", "record"], page.rows.map((x) => el("tr", { class: "reject-row" },
    el("td", { class: "num", text: x.line }), el("td", { text: x.reason }), el("td", { text: x.detail || "" }),
    el("td", { class: "mono", text: x.namespace === null || x.namespace === undefined ? "(none)" : x.namespace }),
    el("td", { class: "mono", text: x.id === null || x.id === undefined ? "-" : x.id }),
    el("td", {}, el("details", {}, el("summary", { text: "record" }), el("pre", { text: x.record || "null" })))))),
  page.offset + page.rows.length < page.total ? el("a", { href: "#runs?" + new URLSearchParams({ run: run.run, offset: page.offset + page.rows.length,
    ...(wanted.get("reason") ? { reason: wanted.get("reason") } : {}) }).toString(), text: "next rows" }) : null);
  return section;
}

function diffSection(d) {
  const section = el("section", { id: "diff" }, el("h2", { text: "Diff against --against" }));
  if (d.state === "none") return put(section, el("p", { class: "muted", text: "Start with --against OTHER to compare this location with another." }));
  if (d.state === "running") return put(section, el("p", { text: "verify is running..." }));
  if (d.state === "failed") return put(section, el("p", { class: "bad", text: d.error }));
  const check = d.report.checks.find((c) => c.check === "against");
  put(section, el("p", {}, el("b", { id: "diff-ok", class: check.ok ? "ok" : "bad", text: check.ok ? "identical" : "different" }),
    el("span", { class: "mono", text: "  " + d.report.target + "  against  " + check.source })),
  el("p", { class: "muted", id: "diff-checks", text: "vex verify: " + d.report.checks.map((c) => c.check + " " +
    (c.ok ? "ok" : "failed") + (c.status ? " (" + c.status + ")" : "")).join(", ") }),
  table(["matched", "normalised", "rounded", "missing", "changed", "extra", "source unreadable", "target unreadable"].map((x) => "#" + x),
    [el("tr", {}, [check.matched, check.normalised, check.rounded, check.missing, check.changed, check.extra, check.source_unreadable,
      check.target_unreadable].map((v, i) => el("td", { class: "num", id: "diff-" + ["matched", "normalised", "rounded", "missing", "changed", "extra", "su", "tu"][i], text: fmt(v) })))]));
  const ids = (title, list, side, total) => (list.length ? [el("h3", { text: title + " (" + fmt(total) + (total > list.length ? ", first " + list.length : "") + ")" }),
    el("p", { class: "id-list" }, list.map((id) => [el("a", { class: "mono", href: "#record?" + new URLSearchParams({ side, id }).toString(), text: id }), " "]))] : null);
  put(section, ids("Missing: in the --against location, not here", check.missing_ids, "against", check.missing),
    ids("Extra: here, not in the --against location", check.extra_ids, "location", check.extra));
  if (d.changes.length) {
    put(section, el("h3", { text: "Changed, field by field (left: --against, right: this location)" }));
    for (const c of d.changes) {
      put(section, el("h3", {}, recordLink(c.key, "location", null, nsLabel(c.key[0]) + " / " + c.key[1])),
        table(["field", "--against", "here", "note"], c.fields.map((x) => el("tr", { class: "diff-field" },
          el("td", { class: "mono", text: x.field }),
          el("td", { class: "mono diff-left", text: x.left === null ? "(absent)" : x.left + (x.left_type ? "  : " + x.left_type : "") }),
          el("td", { class: "mono diff-right", text: x.right === null ? "(absent)" : x.right + (x.right_type ? "  : " + x.right_type : "") }),
          el("td", { class: "muted", text: x.note || "" })))));
    }
  }
  return section;
}

// -------------------------------------------------------------------------------- routing

const VIEWS = { overview: viewOverview, map: viewMap, search: viewSearch, record: viewRecord, runs: viewRuns };

async function route() {
  const [name, query] = (location.hash.slice(1) || "overview").split("?");
  const viewName = VIEWS[name] ? name : "overview";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.id === "nav-" + viewName));
  const view = document.getElementById("view");
  view.replaceChildren();
  view.dataset.view = viewName;
  view.dataset.loaded = "false";
  showError(null);
  document.getElementById("tooltip").hidden = true;
  const runOnly = state.status && !state.status.scan;
  if (!state.ready && viewName !== "runs") { put(view, el("p", { class: "muted", text: "scanning..." })); return; }
  if (runOnly && viewName !== "runs") { location.hash = "runs"; return; }
  try {
    await VIEWS[viewName](view, new URLSearchParams(query || ""));
  } catch (err) {
    showError(err);
  }
  window.__loadedAt = performance.now();  // for bench/ui.py: when the view finished rendering
  view.dataset.loaded = "true";
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => { pollStatus(); });
