// SpeedData stripcharts: live and historical telemetry on a canvas, no build step.
//
//   <canvas class="stripchart" data-signals="example.sine_wave,example.ramp"
//           data-window="60" data-height="300" data-ymin="-1" data-ymax="1"
//           data-colors="#f00,#0f0" data-theme="auto" data-layout="lanes" data-sync="page">
//
// Signals are "channel.signal". Each unit gets a lane of its own, stacked on one time axis
// with its own y scale (a signal without a unit gets its own lane; data-layout="overlay"
// draws them all on one axis; data-ymin/ymax pin the scale). Live data comes over /ws/live
// as binary frames of a min/max envelope per pixel column (the server thins it, so a
// one-sample spike is still drawn); history at any zoom comes from
// /api/v1/channels/NAME/overview, which the store answers from block summaries.
//
// The live feed opens first and the history is filled up to its first frame, so the two
// meet without a seam whatever either's delay (and again after a reconnect). Wheel or pinch
// zooms (10 ms to 24 h), dragging pans, shift-drag (or Select) chooses a range to tag or
// export, the Live button (or a double click) returns to live. Charts of one sync group
// (data-sync, "page" by default) share their view and their cursor.
"use strict";

(function () {
  // One palette for both themes: the Okabe-Ito colour-blind-safe hues, each at a lightness
  // that stands at least 3:1 against the light and the dark background alike.
  const PALETTE = ["#1D9BE2", "#C28600", "#009E73", "#D65F00", "#CB76A5", "#0072B2",
    "#A1960D", "#8C8C8C"];
  const THEME = {
    dark: { bg: "#11151c", grid: "#262d38", text: "#c9d1d9", axis: "#596273",
      select: "rgba(88,166,255,0.18)", cursor: "#8b949e", live: "#3fb950", paused: "#d29922" },
    light: { bg: "#ffffff", grid: "#e8ebf0", text: "#24292f", axis: "#8c959f",
      select: "rgba(31,79,214,0.12)", cursor: "#57606a", live: "#1a7f37", paused: "#9a6700" },
  };
  const MIN_SPAN = 10;                 // ms
  const MAX_SPAN = 24 * 3600 * 1000;   // ms
  const LEFT = 64, RIGHT = 12, TOP = 6, BOTTOM = 24, LANE_GAP = 6, LANE_HEIGHT = 72;
  const CHARTED = ["double", "float", "long", "int", "boolean"];
  const token = new URLSearchParams(location.search).get("token") || "";
  const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  function themeOf(canvas) {
    const asked = canvas.dataset.theme || "auto";
    const page = document.documentElement.dataset.theme;
    if (asked !== "auto") return asked;
    if (page === "dark" || page === "light") return page;
    return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function authHeaders(extra = {}) {
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }

  // One channel's envelope buckets in time order: time (ms), and min and max per signal.
  class Series {
    constructor(names) {
      this.names = names;
      this.t = [];
      this.lo = Object.fromEntries(names.map((n) => [n, []]));
      this.hi = Object.fromEntries(names.map((n) => [n, []]));
    }
    get length() { return this.t.length; }
    last() { return this.t.length ? this.t[this.t.length - 1] : -Infinity; }
    push(t, row) {                     // row: name -> [lo, hi]
      this.t.push(t);
      for (const n of this.names) {
        const v = row[n];
        this.lo[n].push(v ? v[0] : null);
        this.hi[n].push(v ? v[1] : null);
      }
    }
    // other's buckets where this one has none: before `before` (ms), after what it holds
    // up to then, in time order
    merge(other, before) {
      const at = lowerBound(this.t, before);
      const from = at > 0 ? this.t[at - 1] : -Infinity;
      const keep = [];
      for (let i = 0; i < other.t.length; i++) {
        if (other.t[i] > from && other.t[i] < before) keep.push(i);
      }
      if (!keep.length) return 0;
      this.t.splice(at, 0, ...keep.map((i) => other.t[i]));
      for (const n of this.names) {
        this.lo[n].splice(at, 0, ...keep.map((i) => other.lo[n][i]));
        this.hi[n].splice(at, 0, ...keep.map((i) => other.hi[n][i]));
      }
      return keep.length;
    }
    dropBefore(t0) {
      const n = lowerBound(this.t, t0);
      if (n < 1024 && n < this.t.length / 2) return;   // in batches: splice is O(n)
      this.t.splice(0, n);
      for (const name of this.names) { this.lo[name].splice(0, n); this.hi[name].splice(0, n); }
    }
    // index of the bucket nearest to t, or -1
    nearest(t) {
      if (!this.t.length) return -1;
      const i = lowerBound(this.t, t);
      if (i === 0) return 0;
      if (i >= this.t.length) return this.t.length - 1;
      return t - this.t[i - 1] <= this.t[i] - t ? i - 1 : i;
    }
  }

  function lowerBound(a, x) {          // first index with a[i] >= x
    let lo = 0, hi = a.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
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

  // Charts of one sync group share the view (live or a range) and the cursor.
  const groups = {};

  class Stripchart {
    constructor(canvas) {
      this.canvas = canvas;
      const d = canvas.dataset;
      this.signals = (d.signals || "").split(",").map((s) => s.trim()).filter(Boolean)
        .map((s, k) => {
          const dot = s.indexOf(".");
          return { channel: s.slice(0, dot), name: s.slice(dot + 1), label: s, k,
            unit: "", type: "double", charted: true, hidden: false };
        });
      this.window = 1000 * parseFloat(d.window || "60");
      this.span = this.window;
      this.fixedHeight = d.height ? parseInt(d.height, 10) : null;
      this.ymin = d.ymin !== undefined ? parseFloat(d.ymin) : null;
      this.ymax = d.ymax !== undefined ? parseFloat(d.ymax) : null;
      this.colors = d.colors ? d.colors.split(",") : null;
      this.overlay = d.layout === "overlay";
      this.sync = d.sync || "page";
      this.live = true;
      this.end = Date.now();           // right edge of the view, ms
      this.data = {};                  // channel -> Series (live, and history filled in)
      for (const ch of this.channels) {
        this.data[ch] = new Series(this.signals.filter((s) => s.channel === ch).map((s) => s.name));
      }
      this.history = null;             // channel -> Series, for a paused view
      this.latest = this.signals.map(() => null);
      this.lastRecord = {};            // channel -> ms of its newest stored record
      this.sockets = {};
      this.joins = {};                 // channel -> the fill that joins history to live
      this.frames = 0;                 // live frames received (tests and the status line)
      this.fills = 0;                  // history fills done
      this.frameTimes = [];            // requestAnimationFrame timestamps
      this.drawTimes = [];             // ms each drawn frame took
      this.cursor = null;              // ms under the pointer (this chart's or its group's)
      this.selection = null;           // [start, end] ms
      this.dirty = true;
      this.restoreLegend();
      this.buildDom();
      this.layout();
      this.bind();
      (groups[this.sync] = groups[this.sync] || []).push(this);
      this.describe().then(() => { this.layout(); this.connect(); });
      schedule();
    }

    get channels() { return [...new Set(this.signals.map((s) => s.channel))]; }
    get series() { return this.data[this.channels[0]]; }    // the first channel's live buffer
    get visible() { return this.signals.filter((s) => s.charted && !s.hidden); }
    get peers() { return this.sync === "none" ? [] : (groups[this.sync] || []).filter((c) => c !== this); }

    color(k) {
      const palette = this.colors || PALETTE;
      return palette[k % palette.length];
    }

    // ---- what the channels are: types, units, the newest record ---------------------------

    async describe() {
      await Promise.all(this.channels.map(async (ch) => {
        try {
          const r = await fetch(`/api/v1/channels/${encodeURIComponent(ch)}`, { headers: authHeaders() });
          if (!r.ok) { this.note(ch, (await r.json()).error); return; }
          const info = await r.json();
          const byName = Object.fromEntries(info.signals.map((s) => [s.name, s]));
          for (const s of this.signals.filter((x) => x.channel === ch)) {
            const known = byName[s.name];
            if (!known) { s.charted = false; s.why = "no such signal"; continue; }
            s.type = known.type;
            s.unit = known.unit || "";
            s.charted = CHARTED.includes(known.type);
            if (!s.charted) s.why = `${known.type}, not charted`;
          }
          const last = info.stats && info.stats.last_time;
          if (last) this.lastRecord[ch] = Number(BigInt(last) / 1000000n);
        } catch (e) {
          this.note(ch, e.message);
        }
      }));
      this.renderLegend();
      this.dirty = true;
    }

    note(channel, text) { this.setStatus(`${channel}: ${text}`); }

    // ---- layout: lanes of one time axis ----------------------------------------------------

    lanesOf(signals) {
      if (this.overlay || !signals.length) return [{ key: "all", unit: "", signals }];
      const lanes = [];
      const byKey = {};
      for (const s of signals) {
        const key = s.unit ? `unit:${s.unit}` : `signal:${s.label}`;
        if (!byKey[key]) { byKey[key] = { key, unit: s.unit, signals: [] }; lanes.push(byKey[key]); }
        byKey[key].signals.push(s);
      }
      return lanes;
    }

    layout() {
      const ratio = window.devicePixelRatio || 1;
      const width = this.canvas.clientWidth || this.canvas.parentElement.clientWidth || 800;
      this.lanes = this.lanesOf(this.visible);
      const height = this.fixedHeight ||
        (TOP + BOTTOM + Math.max(1, this.lanes.length) * (LANE_HEIGHT + LANE_GAP));
      this.canvas.style.height = `${height}px`;
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
      this.ratio = ratio;
      this.width = width;
      this.height = height;
      const plot = this.plotRect();
      const n = Math.max(1, this.lanes.length);
      const laneH = (plot.height - LANE_GAP * (n - 1)) / n;
      this.lanes.forEach((lane, i) => { lane.top = plot.top + i * (laneH + LANE_GAP); lane.height = laneH; });
      this.paint();                    // at once: a resized canvas is blank until painted
    }

    plotRect() {
      return { left: LEFT, top: TOP, width: Math.max(10, this.width - LEFT - RIGHT),
        height: Math.max(10, this.height - TOP - BOTTOM) };
    }

    plotWidth() { return Math.round(this.plotRect().width); }

    // ---- data ------------------------------------------------------------------------------

    async overview(channel, start, end, buckets) {
      const sigs = this.signals.filter((s) => s.channel === channel && s.charted);
      const out = new Series(this.data[channel].names);
      if (!sigs.length || end <= start) return out;
      const q = new URLSearchParams({
        start: String(BigInt(Math.floor(start)) * 1000000n),
        end: String(BigInt(Math.ceil(end)) * 1000000n), buckets: String(Math.max(1, Math.min(20000, buckets))),
        signals: sigs.map((s) => s.name).join(","),
      });
      const r = await fetch(`/api/v1/channels/${encodeURIComponent(channel)}/overview?${q}`,
        { headers: authHeaders() });
      if (!r.ok) throw new Error((await r.json()).error);
      const got = await r.json();
      this.answered = got.time.length;             // buckets of the last answer, empty ones too
      for (let i = 0; i < got.time.length; i++) {
        const row = {};
        let any = false;
        for (const s of sigs) {
          const o = got.signals[s.name] || {};
          const lo = o.min ? o.min[i] : null, hi = o.max ? o.max[i] : null;
          if (lo !== null && hi !== null) { row[s.name] = [lo, hi]; any = true; }
        }
        if (any) out.push(got.time[i], row);
      }
      return out;
    }

    // History of a channel from `from` up to `to` (ms), where the live buffer has none. The
    // store may not have written the last moments before live data yet: what is still
    // missing next to `to` is asked again shortly, a few times.
    async fillGap(channel, from, to, tries = 6) {
      const msPerPx = this.window / this.plotWidth();
      try {
        const got = await this.overview(channel, from, to, Math.ceil((to - from) / msPerPx));
        const series = this.data[channel];
        series.merge(got, to);
        this.fills++;
        const at = lowerBound(series.t, to);
        const before = at > 0 ? series.t[at - 1] : from;
        if (to - Math.max(before, from) > 3 * msPerPx && tries > 1 && !this.closed) {
          setTimeout(() => this.fillGap(channel, Math.max(before, from - 1) + 1, to, tries - 1), 400);
        }
        for (const s of this.signals) {                    // latest values, until live ones
          if (s.channel !== channel || this.latest[s.k] !== null) continue;
          const hi = got.hi[s.name] || [];
          for (let i = hi.length - 1; i >= 0; i--) if (hi[i] !== null) { this.latest[s.k] = hi[i]; break; }
        }
        if (got.length) this.lastRecord[channel] = Math.max(this.lastRecord[channel] || 0, got.last());
        this.dirty = true;
      } catch (e) {
        this.setStatus(`history: ${e.message}`);
      }
    }

    connect() { for (const channel of this.channels) this.open(channel, 0); }

    open(channel, tries) {
      const names = this.signals.filter((s) => s.channel === channel && s.charted).map((s) => s.name);
      if (!names.length) return;
      const q = new URLSearchParams({ channel, signals: names.join(","),
        window: String(this.window / 1000), width: String(this.plotWidth()) });
      if (token) q.set("token", token);
      const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live?${q}`);
      ws.binaryType = "arraybuffer";
      this.sockets[channel] = ws;
      // History joins live at the first frame of this connection; a channel that sends
      // nothing for a while is filled up to now meanwhile (and joined when it does send).
      const join = this.joins[channel] = { first: null, idle: null };
      join.idle = setTimeout(() => {
        if (join.first === null) this.fillGap(channel, this.heldUntil(channel), Date.now());
      }, 1500);
      ws.onopen = () => { tries = 0; this.setStatus(""); };
      ws.onmessage = (event) => this.onFrame(channel, parseFrame(event.data), join);
      ws.onclose = () => {
        clearTimeout(join.idle);
        if (this.closed) return;
        this.setStatus("reconnecting…");
        const delay = Math.min(5000, 250 * 2 ** tries);
        setTimeout(() => this.open(channel, tries + 1), delay);
      };
    }

    // the time up to which the live buffer holds a channel (or the start of the window)
    heldUntil(channel) {
      const start = Date.now() - this.window;
      const last = this.data[channel].last();
      return Number.isFinite(last) && last > start ? last + 1 : start;
    }

    onFrame(channel, { time, columns }, join) {
      this.frames++;
      if (!time.length) return;
      const series = this.data[channel];
      if (join.first === null) {
        join.first = time[0];
        clearTimeout(join.idle);
        this.fillGap(channel, this.heldUntil(channel), join.first);
      }
      const sigs = this.signals.filter((s) => s.channel === channel && s.charted);
      for (let i = 0; i < time.length; i++) {
        if (time[i] <= series.last()) continue;
        const row = {};
        for (const s of sigs) {
          const a = columns[`${s.name}:min`], b = columns[`${s.name}:max`];
          if (!a || !b || Number.isNaN(a[i]) || Number.isNaN(b[i])) continue;
          row[s.name] = [a[i], b[i]];
          this.latest[s.k] = b[i];
        }
        series.push(time[i], row);
      }
      this.lastRecord[channel] = Math.max(this.lastRecord[channel] || 0, series.last());
      series.dropBefore(Date.now() - Math.max(this.window, 60000) * 2);
      if (this.live) this.dirty = true;
    }

    // ---- interaction ----------------------------------------------------------------------

    bind() {
      const c = this.canvas;
      c.addEventListener("wheel", (e) => {
        e.preventDefault();
        this.zoom(e.deltaY > 0 ? 1.25 : 0.8, e.offsetX);
      }, { passive: false });
      const pointers = new Map();
      let drag = null, pinch = null, select = null;
      c.addEventListener("pointerdown", (e) => {
        c.setPointerCapture(e.pointerId);
        pointers.set(e.pointerId, e.offsetX);
        if (pointers.size === 1) {
          if (e.shiftKey || this.selecting) {
            select = { from: this.timeAt(e.offsetX) };
            this.selection = [select.from, select.from];
          } else {
            drag = { x: e.offsetX, end: this.end };
          }
        }
        if (pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          pinch = { d: Math.abs(a - b) || 1, span: this.span };
          drag = select = null;
        }
      });
      c.addEventListener("pointermove", (e) => {
        this.moveCursor(this.inPlot(e.offsetX, e.offsetY) ? this.timeAt(e.offsetX) : null, e.offsetY);
        if (!pointers.has(e.pointerId)) return;
        pointers.set(e.pointerId, e.offsetX);
        if (pinch && pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          this.setView(this.end, pinch.span * pinch.d / (Math.abs(a - b) || 1));
        } else if (select) {
          const t = this.timeAt(e.offsetX);
          this.selection = [Math.min(select.from, t), Math.max(select.from, t)];
          this.dirty = true;
        } else if (drag && Math.abs(e.offsetX - drag.x) > 2) {
          this.setView(drag.end - (e.offsetX - drag.x) * this.span / this.plotWidth(), this.span);
        }
      });
      c.addEventListener("pointerleave", () => this.moveCursor(null));
      const up = (e) => {
        pointers.delete(e.pointerId);
        if (pointers.size < 2) pinch = null;
        if (!pointers.size) {
          drag = null;
          if (select) {
            select = null;
            const [a, b] = this.selection;
            if (b - a < this.span / this.plotWidth() * 3) this.clearSelection();
            else this.openRangeForm(a, b);
          }
        }
      };
      c.addEventListener("pointerup", up);
      c.addEventListener("pointercancel", up);
      c.addEventListener("dblclick", () => this.goLive());
      window.addEventListener("resize", () => this.layout());
    }

    inPlot(x, y) {
      const p = this.plotRect();
      return x >= p.left && x <= p.left + p.width && y >= p.top && y <= p.top + p.height;
    }

    timeAt(x) {
      const p = this.plotRect();
      return this.end - this.span + (Math.min(Math.max(x - p.left, 0), p.width) / p.width) * this.span;
    }

    moveCursor(t, y = null, fromPeer = false) {
      this.cursor = t;
      this.cursorY = fromPeer ? null : y;
      this.dirty = true;
      this.showTooltip();
      if (!fromPeer) for (const c of this.peers) c.moveCursor(t, null, true);
    }

    zoom(factor, x) {
      const at = this.timeAt(x);
      const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, this.span * factor));
      this.setView(at + (this.end - at) * span / this.span, span);
    }

    setView(end, span, fromPeer = false) {     // pauses; the view's history comes from the store
      this.live = false;
      this.span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, span));
      this.end = end;
      this.dirty = true;
      this.showState();
      clearTimeout(this.fetchTimer);
      this.fetchTimer = setTimeout(() => this.fetchHistory(), 80);
      if (!fromPeer) for (const c of this.peers) c.setView(end, span, true);
    }

    async fetchHistory() {
      const end = this.end, span = this.span;
      const started = performance.now();
      try {
        const got = {};
        await Promise.all(this.channels.map(async (ch) => {
          got[ch] = await this.overview(ch, end - span, end, this.plotWidth());
        }));
        if (end === this.end && span === this.span && !this.live) {
          this.history = got;
          this.historyMs = performance.now() - started;
          this.setStatus("");
          this.dirty = true;
        }
      } catch (e) {
        this.setStatus(`history: ${e.message}`);
      }
    }

    goLive(fromPeer = false) {
      this.live = true;
      this.history = null;
      this.span = this.window;
      this.dirty = true;
      this.showState();
      if (!fromPeer) for (const c of this.peers) c.goLive(true);
    }

    // ---- the DOM around the canvas: legend, state, tooltip, range form ---------------------

    buildDom() {
      const wrap = document.createElement("div");
      wrap.className = "stripchart-wrap";
      this.canvas.parentElement.insertBefore(wrap, this.canvas);
      const bar = document.createElement("div");
      bar.className = "stripchart-bar";
      this.legend = document.createElement("div");
      this.legend.className = "stripchart-legend";
      this.legend.setAttribute("role", "list");
      bar.appendChild(this.legend);
      const tools = document.createElement("div");
      tools.className = "stripchart-tools";
      this.stateBadge = document.createElement("span");
      this.stateBadge.className = "chart-state";
      const select = this.button("Select range", "choose a range to tag or export (or shift-drag on the chart)", () => {
        this.selecting = !this.selecting;
        select.classList.toggle("on", this.selecting);
        this.canvas.style.cursor = this.selecting ? "col-resize" : "";
      });
      const tag = this.button("Tag or export this view…", "keep the time range on screen through retention, or download it as HDF5",
        () => this.openRangeForm(this.end - this.span, this.end));
      this.liveButton = this.button("Live", "back to live (or double-click the chart)", () => this.goLive());
      this.liveButton.className = "live-button";
      tag.className = "tag-button";
      select.className = "select-button";
      tools.append(this.stateBadge, select, tag, this.liveButton);
      bar.appendChild(tools);
      const holder = document.createElement("div");
      holder.className = "stripchart-canvas";
      wrap.append(bar, holder);
      holder.appendChild(this.canvas);
      this.tooltip = document.createElement("div");
      this.tooltip.className = "stripchart-tooltip";
      this.tooltip.hidden = true;
      this.emptyNote = document.createElement("div");
      this.emptyNote.className = "stripchart-empty";
      this.emptyNote.hidden = true;
      holder.append(this.tooltip, this.emptyNote);
      this.form = document.createElement("form");
      this.form.className = "stripchart-range";
      this.form.hidden = true;
      this.form.innerHTML = `<span class="range-text"></span>
        <label>name <input name="name" required pattern="[A-Za-z0-9_][A-Za-z0-9_.\\-]{0,127}" size="22"></label>
        <label>note <input name="note" size="22"></label>
        <button type="submit" name="tag">Tag</button>
        <a class="button export" download>Export HDF5</a>
        <button type="button" name="zoom">Zoom to range</button>
        <button type="button" name="cancel">Cancel</button>
        <span class="range-result" role="status"></span>`;
      this.form.addEventListener("submit", (e) => { e.preventDefault(); this.tagRange(); });
      this.form.querySelector("[name=cancel]").addEventListener("click", () => this.clearSelection());
      this.form.querySelector("[name=zoom]").addEventListener("click", () => {
        const [a, b] = this.selection;
        this.clearSelection();
        this.setView(b, b - a);
      });
      wrap.appendChild(this.form);
      this.status = document.createElement("div");
      this.status.className = "chart-status";
      wrap.appendChild(this.status);
      this.renderLegend();
      this.showState();
    }

    button(text, title, onclick) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.title = title;
      b.addEventListener("click", onclick);
      return b;
    }

    legendKey() { return `speeddata-legend:${this.signals.map((s) => s.label).join(",")}`; }

    restoreLegend() {
      try {
        const hidden = JSON.parse(localStorage.getItem(this.legendKey()) || "[]");
        for (const s of this.signals) s.hidden = hidden.includes(s.label);
      } catch (e) { /* a damaged entry: show everything */ }
    }

    saveLegend() {
      localStorage.setItem(this.legendKey(), JSON.stringify(this.signals.filter((s) => s.hidden).map((s) => s.label)));
    }

    renderLegend() {
      this.legendItems = this.signals.map((s) => {
        const item = document.createElement("button");
        item.type = "button";
        item.className = "item";
        item.setAttribute("role", "listitem");
        item.dataset.signal = s.label;
        item.innerHTML = `<i class="swatch"></i><span class="name"></span><span class="unit"></span> <b class="value"></b>`;
        item.querySelector(".swatch").style.background = s.charted ? this.color(s.k) : "transparent";
        item.querySelector(".name").textContent = this.channels.length > 1 ? s.label : s.name;
        item.querySelector(".unit").textContent = s.unit ? ` [${s.unit}]` : "";
        if (!s.charted) {
          item.classList.add("not-charted");
          item.disabled = true;
          item.querySelector(".value").textContent = `(${s.why})`;
          item.title = `${s.label} is ${s.why}`;
        } else {
          item.title = "click: hide or show; shift- or alt-click: show only this one";
          item.classList.toggle("hidden", s.hidden);
          item.setAttribute("aria-pressed", String(!s.hidden));
          item.addEventListener("click", (e) => this.toggle(s, e.shiftKey || e.altKey));
        }
        return item;
      });
      this.legend.replaceChildren(...this.legendItems);
      this.shownValues = null;
    }

    toggle(signal, solo) {
      const charted = this.signals.filter((s) => s.charted);
      if (solo) {
        const alone = charted.every((s) => s.hidden === (s !== signal));
        for (const s of charted) s.hidden = alone ? false : s !== signal;
      } else {
        signal.hidden = !signal.hidden;
      }
      this.saveLegend();
      this.renderLegend();
      this.layout();
    }

    showState() {
      if (!this.stateBadge) return;
      this.liveButton.classList.toggle("paused", !this.live);
      if (this.live) {
        this.stateBadge.textContent = "● live";
        this.stateBadge.className = "chart-state live";
        this.stateBadge.title = `the last ${formatSpan(this.window)}, following live data`;
      } else {
        const a = new Date(this.end - this.span), b = new Date(this.end);
        this.stateBadge.textContent = `❚❚ paused: ${formatSpan(this.span)} to ${formatTime(this.end, this.span / this.plotWidth())}`;
        this.stateBadge.className = "chart-state paused";
        this.stateBadge.title = `${a.toLocaleString()} to ${b.toLocaleString()}; Live or a double click returns`;
      }
    }

    showTooltip() {
      const tip = this.tooltip;
      if (this.cursor === null || !this.visible.length) { tip.hidden = true; return; }
      const rows = [`<div class="when">${formatTime(this.cursor, this.span / this.plotWidth())}</div>`];
      for (const s of this.visible) {
        const series = this.seriesFor(s.channel);
        const i = series.nearest(this.cursor);
        let text = "–";
        // the nearest bucket, if no farther than 3 px or than its neighbours are (slow data)
        const spacing = i < 0 ? 0 : Math.max(i > 0 ? series.t[i] - series.t[i - 1] : 0,
          i + 1 < series.length ? series.t[i + 1] - series.t[i] : 0);
        if (i >= 0 && Math.abs(series.t[i] - this.cursor) <= Math.max(this.span / this.plotWidth() * 3, spacing * 0.6)) {
          const lo = series.lo[s.name][i], hi = series.hi[s.name][i];
          if (lo !== null && hi !== null) {
            text = lo === hi ? formatValue(hi) : `${formatValue(lo)} … ${formatValue(hi)}`;
          }
        }
        rows.push(`<div><i class="swatch" style="background:${this.color(s.k)}"></i>${escapeHtml(s.name)} <b>${text}</b>${s.unit ? ` ${escapeHtml(s.unit)}` : ""}</div>`);
      }
      tip.innerHTML = rows.join("");
      tip.hidden = false;
      const p = this.plotRect();
      const x = p.left + ((this.cursor - (this.end - this.span)) / this.span) * p.width;
      const right = x > this.width * 0.6;
      tip.style.left = right ? "" : `${x + 12}px`;
      tip.style.right = right ? `${this.width - x + 12}px` : "";
      tip.style.top = `${p.top + 4}px`;
    }

    openRangeForm(a, b) {
      this.selection = [a, b];
      const f = this.form;
      f.hidden = false;
      f.querySelector(".range-text").textContent =
        `${formatTime(a, (b - a) / 1000)} – ${formatTime(b, (b - a) / 1000)} (${formatSpan(b - a)})`;
      const name = f.querySelector("[name=name]");
      if (!name.value) name.value = `range-${new Date(a).toISOString().slice(0, 19).replace(/[:T]/g, "-")}`;
      f.querySelector(".range-result").textContent = "";
      const q = new URLSearchParams({ start: String(BigInt(Math.floor(a)) * 1000000n),
        end: String(BigInt(Math.ceil(b)) * 1000000n), channels: this.channels.join(","),
        signals: this.signals.filter((s) => s.charted).map((s) => s.name).join(",") });
      if (token) q.set("token", token);
      f.querySelector(".export").href = `/api/v1/pivot/export?${q}`;
      this.dirty = true;
      name.focus();
    }

    clearSelection() {
      this.selection = null;
      this.form.hidden = true;
      this.dirty = true;
    }

    async tagRange() {
      const [a, b] = this.selection;
      const f = this.form;
      const name = f.querySelector("[name=name]").value.trim();
      const result = f.querySelector(".range-result");
      const r = await fetch("/api/v1/tags", { method: "POST",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ name, start: String(BigInt(Math.floor(a)) * 1000000n),
          end: String(BigInt(Math.ceil(b)) * 1000000n), channels: this.channels,
          note: f.querySelector("[name=note]").value }) });
      const answer = await r.json();
      result.className = `range-result ${r.ok ? "ok" : "error"}`;
      result.textContent = r.ok ? `tagged ${answer.name}: retention keeps it` : answer.error;
      if (r.ok) { f.querySelector("[name=name]").value = ""; f.querySelector("[name=note]").value = ""; }
    }

    setStatus(text) { if (this.status) this.status.textContent = text; }

    // ---- drawing --------------------------------------------------------------------------

    seriesFor(channel) { return (!this.live && this.history && this.history[channel]) || this.data[channel]; }

    // one animation frame (see `schedule`): ``moved`` when live views have moved on
    frame(stamp, now, moved) {
      this.frameTimes.push(stamp);
      if (this.frameTimes.length > 4000) this.frameTimes.splice(0, 2000);
      if (this.live) {
        this.end = now;
        if (moved) this.dirty = true;
      }
      if (stamp - (this.valuesAt || 0) > 250) { this.valuesAt = stamp; this.showValues(); }
      if (!this.dirty) return;
      this.dirty = false;
      const began = performance.now();
      this.paint();
      this.drawTimes.push(performance.now() - began);
      if (this.drawTimes.length > 4000) this.drawTimes.splice(0, 2000);
    }

    paint() {
      const ctx = this.canvas.getContext("2d");
      const theme = THEME[themeOf(this.canvas)];
      ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
      ctx.fillStyle = theme.bg;
      ctx.fillRect(0, 0, this.width, this.height);
      const p = this.plotRect();
      const t0 = this.end - this.span, t1 = this.end;
      const X = (t) => p.left + ((t - t0) / this.span) * p.width;
      this.drawTimeAxis(ctx, theme, p, t0);
      if (this.selection) {
        const [a, b] = this.selection;
        ctx.fillStyle = theme.select;
        ctx.fillRect(Math.max(p.left, X(a)), p.top, Math.min(p.left + p.width, X(b)) - Math.max(p.left, X(a)), p.height);
      }
      const margin = (this.span / p.width) * 2;
      const empty = [];
      for (const lane of this.lanes) {
        const [lo, hi] = this.scale(lane, t0 - margin, t1 + margin);
        const Y = (v) => lane.top + lane.height - ((v - lo) / (hi - lo)) * lane.height;
        this.drawLaneAxis(ctx, theme, p, lane, lo, hi, Y);
        ctx.save();
        ctx.beginPath();
        ctx.rect(p.left, lane.top, p.width, lane.height);
        ctx.clip();
        for (const s of lane.signals) {
          const series = this.seriesFor(s.channel);
          const los = series.lo[s.name], his = series.hi[s.name], ts = series.t;
          ctx.strokeStyle = this.color(s.k);
          ctx.lineWidth = 1.25;
          ctx.beginPath();
          let pen = false, drawn = 0;
          for (let i = Math.max(0, lowerBound(ts, t0 - margin) - 1); i < ts.length && ts[i] <= t1 + margin; i++) {
            const a = los[i], b = his[i];
            if (a === null || b === null) { pen = false; continue; }
            const x = X(ts[i]);
            if (pen) ctx.lineTo(x, Y(a)); else ctx.moveTo(x, Y(a));
            ctx.lineTo(x, Y(b));          // the envelope: every bucket's min to max
            pen = true;
            drawn++;
          }
          ctx.stroke();
          if (!drawn) empty.push(s.channel);
        }
        ctx.restore();
      }
      ctx.strokeStyle = theme.axis;
      ctx.lineWidth = 1;
      for (const lane of this.lanes) ctx.strokeRect(p.left + 0.5, Math.round(lane.top) + 0.5, p.width, Math.round(lane.height));
      if (this.cursor !== null && this.cursor >= t0 && this.cursor <= t1) {
        const x = Math.round(X(this.cursor)) + 0.5;
        ctx.strokeStyle = theme.cursor;
        ctx.setLineDash([4, 3]);
        ctx.beginPath(); ctx.moveTo(x, p.top); ctx.lineTo(x, p.top + p.height);
        if (this.cursorY !== null && this.cursorY !== undefined) {
          ctx.moveTo(p.left, Math.round(this.cursorY) + 0.5); ctx.lineTo(p.left + p.width, Math.round(this.cursorY) + 0.5);
        }
        ctx.stroke();
        ctx.setLineDash([]);
      }
      this.showEmpty([...new Set(empty)].filter((ch) => this.visible.every((s) => s.channel !== ch || empty.includes(ch))));
    }

    // the y range of a lane: pinned (data-ymin/ymax), or what its visible signals span
    scale(lane, t0, t1) {
      let lo = this.ymin, hi = this.ymax;
      if (lo !== null && hi !== null) return [lo, hi];
      let a = Infinity, b = -Infinity;
      for (const s of lane.signals) {
        const series = this.seriesFor(s.channel);
        const ts = series.t, los = series.lo[s.name], his = series.hi[s.name];
        for (let i = lowerBound(ts, t0); i < ts.length && ts[i] <= t1; i++) {
          const x = los[i], y = his[i];
          if (x !== null && x < a) a = x;
          if (y !== null && y > b) b = y;
        }
      }
      if (a === Infinity) { a = -1; b = 1; }
      if (a === b) { const d = Math.abs(a) * 0.01 || 1; a -= d; b += d; }
      const pad = (b - a) * 0.06;
      return [lo === null ? a - pad : lo, hi === null ? b + pad : hi];
    }

    drawLaneAxis(ctx, theme, p, lane, lo, hi, Y) {
      ctx.font = "11px system-ui, sans-serif";
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      const values = ticks(lo, hi, Math.max(4, Math.floor(lane.height / 18)));
      for (const v of values) {
        const y = Math.round(Y(v)) + 0.5;
        if (y < lane.top + 5 || y > lane.top + lane.height - 5) continue;   // off the lane's edges
        ctx.strokeStyle = theme.grid;
        ctx.beginPath(); ctx.moveTo(p.left, y); ctx.lineTo(p.left + p.width, y); ctx.stroke();
        ctx.fillStyle = theme.text;
        ctx.fillText(formatValue(v), p.left - 5, y);
      }
      // the lane's name: its unit, or its one signal, in the signal's colour
      const label = lane.unit || (lane.signals.length === 1 ? lane.signals[0].name : "");
      if (label && !this.overlay) {
        ctx.save();
        ctx.translate(10, lane.top + lane.height / 2);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "center";
        ctx.fillStyle = lane.signals.length === 1 ? this.color(lane.signals[0].k) : theme.text;
        ctx.fillText(label.length > 14 ? `${label.slice(0, 13)}…` : label, 0, 0);
        ctx.restore();
      }
    }

    drawTimeAxis(ctx, theme, p, t0) {
      ctx.font = "11px system-ui, sans-serif";
      ctx.lineWidth = 1;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const step = timeStep(this.span / Math.max(1, Math.floor(p.width / 110)));
      const offset = new Date(t0).getTimezoneOffset() * 60000;   // ticks on local round times
      for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= this.end; t += step) {
        const x = Math.round(p.left + ((t - t0) / this.span) * p.width) + 0.5;
        ctx.strokeStyle = theme.grid;
        ctx.beginPath(); ctx.moveTo(x, p.top); ctx.lineTo(x, p.top + p.height); ctx.stroke();
        ctx.fillStyle = theme.text;
        if (x > p.left + 30 && x < p.left + p.width - 90) ctx.fillText(timeLabel(new Date(t), step), x, p.top + p.height + 5);
      }
      ctx.textAlign = "right";
      ctx.fillStyle = theme.axis;
      ctx.fillText(ZONE, p.left + p.width, p.top + p.height + 5);   // the zone, named once
    }

    // legend values at a few Hz: DOM writes at every frame cost more than the drawing
    showValues() {
      const shown = this.latest.map((v) => (v === null ? "–" : formatValue(v)));
      if (this.shownValues && shown.every((v, k) => v === this.shownValues[k])) return;
      this.shownValues = shown;
      this.signals.forEach((s, k) => {
        if (s.charted) this.legendItems[k].querySelector(".value").textContent = shown[k];
      });
    }

    // a channel with nothing in the view says when its last record came, and offers it
    showEmpty(channels) {
      const note = this.emptyNote;
      const key = channels.map((ch) => `${ch}@${this.lastRecord[ch] || 0}`).join(",");
      if (key === this.emptyKey) return;
      this.emptyKey = key;
      if (!channels.length || !this.visible.length) { note.hidden = true; return; }
      note.replaceChildren();
      for (const ch of channels) {
        const last = this.lastRecord[ch];
        const line = document.createElement("div");
        line.textContent = last
          ? `No data from ${ch} in this window. Its last record came ${new Date(last).toLocaleString()} (${formatSpan(Date.now() - last)} ago). `
          : `No data from ${ch} yet. `;
        if (last) {
          const jump = this.button("Show it", "move the view to the last record", () => {
            this.emptyKey = null;
            this.setView(last + this.span * 0.1, this.span);
          });
          line.appendChild(jump);
        }
        note.appendChild(line);
      }
      note.hidden = false;
    }

    close() {
      this.closed = true;
      for (const ws of Object.values(this.sockets)) ws.close();
      const group = groups[this.sync] || [];
      group.splice(group.indexOf(this), 1);
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

  function timeLabel(d, step) {
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (step >= 86400000) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    if (step >= 60000) return base;
    if (step >= 1000) return `${base}:${pad(d.getSeconds())}`;
    return `${base}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function formatTime(t, resolution) {     // local time, as precise as the view shows
    const d = new Date(t);
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return resolution < 1000 ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }

  function formatSpan(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 120000) return `${Number((ms / 1000).toPrecision(3))} s`;
    if (ms < 7200000) return `${Number((ms / 60000).toPrecision(3))} min`;
    if (ms < 172800000) return `${Number((ms / 3600000).toPrecision(3))} h`;
    return `${Number((ms / 86400000).toPrecision(3))} d`;
  }

  function formatValue(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(5)));
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  // One animation loop for every chart of the page. Live, a view moves a pixel every
  // window/width ms: all live charts are drawn together at that pace (the finest of them),
  // and others only when something changed (data, cursor, layout). The page is then
  // composited once per step, not once per chart, and not at every frame.
  let looping = false, lastTick = null;
  function schedule() {
    if (looping) return;
    looping = true;
    const loop = (stamp) => {
      const now = Date.now();
      let period = Infinity;
      for (const c of charts) if (c.live && !c.closed) period = Math.min(period, c.span / c.plotWidth());
      const tick = Math.floor(now / Math.max(period, 16));
      const moved = tick !== lastTick;
      lastTick = tick;
      for (const c of charts) if (!c.closed) c.frame(stamp, now, moved);
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
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
  window.SpeedData = Object.assign(window.SpeedData || {}, { Stripchart, charts, start, parseFrame, PALETTE, THEME });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => start());
  else start();
})();
