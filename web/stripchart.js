// SpeedData stripcharts: live and historical telemetry on a canvas, no build step.
//
//   <canvas class="stripchart" data-signals="example.sine_wave,example.ramp"
//           data-window="60" data-height="300" data-ymin="-1" data-ymax="1"
//           data-colors="#f00,#0f0" data-theme="auto"></canvas>
//
// Signals are "channel.signal". Live data comes over /ws/live as binary frames of a
// min/max envelope per pixel column (the server thins it, so a one-sample spike is still
// drawn); history at any zoom comes from /api/v1/channels/NAME/overview, which the store
// answers from block summaries. Wheel or pinch zooms (10 ms to 24 h), dragging pans, and
// the Live button (or a double click) returns to live.
"use strict";

(function () {
  const PALETTES = {
    dark: ["#ffd400", "#00e5ff", "#ff3df2", "#39ff14", "#ff9f1a", "#ff6b6b"],
    light: ["#1f4fd6", "#d62728", "#2ca02c", "#ff7f0e", "#7b3fb0", "#138d8d"],
  };
  const THEME = {
    dark: { bg: "#11151c", grid: "#2a313d", text: "#c9d1d9", axis: "#596273" },
    light: { bg: "#ffffff", grid: "#e5e8ee", text: "#24292f", axis: "#8c959f" },
  };
  const MIN_SPAN = 10;                 // ms
  const MAX_SPAN = 24 * 3600 * 1000;   // ms
  const token = new URLSearchParams(location.search).get("token") || "";

  function themeOf(canvas) {
    const asked = canvas.dataset.theme || "auto";
    const page = document.documentElement.dataset.theme;
    if (asked !== "auto") return asked;
    if (page === "dark" || page === "light") return page;
    return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  // A growing series of envelope buckets: time (ms), min and max per signal.
  class Series {
    constructor(names) { this.names = names; this.clear(); }
    clear() {
      this.t = [];
      this.lo = this.names.map(() => []);
      this.hi = this.names.map(() => []);
    }
    push(t, lo, hi) {                  // lo/hi: arrays per signal
      this.t.push(t);
      for (let k = 0; k < this.names.length; k++) {
        this.lo[k].push(lo[k]);
        this.hi[k].push(hi[k]);
      }
    }
    dropBefore(t0) {
      let n = 0;
      while (n < this.t.length && this.t[n] < t0) n++;
      if (n === 0) return;
      this.t.splice(0, n);
      for (const a of this.lo.concat(this.hi)) a.splice(0, n);
    }
    last() { return this.t.length ? this.t[this.t.length - 1] : -Infinity; }
  }

  function parseFrame(buf) {
    const view = new DataView(buf);
    const n = view.getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    let offset = 4 + n + ((8 - ((4 + n) % 8)) % 8);
    const rows = header.rows;
    const time = new Float64Array(buf, offset, rows);
    offset += rows * 8;
    const columns = {};
    for (const name of header.columns) {
      columns[name] = new Float64Array(buf, offset, rows);
      offset += rows * 8;
    }
    return { header, time, columns };
  }

  class Stripchart {
    constructor(canvas) {
      this.canvas = canvas;
      this.signals = (canvas.dataset.signals || "").split(",").map((s) => s.trim())
        .filter(Boolean).map((s) => {
          const dot = s.indexOf(".");
          return { channel: s.slice(0, dot), name: s.slice(dot + 1), label: s };
        });
      this.span = 1000 * parseFloat(canvas.dataset.window || "60");
      this.height = parseInt(canvas.dataset.height || "300", 10);
      this.ymin = canvas.dataset.ymin !== undefined ? parseFloat(canvas.dataset.ymin) : null;
      this.ymax = canvas.dataset.ymax !== undefined ? parseFloat(canvas.dataset.ymax) : null;
      this.colors = canvas.dataset.colors ? canvas.dataset.colors.split(",") : null;
      this.live = true;
      this.end = Date.now();           // right edge of the view, ms
      this.series = new Series(this.signals.map((s) => s.label));   // live buffer
      this.history = null;             // a Series for a paused view
      this.latest = this.signals.map(() => null);
      this.sockets = {};
      this.frames = 0;                 // live frames received (tests and the status line)
      this.lastFrameAt = 0;
      this.frameTimes = [];            // requestAnimationFrame timestamps
      this.drawTimes = [];             // ms each frame took to draw
      this.buildLegend();
      this.resize();
      this.bind();
      this.fill().then(() => this.connect());
      requestAnimationFrame((t) => this.draw(t));
    }

    get channels() { return [...new Set(this.signals.map((s) => s.channel))]; }

    color(k) {
      const palette = this.colors || PALETTES[themeOf(this.canvas)];
      return palette[k % palette.length];
    }

    buildLegend() {
      const legend = document.createElement("div");
      legend.className = "stripchart-legend";
      this.legendItems = this.signals.map((s, k) => {
        const item = document.createElement("span");
        item.className = "item";
        item.innerHTML = `<i class="swatch"></i><span class="name"></span> <b class="value">–</b>`;
        item.querySelector(".name").textContent = s.label;
        legend.appendChild(item);
        return item;
      });
      const tag = document.createElement("button");
      tag.className = "tag-button";
      tag.textContent = "Tag view";
      tag.title = "keep the time range on screen through retention, under a name";
      tag.addEventListener("click", () => this.tagView());
      legend.appendChild(tag);
      const live = document.createElement("button");
      live.className = "live-button";
      live.textContent = "Live";
      live.title = "back to live (or double-click the chart)";
      live.addEventListener("click", () => this.goLive());
      legend.appendChild(live);
      this.liveButton = live;
      this.status = document.createElement("span");
      this.status.className = "chart-status";
      legend.appendChild(this.status);
      this.canvas.insertAdjacentElement("afterend", legend);
    }

    resize() {
      const ratio = window.devicePixelRatio || 1;
      const width = this.canvas.clientWidth || this.canvas.parentElement.clientWidth || 800;
      this.canvas.style.height = `${this.height}px`;
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(this.height * ratio);
      this.ratio = ratio;
      this.width = width;
    }

    plotWidth() { return Math.max(10, this.width - 60); }

    // ---- data -----------------------------------------------------------------------------

    async overview(start, end, buckets) {
      const out = new Series(this.signals.map((s) => s.label));
      const byChannel = {};
      for (const s of this.signals) (byChannel[s.channel] = byChannel[s.channel] || []).push(s);
      const answers = await Promise.all(Object.entries(byChannel).map(async ([ch, sigs]) => {
        const q = new URLSearchParams({
          start: String(BigInt(Math.floor(start)) * 1000000n),
          end: String(BigInt(Math.ceil(end)) * 1000000n), buckets: String(buckets),
          signals: sigs.map((s) => s.name).join(","),
        });
        const r = await fetch(`/api/v1/channels/${encodeURIComponent(ch)}/overview?${q}`);
        if (!r.ok) throw new Error((await r.json()).error);
        return [ch, await r.json()];
      }));
      const got = Object.fromEntries(answers);
      const times = got[this.signals[0].channel].time;
      for (let i = 0; i < times.length; i++) {
        const lo = [], hi = [];
        for (const s of this.signals) {
          const o = got[s.channel].signals[s.name] || {};
          lo.push(o.min ? o.min[i] : null);
          hi.push(o.max ? o.max[i] : null);
        }
        out.push(times[i], lo, hi);
      }
      return out;
    }

    async fill() {                     // the whole window from the store, at once
      const now = Date.now();
      try {
        const got = await this.overview(now - this.span, now + 1, this.plotWidth());
        const first = this.series.t.length ? this.series.t[0] : Infinity;
        for (let i = 0; i < got.t.length; i++) {
          if (got.t[i] >= first) break;
          if (got.lo.every((a) => a[i] === null)) continue;
          this.insertBefore(got, i);
        }
        for (let k = 0; k < this.signals.length; k++) {    // latest values, until live ones
          const hi = this.series.hi[k];
          for (let i = hi.length - 1; this.latest[k] === null && i >= 0; i--) {
            if (hi[i] !== null) this.latest[k] = hi[i];
          }
        }
        this.setStatus("");
      } catch (e) {
        this.setStatus(`history: ${e.message}`);
      }
    }

    insertBefore(got, i) {             // keep the live buffer in time order
      const at = this.series.t.findIndex((t) => t > got.t[i]);
      const pos = at < 0 ? this.series.t.length : at;
      this.series.t.splice(pos, 0, got.t[i]);
      for (let k = 0; k < this.signals.length; k++) {
        this.series.lo[k].splice(pos, 0, got.lo[k][i]);
        this.series.hi[k].splice(pos, 0, got.hi[k][i]);
      }
    }

    connect() {
      for (const channel of this.channels) this.open(channel, 0);
    }

    open(channel, tries) {
      const names = this.signals.filter((s) => s.channel === channel).map((s) => s.name);
      const q = new URLSearchParams({ channel, signals: names.join(","),
        window: String(this.span / 1000), width: String(this.plotWidth()) });
      if (token) q.set("token", token);
      const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live?${q}`);
      ws.binaryType = "arraybuffer";
      this.sockets[channel] = ws;
      ws.onopen = () => { tries = 0; this.setStatus(""); };
      ws.onmessage = (event) => this.onFrame(channel, parseFrame(event.data));
      ws.onclose = () => {
        if (this.closed) return;
        this.setStatus("reconnecting…");
        const delay = Math.min(5000, 250 * 2 ** tries);
        setTimeout(async () => { await this.fill(); this.open(channel, tries + 1); }, delay);
      };
    }

    onFrame(channel, { time, columns }) {
      this.frames++;
      this.lastFrameAt = performance.now();
      const index = this.signals.map((s) => (s.channel === channel ? s.name : null));
      for (let i = 0; i < time.length; i++) {
        if (time[i] <= this.series.last() && this.channels.length === 1) continue;
        const lo = [], hi = [];
        for (let k = 0; k < index.length; k++) {
          const name = index[k];
          const a = name && columns[`${name}:min`];
          const b = name && columns[`${name}:max`];
          lo.push(a ? (Number.isNaN(a[i]) ? null : a[i]) : null);
          hi.push(b ? (Number.isNaN(b[i]) ? null : b[i]) : null);
          if (b && !Number.isNaN(b[i])) this.latest[k] = b[i];
        }
        this.series.push(time[i], lo, hi);
      }
      this.series.dropBefore(Date.now() - Math.max(this.span, 60000) * 2);
    }

    // ---- interaction ----------------------------------------------------------------------

    bind() {
      const c = this.canvas;
      c.addEventListener("wheel", (e) => {
        e.preventDefault();
        this.zoom(e.deltaY > 0 ? 1.25 : 0.8, e.offsetX);
      }, { passive: false });
      const pointers = new Map();
      let drag = null, pinch = null;
      c.addEventListener("pointerdown", (e) => {
        c.setPointerCapture(e.pointerId);
        pointers.set(e.pointerId, e.offsetX);
        if (pointers.size === 1) drag = { x: e.offsetX, end: this.end };
        if (pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          pinch = { d: Math.abs(a - b) || 1, span: this.span };
          drag = null;
        }
      });
      c.addEventListener("pointermove", (e) => {
        if (!pointers.has(e.pointerId)) return;
        pointers.set(e.pointerId, e.offsetX);
        if (pinch && pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          this.setView(this.end, pinch.span * pinch.d / (Math.abs(a - b) || 1));
        } else if (drag && Math.abs(e.offsetX - drag.x) > 2) {
          this.setView(drag.end - (e.offsetX - drag.x) * this.span / this.plotWidth(), this.span);
        }
      });
      const up = (e) => { pointers.delete(e.pointerId); if (pointers.size < 2) pinch = null;
        if (!pointers.size) drag = null; };
      c.addEventListener("pointerup", up);
      c.addEventListener("pointercancel", up);
      c.addEventListener("dblclick", () => this.goLive());
      window.addEventListener("resize", () => this.resize());
    }

    zoom(factor, x) {
      const w = this.plotWidth();
      const at = this.end - this.span + (Math.max(0, x - 50) / w) * this.span;
      const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, this.span * factor));
      this.setView(at + (this.end - at) * span / this.span, span);
    }

    setView(end, span) {             // pauses; history for the view comes from the store
      this.live = false;
      this.span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, span));
      this.end = end;
      this.liveButton.classList.add("paused");
      clearTimeout(this.fetchTimer);
      this.fetchTimer = setTimeout(() => this.fetchHistory(), 80);
    }

    async fetchHistory() {
      const end = this.end, span = this.span;
      const started = performance.now();
      try {
        const got = await this.overview(end - span, end, this.plotWidth());
        if (end === this.end && span === this.span && !this.live) {
          this.history = got;
          this.historyMs = performance.now() - started;
          this.setStatus("");
        }
      } catch (e) {
        this.setStatus(`history: ${e.message}`);
      }
    }

    goLive() {
      this.live = true;
      this.history = null;
      this.span = 1000 * parseFloat(this.canvas.dataset.window || "60");
      this.liveButton.classList.remove("paused");
    }

    async tagView() {                  // the range on screen, as a tag
      const end = this.end, start = end - this.span;
      const name = prompt("Tag the range on screen as:", `view-${new Date(start).toISOString().slice(0, 19)}`);
      if (!name) return;
      const headers = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const r = await fetch("/api/v1/tags", { method: "POST", headers, body: JSON.stringify({
        name, start: Math.floor(start) * 1e6, end: Math.ceil(end) * 1e6,
        channels: this.channels, note: `tagged from a chart of ${this.signals.map((s) => s.label).join(", ")}` }) });
      const answer = await r.json();
      this.setStatus(r.ok ? `tagged ${name}` : answer.error);
    }

    setStatus(text) { this.status.textContent = text; }

    // ---- drawing --------------------------------------------------------------------------

    draw(stamp) {
      const began = performance.now();
      this.frameTimes.push(stamp);
      if (this.frameTimes.length > 2000) this.frameTimes.splice(0, 1000);
      if (this.live) this.end = Date.now();
      const ctx = this.canvas.getContext("2d");
      const theme = THEME[themeOf(this.canvas)];
      ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
      ctx.fillStyle = theme.bg;
      ctx.fillRect(0, 0, this.width, this.height);
      const data = this.live || !this.history ? this.series : this.history;
      const left = 50, top = 8, w = this.plotWidth(), h = this.height - 44;
      const t0 = this.end - this.span;
      let lo = this.ymin, hi = this.ymax;
      if (lo === null || hi === null) {
        let a = Infinity, b = -Infinity;
        for (let i = 0; i < data.t.length; i++) {
          if (data.t[i] < t0 || data.t[i] > this.end) continue;
          for (let k = 0; k < this.signals.length; k++) {
            const x = data.lo[k][i], y = data.hi[k][i];
            if (x !== null && x < a) a = x;
            if (y !== null && y > b) b = y;
          }
        }
        if (a === Infinity) { a = -1; b = 1; }
        if (a === b) { a -= 1; b += 1; }
        const pad = (b - a) * 0.05;
        if (lo === null) lo = a - pad;
        if (hi === null) hi = b + pad;
      }
      const X = (t) => left + ((t - t0) / this.span) * w;
      const Y = (v) => top + h - ((v - lo) / (hi - lo)) * h;
      this.drawAxes(ctx, theme, left, top, w, h, t0, lo, hi, Y);
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, w, h);
      ctx.clip();
      for (let k = 0; k < this.signals.length; k++) {
        ctx.strokeStyle = this.color(k);
        ctx.lineWidth = 1.25;
        ctx.beginPath();
        let pen = false;
        for (let i = 0; i < data.t.length; i++) {
          const t = data.t[i];
          if (t < t0 - this.span / w * 2 || t > this.end + this.span / w * 2) { continue; }
          const a = data.lo[k][i], b = data.hi[k][i];
          if (a === null || b === null) { pen = false; continue; }
          const x = X(t);
          if (pen) ctx.lineTo(x, Y(a)); else ctx.moveTo(x, Y(a));
          ctx.lineTo(x, Y(b));          // the envelope: every bucket's min to max
          pen = true;
        }
        ctx.stroke();
      }
      ctx.restore();
      for (let k = 0; k < this.signals.length; k++) {
        const item = this.legendItems[k];
        item.querySelector(".swatch").style.background = this.color(k);
        const v = this.latest[k];
        item.querySelector(".value").textContent = v === null ? "–" : formatValue(v);
      }
      this.drawTimes.push(performance.now() - began);
      if (this.drawTimes.length > 2000) this.drawTimes.splice(0, 1000);
      if (!this.closed) requestAnimationFrame((t) => this.draw(t));
    }

    drawAxes(ctx, theme, left, top, w, h, t0, lo, hi, Y) {
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = theme.text;
      ctx.strokeStyle = theme.grid;
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const v of ticks(lo, hi, Math.max(2, Math.floor(h / 50)))) {
        const y = Math.round(Y(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + w, y); ctx.stroke();
        ctx.fillText(formatValue(v), left - 4, y);
      }
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const step = timeStep(this.span / Math.max(1, Math.floor(w / 140)));
      for (let t = Math.ceil(t0 / step) * step; t <= this.end; t += step) {
        const x = Math.round(left + ((t - t0) / this.span) * w) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
        const d = new Date(t);
        ctx.fillText(timeLabel(d, step, false), x, top + h + 4);
        ctx.fillStyle = theme.axis;
        ctx.fillText(`${timeLabel(d, step, true)} UTC`, x, top + h + 18);
        ctx.fillStyle = theme.text;
      }
      ctx.strokeStyle = theme.axis;
      ctx.strokeRect(left + 0.5, top + 0.5, w, h);
    }

    close() {
      this.closed = true;
      for (const ws of Object.values(this.sockets)) ws.close();
    }
  }

  function ticks(lo, hi, n) {
    const raw = (hi - lo) / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(Math.abs(v) < step / 1e6 ? 0 : v);
    return out;
  }

  function timeStep(raw) {
    const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000,
      60000, 120000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 10800000, 21600000,
      43200000, 86400000];
    return steps.find((s) => s >= raw) || 86400000;
  }

  function pad(n, w = 2) { return String(n).padStart(w, "0"); }

  function timeLabel(d, step, utc) {
    const [H, M, S, ms] = utc
      ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
      : [d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
    const base = `${pad(H)}:${pad(M)}`;
    if (step >= 60000) return base;
    if (step >= 1000) return `${base}:${pad(S)}`;
    return `${base}:${pad(S)}.${pad(ms, 3)}`;
  }

  function formatValue(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  const charts = [];
  function start(root = document) {
    for (const canvas of root.querySelectorAll("canvas.stripchart")) {
      if (!canvas.stripchart) {
        canvas.stripchart = new Stripchart(canvas);
        charts.push(canvas.stripchart);
      }
    }
  }
  window.SpeedData = Object.assign(window.SpeedData || {}, { Stripchart, charts, start, parseFrame });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => start());
  else start();
})();
