// The channels page of SpeedData (channels.html).
"use strict";
SpeedData.header("channels");
const schemaBox = document.getElementById("schema");
const check = document.getElementById("schema-check");

async function checkSchema() {
  const text = schemaBox.value.trim();
  if (!text) { check.textContent = ""; return false; }
  try { JSON.parse(text); } catch (e) { check.className = "error"; check.textContent = `not JSON: ${e.message}`; return false; }
  try {
    const r = await SpeedData.api("POST", "/api/v1/schemas/check", { schema: text });
    check.className = "help";
    check.textContent = `ok: ${r.signals.map((s) => `${s.name} (${s.type})`).join(", ")}`;
    return true;
  } catch (e) { check.className = "error"; check.textContent = e.message; return false; }
}
let timer = null;
schemaBox.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(checkSchema, 250); });
document.getElementById("schema-file").addEventListener("change", async (e) => {
  if (e.target.files[0]) { schemaBox.value = await e.target.files[0].text(); checkSchema(); }
});

// the port is typed (a device may be fixed on one); the free ones are suggestions and the
// check, as typed
const portBox = document.getElementById("port");
const portCheck = document.getElementById("port-check");
let free = new Set();
let used = {};
async function ports() {
  const { ports } = await SpeedData.api("GET", "/api/v1/ports/available?limit=0");
  free = new Set(ports);
  document.getElementById("free-ports").replaceChildren(...ports.slice(0, 200).map((p) => new Option(p)));
  if (!portBox.value && ports.length) portBox.value = ports[0];
  checkPort();
}
function checkPort() {
  const p = Number(portBox.value);
  const ok = Number.isInteger(p) && free.has(p);
  portCheck.className = ok ? "help" : "error";
  portCheck.textContent = !portBox.value ? "" : !Number.isInteger(p) || p < 26000 || p > 27000
    ? "channel ports are 26000 to 27000" : ok ? "free"
    : used[p] ? `taken by channel ${used[p]}` : "held by another program on this host";
  return ok;
}
portBox.addEventListener("input", checkPort);
const decimation = document.getElementById("decimation");
decimation.addEventListener("change", () => {
  document.getElementById("decimation-n").disabled = decimation.value === "none";
});

// the first datagrams rejected for each reason: sender, length and the first bytes
function rejected(s) {
  const box = document.createElement("div");
  const entries = Object.entries(s.rejects || {}).filter(([, n]) => n);
  if (!entries.length) { box.textContent = "none"; return box; }
  for (const [why, n] of entries) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `${why}: ${n}`;
    details.appendChild(summary);
    for (const [sender, length, hex] of (s.bad_datagrams || {})[why] || []) {
      const line = document.createElement("div");
      line.className = "datagram";
      line.textContent = `from ${sender}, ${length} bytes: `;
      const code = document.createElement("code");
      code.textContent = (hex.match(/../g) || []).join(" ") + (length * 2 > hex.length ? " …" : "");
      line.appendChild(code);
      details.appendChild(line);
    }
    box.appendChild(details);
  }
  return box;
}

let shownSchema = null;
async function refresh() {
  if (shownSchema) return;                  // a schema is being read: the table holds still
  const { channels } = await SpeedData.api("GET", "/api/v1/channels");
  used = {};
  const rows = await Promise.all(channels.map(async (c) => {
    const d = await SpeedData.api("GET", `/api/v1/channels/${encodeURIComponent(c.name)}`);
    const s = d.stats || {};
    const tr = document.createElement("tr");
    tr.dataset.channel = c.name;
    if (c.port) used[c.port] = c.name;
    for (const [v, cls] of [[c.name, ""], [c.port || "–", "num"], [c.status, `status-${c.status}`],
      [(s.records_per_s || 0).toFixed(0), "num"], [s.records ?? s.stored_records ?? 0, "num"]]) {
      const td = document.createElement("td"); td.textContent = v; td.className = cls; tr.appendChild(td);
    }
    const bad = document.createElement("td");
    bad.className = "rejected";
    bad.appendChild(rejected(s));
    tr.appendChild(bad);
    const td = document.createElement("td");
    const view = document.createElement("button"); view.textContent = "schema";
    view.className = "schema";
    view.onclick = async () => {            // the schema opens in a row under its channel
      const open = tr.nextElementSibling && tr.nextElementSibling.classList.contains("schema-row");
      if (open) { tr.nextElementSibling.remove(); shownSchema = null; return; }
      const r = await fetch(`/api/v1/channels/${encodeURIComponent(c.name)}/schema`);
      const row = document.createElement("tr");
      row.className = "schema-row";
      const cell = document.createElement("td");
      cell.colSpan = 7;
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(await r.json(), null, 2);
      cell.appendChild(pre);
      row.appendChild(cell);
      tr.after(row);
      shownSchema = c.name;
    };
    td.appendChild(view);
    if (c.status !== "stored") {
      const remove = document.createElement("button"); remove.textContent = "remove";
      remove.className = "remove";
      remove.onclick = async () => {
        if (!confirm(`Remove channel ${c.name}? Its worker stops; its stored data stays.`)) return;
        await SpeedData.api("DELETE", `/api/v1/channels/${encodeURIComponent(c.name)}`);
        refresh(); ports();
      };
      td.appendChild(remove);
    }
    tr.appendChild(td);
    return tr;
  }));
  SpeedData.fillTable("#channels tbody", rows, 7, "No channels yet: register one below.");
  checkPort();
}

document.getElementById("register").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = document.getElementById("register-error");
  error.textContent = "";
  const kind = decimation.value;
  const n = document.getElementById("decimation-n").value || "1";
  try {
    const made = await SpeedData.api("POST", "/api/v1/channels", {
      name: document.getElementById("name").value, port: Number(portBox.value),
      schema: schemaBox.value, config: { decimation: kind === "none" ? "none" : `${kind}:${n}` } });
    error.className = "ok";
    error.textContent = `registered ${made.name} on UDP port ${made.port}`;
    document.getElementById("name").value = "";
    schemaBox.value = ""; check.textContent = ""; portBox.value = "";
    refresh(); ports();
  } catch (err) { error.className = "error"; error.textContent = err.message; }
});
ports(); refresh(); setInterval(refresh, 2000);
