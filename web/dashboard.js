// The dashboard page of SpeedData (index.html).
"use strict";
SpeedData.header("dashboard");
const NUMERIC = ["double", "float", "long", "int", "boolean"];   // measurements first
const rank = (s) => (NUMERIC.includes(s.type) ? NUMERIC.indexOf(s.type) : NUMERIC.length);

let clustered = false;

function row(c) {
  const s = c.stats || {};
  const rejects = Object.values(s.rejects || {}).reduce((a, b) => a + b, 0);
  const tr = document.createElement("tr");
  tr.dataset.channel = c.name;
  let status = c.status === "unreachable" && c.unreachable_since
    ? `unreachable since ${SpeedData.formatNs(c.unreachable_since).slice(11, 19)}` : c.status;
  if (s.error) status += ` (${s.error.startsWith("disk full") ? "disk full" : "not storing"})`;
  const notStored = Object.entries(s.not_stored || {}).filter(([, n]) => n)
    .map(([why, n]) => `${n} (${why.replace("_", " ")})`).join(", ") || (s.dropped_records ?? 0);
  const cells = [c.name, status, (s.records_per_s || 0).toFixed(0), s.records ?? 0, rejects,
    s.kernel_drops ?? 0, notStored, s.restarts ?? 0, SpeedData.duration(s.horizon_s || 0),
    `${((s.bytes || 0) / 1e6).toFixed(2)} MB`];
  if (clustered) cells.splice(1, 0, c.node);
  const statusAt = clustered ? 2 : 1;
  cells.forEach((v, k) => {
    const td = document.createElement("td");
    td.textContent = v;
    if (k > statusAt) td.className = "num";
    if (k === statusAt) {
      td.className = s.error ? "status-failed" : `status-${c.status}`;
      if (s.error) td.title = s.error;
    }
    tr.appendChild(td);
  });
  return tr;
}

async function showCluster() {
  const info = await SpeedData.api("GET", "/api/v1/cluster");
  clustered = info.clustered;
  document.getElementById("cluster").hidden = !clustered;
  document.querySelectorAll(".cluster-only").forEach((el) => { el.hidden = !clustered; });
  if (!clustered) return;
  const el = document.getElementById("cluster-state");
  const nodes = info.nodes.map((n) => `${n.name}${n.reachable ? "" : " (unreachable)"}`).join(", ");
  el.textContent = info.connected
    ? `This is node ${info.node}. Nodes: ${nodes || "none heard yet"}.`
    : `This is node ${info.node}. The cluster cannot be reached: ${info.problem}. ` +
      "Its own channels are stored as usual.";
  el.className = info.connected ? "" : "status-failed";
  if (info.retention_paused) el.textContent += ` Retention is paused: ${info.retention_paused}.`;
}

async function refresh() {
  await showCluster();
  const { channels } = await SpeedData.api("GET", "/api/v1/channels");
  const details = await Promise.all(channels.map((c) => SpeedData.api("GET", `/api/v1/channels/${encodeURIComponent(c.name)}`)));
  const body = document.querySelector("#channels tbody");
  body.replaceChildren(...details.map(row));
  const charts = document.getElementById("charts");
  for (const c of details) {
    if (["stored", "unreachable"].includes(c.status) || document.getElementById(`chart-${c.name}`)) continue;
    // every signal: the chart draws the numbers (measurements first) and names the rest
    const signals = [...c.signals].sort((a, b) => rank(a) - rank(b));
    if (!signals.length) continue;
    const card = document.createElement("div");
    card.className = "card";
    card.id = `chart-${c.name}`;
    card.innerHTML = `<h2></h2><canvas class="stripchart" data-window="60"></canvas>`;
    card.querySelector("h2").textContent = c.name;
    card.querySelector("canvas").dataset.signals = signals.map((s) => `${c.name}.${s.name}`).join(",");
    charts.appendChild(card);
  }
  SpeedData.start(charts);
}
refresh();
setInterval(refresh, 2000);
