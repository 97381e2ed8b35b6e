// What every SpeedData page shares: the header, the theme switch, JSON calls.
"use strict";
(function () {
  const saved = localStorage.getItem("speeddata-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  const token = new URLSearchParams(location.search).get("token") || "";

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
    if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
    return data;
  }

  function header(here) {
    const el = document.createElement("header");
    const q = token ? `?token=${encodeURIComponent(token)}` : "";
    el.innerHTML = `<span class="brand">SpeedData</span><nav>
      <a href="/${q}" data-page="dashboard">Dashboard</a>
      <a href="/channels${q}" data-page="channels">Channels</a>
      <a href="/tags${q}" data-page="tags">Tags &amp; export</a></nav>
      <span class="spacer"></span>
      <button id="theme" title="switch between dark and light">Theme</button>`;
    el.querySelector(`[data-page="${here}"]`).classList.add("here");
    el.querySelector("#theme").addEventListener("click", () => {
      const dark = getComputedStyle(document.documentElement).getPropertyValue("--bg").trim() === "#0d1117";
      const next = dark ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      localStorage.setItem("speeddata-theme", next);
    });
    document.body.prepend(el);
  }

  function formatNs(ns) {
    return ns === null || ns === undefined ? "–" : new Date(Number(BigInt(ns) / 1000000n)).toISOString();
  }

  function duration(s) {
    if (!s) return "0 s";
    if (s < 120) return `${s.toFixed(1)} s`;
    if (s < 7200) return `${(s / 60).toFixed(1)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  // a table's body: its rows, or one line that says it is empty and what to do
  function fillTable(selector, rows, columns, empty) {
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = columns;
      td.textContent = empty;
      tr.appendChild(td);
      rows = [tr];
    }
    document.querySelector(selector).replaceChildren(...rows);
  }

  window.SpeedData = Object.assign(window.SpeedData || {}, { api, header, formatNs, duration, token,
    fillTable });
})();
