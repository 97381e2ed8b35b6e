// The tags page of SpeedData (tags.html).
"use strict";
SpeedData.header("tags");
const minuteAgo = new Date(Date.now() - 60000).toISOString().replace(/\.\d+Z$/, "Z");
document.getElementById("tag-start").value = minuteAgo;
document.getElementById("ex-start").value = minuteAgo;

async function download(url, name) {         // with a progress bar while it comes
  const bar = document.getElementById("ex-progress");
  const error = document.getElementById("ex-error");
  error.textContent = ""; bar.hidden = false; bar.removeAttribute("value");
  try {
    const r = await fetch(url, { headers: SpeedData.token ? { Authorization: `Bearer ${SpeedData.token}` } : {} });
    if (!r.ok) throw new Error((await r.json()).error);
    const total = Number(r.headers.get("Content-Length")) || 0;
    const reader = r.body.getReader();
    const parts = []; let got = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value); got += value.length;
      if (total) bar.value = got / total;
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob(parts, { type: "application/x-hdf5" }));
    a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
  } catch (e) { error.textContent = e.message; }
  bar.hidden = true;
}

let clustered = false;

async function archive(name) {
  const state = document.getElementById("archive-state");
  state.className = ""; state.textContent = `archiving ${name}…`;
  try {
    const m = await SpeedData.api("POST", "/api/v1/archives", { tag: name });
    const mb = m.channels.reduce((a, c) => a + c.bytes, 0) / 1e6;
    const n = m.channels.length;
    state.textContent = `archived ${name}: ${n} channel${n === 1 ? "" : "s"}, ${mb.toFixed(2)} MB`;
  } catch (e) { state.className = "error"; state.textContent = e.message; }
  refresh();
}

async function showArchives() {
  const info = await SpeedData.api("GET", "/api/v1/cluster");
  clustered = info.clustered;
  document.querySelectorAll(".cluster-only").forEach((el) => { el.hidden = !clustered; });
  if (!clustered) return;
  const { archives } = await SpeedData.api("GET", "/api/v1/archives");
  document.querySelector("#archives tbody").replaceChildren(...archives.map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.archive = m.tag.name;
    const mb = m.channels.reduce((a, c) => a + c.bytes, 0) / 1e6;
    [m.tag.name, SpeedData.formatNs(m.tag.start), SpeedData.formatNs(m.tag.end),
      m.channels.map((c) => c.channel).join(", "), `${mb.toFixed(2)} MB`, m.node].forEach((v, k) => {
      const td = document.createElement("td"); td.textContent = v;
      if (k === 4) td.className = "num";
      tr.appendChild(td);
    });
    return tr;
  }));
}

async function refresh() {
  await showArchives();
  const { tags } = await SpeedData.api("GET", "/api/v1/tags");
  const rows = tags.map((t) => {
    const tr = document.createElement("tr");
    tr.dataset.tag = t.name;
    for (const v of [t.name, SpeedData.formatNs(t.start), SpeedData.formatNs(t.end),
      t.channels ? t.channels.join(", ") : "all", t.note]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    const td = document.createElement("td");
    const get = document.createElement("button"); get.textContent = "HDF5"; get.className = "download";
    get.onclick = () => download(`/api/v1/pivot/export?tag=${encodeURIComponent(t.name)}`, `${t.name}.h5`);
    const del = document.createElement("button"); del.textContent = "delete";
    del.onclick = async () => { if (confirm(`Delete tag ${t.name}?`)) { await SpeedData.api("DELETE", `/api/v1/tags/${encodeURIComponent(t.name)}`); refresh(); } };
    td.append(get, " ", del);
    if (clustered) {
      const keep = document.createElement("button"); keep.textContent = "archive"; keep.className = "archive";
      keep.onclick = () => archive(t.name);
      td.append(" ", keep);
    }
    tr.appendChild(td);
    return tr;
  });
  SpeedData.fillTable("#tags tbody", rows, 6,
    "No tags yet: tag a range above, or choose one on a chart of the dashboard.");
  const { channels } = await SpeedData.api("GET", "/api/v1/channels");
  for (const id of ["ex-channels", "tag-channels"]) {
    const box = document.getElementById(id);
    if (box.children.length) continue;
    box.replaceChildren(...channels.map((c) => {
      const l = document.createElement("label");
      l.innerHTML = `<input type="checkbox" checked> `;
      l.firstChild.value = c.name; l.append(c.name, "  ");
      return l;
    }));
  }
}

document.getElementById("tag").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = document.getElementById("tag-error"); error.textContent = "";
  const boxes = [...document.querySelectorAll("#tag-channels input")];
  const chosen = boxes.filter((i) => i.checked).map((i) => i.value);
  try {
    const t = await SpeedData.api("POST", "/api/v1/tags", { name: document.getElementById("tag-name").value,
      start: document.getElementById("tag-start").value, duration: document.getElementById("tag-duration").value,
      note: document.getElementById("tag-note").value,
      channels: chosen.length === boxes.length ? [] : chosen });    // all: every channel, also later ones
    error.className = "ok";
    error.textContent = `tagged ${t.name}: ${SpeedData.formatNs(t.start)} to ${SpeedData.formatNs(t.end)}`;
    document.getElementById("tag-name").value = ""; document.getElementById("tag-note").value = "";
    refresh();
  } catch (err) { error.className = "error"; error.textContent = err.message; }
});
document.getElementById("export").addEventListener("submit", (e) => {
  e.preventDefault();
  const channels = [...document.querySelectorAll("#ex-channels input:checked")].map((i) => i.value);
  const q = new URLSearchParams({ start: document.getElementById("ex-start").value,
    duration: document.getElementById("ex-duration").value, channels: channels.join(",") });
  const signals = document.getElementById("ex-signals").value.trim();
  if (signals) q.set("signals", signals);
  download(`/api/v1/pivot/export?${q}`, "speeddata-export.h5");
});
refresh();
