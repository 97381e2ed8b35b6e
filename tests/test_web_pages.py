"""The pages in a real headless Chromium (Debian's, driven by Playwright) against a real
`speeddata serve` fed over UDP: the live chart's pixels, a one-sample spike, zoom and back
to live, the registration form, a tag and its HDF5 download, and both themes. Screenshots
go to test-artifacts/ (ignored by git)."""

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import speeddata
from speeddata.codec import Plan, encode_columns
from speeddata.schema import load as load_schema, load_avro
from speeddata.send import builtin_schema, send

from helpers import ServeProcess, free_udp_port, wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SPIKY = {"type": "record", "name": "spiky", "fields": [
    {"name": "time", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    {"name": "v", "type": "double"}]}


def _ensure_chromium() -> None:
    """Debian's chromium, installed with apt-get when missing (a fresh machine)."""
    if os.path.exists(CHROMIUM):
        return
    if shutil.which("apt-get") is None:
        pytest.fail("the web tests need Debian's chromium at /usr/bin/chromium (no apt-get)")
    for cmd in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                ["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if cmd[1] == "install" and done.returncode == 0:
            return
    pytest.fail(f"could not install chromium with apt-get:\n{done.stderr[-2000:]}")


@pytest.fixture
def browser():
    _ensure_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def server(tmp_path):
    servers = []

    def start(**kw) -> ServeProcess:
        s = ServeProcess(tmp_path / "data", **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def open_page(browser, url, theme="light"):
    page = browser.new_page(viewport={"width": 1300, "height": 900}, color_scheme=theme)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page, errors


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# the number of pixels of a colour (within a tolerance) in the plot area of chart k (the
# top fraction ``top`` of it)
COUNT_COLOR = """([k, rgb, top, near]) => {
  const tol = near || 40;
  const c = SpeedData.charts[k];
  const ctx = c.canvas.getContext("2d");
  const r = c.ratio, p = c.plotRect();
  const h = Math.floor((top === undefined ? 1 : top) * p.height * r);
  const d = ctx.getImageData(Math.ceil(p.left * r), Math.ceil(p.top * r), Math.floor(p.width * r), h).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - rgb[0]) < tol && Math.abs(d[i+1] - rgb[1]) < tol && Math.abs(d[i+2] - rgb[2]) < tol) n++;
  return n;
}"""
# pixels of the plot area (inside the lanes' frames) far from the background: what was drawn
COUNT_INK = """([k, top]) => {
  const c = SpeedData.charts[k];
  const ctx = c.canvas.getContext("2d");
  const r = c.ratio, p = c.plotRect();
  const bg = ctx.getImageData(2, 2, 1, 1).data;
  let n = 0;
  for (const lane of c.lanes) {
    const h = Math.floor((top === undefined ? 1 : top) * (lane.height - 3) * r);
    if (h < 1) continue;
    const d = ctx.getImageData(Math.ceil((p.left + 2) * r), Math.ceil((lane.top + 2) * r),
                               Math.floor((p.width - 4) * r), h).data;
    for (let i = 0; i < d.length; i += 4)
      if (Math.max(Math.abs(d[i] - bg[0]), Math.abs(d[i+1] - bg[1]), Math.abs(d[i+2] - bg[2])) > 60) n++;
  }
  return n;
}"""
# in chart k, the lane of a signal: how many pixels of the signal's colour it holds, how much
# of the lane's height they span, and which pixel columns (CSS px from the plot's left) hold
# them
LANE = """([k, name]) => {
  const c = SpeedData.charts[k];
  const s = c.signals.find((x) => x.name === name);
  const lane = c.lanes.find((l) => l.signals.includes(s));
  if (!lane) return null;
  const hex = c.color(s.k), rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const ctx = c.canvas.getContext("2d");
  const r = c.ratio, p = c.plotRect();
  const x0 = Math.ceil((p.left + 2) * r), y0 = Math.ceil((lane.top + 2) * r);
  const w = Math.floor((p.width - 4) * r), h = Math.floor((lane.height - 4) * r);
  const d = ctx.getImageData(x0, y0, w, h).data;
  let n = 0, top = h, bottom = -1;
  const cols = new Set();
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = (y * w + x) * 4;
    if (Math.abs(d[i] - rgb[0]) < 50 && Math.abs(d[i+1] - rgb[1]) < 50 && Math.abs(d[i+2] - rgb[2]) < 50) {
      n++; top = Math.min(top, y); bottom = Math.max(bottom, y); cols.add(Math.floor(x / r));
    }
  }
  return {n, extent: bottom >= top ? (bottom - top + 1) / h : 0,
          columns: [...cols].sort((a, b) => a - b), width: Math.floor(w / r)};
}"""
PALETTE = [[0x1D, 0x9B, 0xE2], [0xC2, 0x86, 0x00], [0x00, 0x9E, 0x73], [0xD6, 0x5F, 0x00]]


def example_config(port):
    return {"channels": [{"name": "example", "port": port,
                          "schema": builtin_schema("example")}]}


def test_the_dashboard_draws_the_live_signal(browser, server):
    port = free_udp_port()
    s = server(config=example_config(port))
    stop = threading.Event()
    sender = threading.Thread(target=send, kwargs=dict(port=port, rate=1000, stop=stop.is_set))
    sender.start()
    try:
        page, errors = open_page(browser, s.url)
        page.wait_for_function("SpeedData.charts.length > 0 && SpeedData.charts[0].frames > 5",
                               timeout=20_000)
        def inked():
            return sum(page.evaluate(COUNT_COLOR, [0, c]) for c in PALETTE)
        before = inked()
        wait_for(lambda: inked() > max(1000, before),   # the signals' colours, growing live
                 what="the live traces to grow")
        legend = page.locator(".stripchart-legend .item").first.inner_text()
        wait_for(lambda: "–" not in page.locator(".stripchart-legend .item").first.inner_text(),
                 what="the latest value in the legend")
        assert "sine_wave" in legend
        assert "example" in page.locator("#channels").inner_text()
        shot(page, "dashboard")
        assert errors == []
    finally:
        stop.set()
        sender.join()


def send_spike(port, seconds=3.0, rate=10_000):
    """A 10 kHz signal of small noise with one sample of 100 in the middle."""
    plan = Plan(load_schema(SPIKY), wire=True)
    n = int(seconds * rate)
    t = time.time_ns() + np.arange(n, dtype=np.int64) * int(1e9 / rate)
    v = np.random.default_rng(0).normal(0, 0.01, n)
    v[n // 2] = 100.0
    body, ends = encode_columns(plan, t, {"v": v})
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        start = 0
        t0 = time.monotonic()
        for k, end in enumerate(ends.tolist()):
            sock.sendto(body[start:end], ("127.0.0.1", port))
            start = end
            if k % 100 == 0:
                time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
    finally:
        sock.close()


def test_a_single_sample_spike_is_drawn_in_a_60_s_window(browser, server):
    port = free_udp_port()
    s = server(config={"channels": [{"name": "spiky", "port": port,
                                     "schema": json.dumps(SPIKY)}]})
    page, errors = open_page(browser, s.url)
    page.wait_for_function("SpeedData.charts.length > 0", timeout=20_000)
    send_spike(port)
    page.wait_for_function("SpeedData.charts[0].latest[0] !== null", timeout=10_000)
    # autoscaled to the spike: the top fifth of the plot holds it (one sample in 30,000)
    wait_for(lambda: page.evaluate(COUNT_INK, [0, 0.2]) > 3, what="the spike drawn")
    shot(page, "spike")
    assert errors == []


def test_zoom_out_to_an_hour_of_history_and_back_to_live(browser, server):
    port = free_udp_port()
    s = server(config=example_config(port))
    send(port=port, rate=2000, count=4000)
    page, errors = open_page(browser, s.url)
    page.wait_for_function("SpeedData.charts.length > 0", timeout=20_000)
    box = page.locator("canvas.stripchart").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    for _ in range(25):                       # 1.25 ** 25 x 60 s > 1 h
        page.mouse.wheel(0, 200)
    page.wait_for_function("!SpeedData.charts[0].live && SpeedData.charts[0].span >= 3600e3"
                           " && SpeedData.charts[0].history !== null", timeout=10_000)
    buckets = page.evaluate("SpeedData.charts[0].answered")
    assert buckets == page.evaluate("SpeedData.charts[0].plotWidth()")   # pixel resolution
    assert page.evaluate("SpeedData.charts[0].history.example.t.length") >= 1
    shot(page, "zoomed-out")
    assert page.evaluate(COUNT_INK, [0]) > 20
    page.locator(".tag-button").first.click()          # tag the range on screen
    form = page.locator(".stripchart-range").first
    form.locator("[name=name]").fill("the-hour")
    form.locator("[name=note]").fill("an hour seen on a chart")
    form.locator("[name=tag]").click()
    page.wait_for_function("document.querySelector('.range-result').textContent"
                           ".includes('tagged the-hour')")
    client = speeddata.Client(s.address)
    try:
        tag = client.tags()[0]
    finally:
        client.close()
    span = page.evaluate("SpeedData.charts[0].span") * 1e6
    assert tag["name"] == "the-hour" and abs((tag["end"] - tag["start"]) - span) < 3e6   # whole ms
    assert tag["channels"] == ["example"] and tag["note"] == "an hour seen on a chart"
    page.locator(".live-button").first.click()
    assert page.evaluate("SpeedData.charts[0].live && SpeedData.charts[0].span === 60000")
    assert errors == []


def test_register_through_the_form_bad_schema_shown_then_remove(browser, server):
    s = server()
    page, errors = open_page(browser, s.url + "channels")
    page.wait_for_function("document.querySelectorAll('#free-ports option').length > 0")
    page.fill("#name", "formed")
    page.fill("#schema", '{"type": "record", "name": "x", "fields": [{"name": "a", "type": "wat"}]}')
    page.wait_for_function("document.querySelector('#schema-check').textContent.includes('wat')")
    assert "error" in page.get_attribute("#schema-check", "class")
    page.click("#register button[type=submit]")
    page.wait_for_function("document.querySelector('#register-error').textContent.length > 0")
    assert "wat" in page.inner_text("#register-error")
    page.fill("#schema", json.dumps(load_avro(builtin_schema("example"))))
    page.wait_for_function("document.querySelector('#schema-check').textContent.startsWith('ok')")
    port = int(page.eval_on_selector("#port", "e => e.value"))
    page.click("#register button[type=submit]")
    page.wait_for_selector("tr[data-channel=formed]")
    shot(page, "channels")
    client = speeddata.Client(s.address)
    try:
        assert client.get_channel("formed").port == port      # the one registry
        page.on("dialog", lambda d: d.accept())
        page.click("tr[data-channel=formed] button.remove")
        wait_for(lambda: client.get_channel("formed").status == "stored",
                 what="the channel deregistered")
    finally:
        client.close()
    assert errors == []


def test_tag_on_the_page_and_download_it_as_hdf5(browser, server, tmp_path):
    port = free_udp_port()
    s = server(config=example_config(port))
    wait_for(lambda: "running" in json.dumps(
        speeddata.Client(s.address).list_channels()[0].status), what="the worker")
    send(port=port, rate=2000, count=2000)
    with speeddata.store.open(s.data, readonly=True) as st:
        wait_for(lambda: st["example"].count() == 2000, what="stored")
        first = int(st["example"].holds()[0])
    page, errors = open_page(browser, s.url + "tags")
    start = speeddata.timeutil.format_ns(first)
    page.fill("#tag-name", "run-1")
    page.fill("#tag-start", start)
    page.fill("#tag-duration", "PT10S")
    page.fill("#tag-note", "from the browser")
    page.click("#tag button[type=submit]")
    page.wait_for_selector("tr[data-tag=run-1]")
    with page.expect_download() as download:
        page.click("tr[data-tag=run-1] button.download")
    path = tmp_path / "run-1.h5"
    download.value.save_as(path)
    got = speeddata.read_hdf5(path)["example"]
    assert got["counter"].tolist() == list(range(2000))
    shot(page, "tags")
    assert errors == []


def test_dark_and_light_themes(browser, server):
    port = free_udp_port()
    s = server(config=example_config(port))
    backgrounds = {}
    for theme in ("dark", "light"):
        page, errors = open_page(browser, s.url, theme)
        pixel = "SpeedData.charts[0].canvas.getContext('2d').getImageData(2, 2, 1, 1).data"
        page.wait_for_function(f"SpeedData.charts.length > 0 && {pixel}[3] === 255",
                               timeout=20_000)                   # painted
        backgrounds[theme] = page.evaluate(f"Array.from({pixel})")
        shot(page, f"dashboard-{theme}")
        page.close()
        assert errors == []
    assert backgrounds["dark"][:3] == [0x11, 0x15, 0x1C]
    assert backgrounds["light"][:3] == [0xFF, 0xFF, 0xFF]


def test_a_page_of_ones_own_from_the_config_draws_its_charts(browser, server):
    port = free_udp_port()
    page_file = Path(__file__).resolve().parents[1] / "examples" / "rig.html"
    s = server(config={"web": {"pages": {"/rig": str(page_file)}},
                       "channels": [{"name": "example", "port": port,
                                     "schema": builtin_schema("example")}]})
    send(port=port, rate=1000, count=3000)
    page, errors = open_page(browser, s.url + "rig")
    page.wait_for_function("SpeedData.charts.length === 2 && "
                           "SpeedData.charts.every(c => c.series.t.length > 10)", timeout=20_000)
    assert page.evaluate("SpeedData.charts[0].ymin") == -1.2
    for k in (0, 1):
        assert page.evaluate(COUNT_INK, [k]) > 100
    dark = page.evaluate("Array.from(SpeedData.charts[1].canvas.getContext('2d')"
                         ".getImageData(2, 2, 1, 1).data)")
    assert dark[:3] == [0x11, 0x15, 0x1C]           # data-theme="dark" on a light page
    shot(page, "own-page")
    assert errors == []


# ---- charts engineers would rather look at ------------------------------------------------

@contextlib.contextmanager
def sending(port, **kw):
    """Example records (or ``kind=``) sent to ``port`` from a thread until the block ends."""
    stop = threading.Event()
    sender = threading.Thread(target=send, kwargs=dict(port=port, stop=stop.is_set, **kw))
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join()


def demo_config(port):
    return {"channels": [{"name": "example", "port": port, "schema": builtin_schema("example")},
                         {"name": "temperature", "port": port + 1,
                          "schema": builtin_schema("temperature"), "time_unit": "ms"}]}


def test_every_signal_of_the_temperature_channel_is_drawn_with_its_own_scale(browser, server):
    port = free_udp_port(count=2)
    s = server(config=demo_config(port))
    with sending(port + 1, kind="temperature", rate=20):
        page, errors = open_page(browser, s.url)
        page.wait_for_function("SpeedData.charts.length === 2 && SpeedData.charts[1].lanes"
                               ".length === 4", timeout=20_000)
        chart = page.evaluate("SpeedData.charts.findIndex(c => c.channels[0] === 'temperature')")
        units = page.evaluate(f"SpeedData.charts[{chart}].lanes.map(l => l.unit)")
        assert units == ["degC", "degF", "Pa", "%"]
        for name in ("temperature_c", "temperature_f", "pressure_pa", "humidity_pct"):
            # each signal spans a good part of its lane: none flattened by another's scale
            wait_for(lambda: (page.evaluate(LANE, [chart, name]) or {}).get("extent", 0) > 0.3,
                     what=f"{name} drawn with visible variation")
        legend = page.locator(".stripchart-legend").nth(chart).inner_text()
        assert "[Pa]" in legend and "[degC]" in legend
        assert "device_id" in legend and "not charted" in legend    # named, not left out
        shot(page, "temperature-lanes")
        assert errors == []


def test_a_legend_click_hides_a_signal_and_a_second_shows_it_shift_solos(browser, server):
    port = free_udp_port()
    s = server(config=example_config(port))
    with sending(port, rate=1000):
        page, errors = open_page(browser, s.url)
        page.wait_for_function("SpeedData.charts.length > 0 && SpeedData.charts[0].frames > 5",
                               timeout=20_000)
        wait_for(lambda: (page.evaluate(LANE, [0, "ramp"]) or {}).get("n", 0) > 200,
                 what="the ramp drawn")
        item = page.locator(".stripchart-legend .item[data-signal='example.ramp']")
        item.click()
        assert page.evaluate(LANE, [0, "ramp"]) is None           # its lane is gone
        assert page.evaluate(COUNT_COLOR, [0, PALETTE[1], 1, 12]) < 20   # and its colour
        page.reload()                                               # the choice survives
        page.wait_for_function("SpeedData.charts.length > 0 && SpeedData.charts[0].frames > 2",
                               timeout=20_000)
        assert page.evaluate("SpeedData.charts[0].signals.find(s => s.name === 'ramp').hidden")
        page.locator(".stripchart-legend .item[data-signal='example.ramp']").click()
        wait_for(lambda: (page.evaluate(LANE, [0, "ramp"]) or {}).get("n", 0) > 200,
                 what="the ramp drawn again")
        page.locator(".stripchart-legend .item[data-signal='example.noise']").click(
            modifiers=["Shift"])                                    # solo
        assert page.evaluate("SpeedData.charts[0].visible.map(s => s.name)") == ["noise"]
        page.locator(".stripchart-legend .item[data-signal='example.noise']").click(
            modifiers=["Shift"])                                    # and back
        assert len(page.evaluate("SpeedData.charts[0].visible")) == 5
        assert errors == []


def test_history_meets_live_without_a_seam_when_the_overview_is_2_s_late(browser, server):
    port = free_udp_port()
    s = server(config=example_config(port))
    with sending(port, rate=1000):
        time.sleep(8)                             # history before the page opens

        def late(route):
            time.sleep(2)
            route.continue_()
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/overview?*", late)
        opened = time.time() * 1000
        page.goto(s.url)
        page.wait_for_function("SpeedData.charts.length > 0 && SpeedData.charts[0].fills > 0",
                               timeout=30_000)
        time.sleep(3)
        page.unroute("**/overview?*")
        got = page.evaluate(LANE, [0, "sine_wave"])
        p = page.evaluate("(() => { const c = SpeedData.charts[0]; "
                          "return [c.end - c.span, c.span, c.plotRect().width]; })()")
        x = lambda t: int((t - p[0]) / p[1] * p[2])
        # every pixel column from 6 s before the page opened to a second ago holds the sine
        wanted = set(range(x(opened - 6000), x(time.time() * 1000 - 1000)))
        missing = sorted(wanted - set(got["columns"]))
        assert len(wanted) > 100 and not missing, missing[:40]
        shot(page, "no-seam")
        assert errors == []


def test_the_cursor_shows_values_and_two_charts_share_cursor_and_zoom(browser, server):
    port = free_udp_port(count=2)
    s = server(config=demo_config(port))
    with sending(port, rate=500), sending(port + 1, kind="temperature", rate=20):
        page, errors = open_page(browser, s.url)
        page.wait_for_function("SpeedData.charts.length === 2 && SpeedData.charts.every("
                               "c => c.frames > 3)", timeout=20_000)
        time.sleep(1)
        canvas = page.locator("canvas.stripchart").first
        box = canvas.bounding_box()
        canvas.hover(position={"x": box["width"] * 0.97, "y": 30})
        tip = page.locator(".stripchart-tooltip").first
        wait_for(lambda: tip.is_visible(), what="the tooltip")
        text = tip.inner_text()
        assert "sine_wave" in text and "noise" in text
        assert any(ch.isdigit() for ch in text.split("sine_wave")[1].split("\n")[0]), text
        cursors = page.evaluate("SpeedData.charts.map(c => c.cursor)")
        assert cursors[0] is not None and cursors[0] == cursors[1]    # one crosshair
        for _ in range(3):
            page.mouse.wheel(0, -200)                                 # zoom in on chart 0
        page.wait_for_function("SpeedData.charts.every(c => !c.live) && "
                               "SpeedData.charts[0].span === SpeedData.charts[1].span && "
                               "SpeedData.charts[0].end === SpeedData.charts[1].end")
        assert page.evaluate("SpeedData.charts[0].span") < 60_000
        assert "paused" in page.locator(".chart-state").nth(1).inner_text()
        shot(page, "cursor-and-sync")
        page.locator(".live-button").nth(1).click()                   # live again, both
        page.wait_for_function("SpeedData.charts.every(c => c.live && c.span === 60000)")
        assert errors == []


def test_a_quiet_channel_says_when_its_last_record_came_and_jumps_there(browser, server):
    port = free_udp_port()
    s = server(config=example_config(port))
    send(port=port, rate=2000, count=5000)             # 2.5 s of records
    with speeddata.store.open(s.data, readonly=True) as st:
        wait_for(lambda: st["example"].count() == 5000, what="stored")
    time.sleep(1)
    page, errors = open_page(browser, s.url)
    page.wait_for_function("SpeedData.charts.length > 0", timeout=20_000)
    page.evaluate("SpeedData.charts[0].setView(Date.now() + 3600e3, 60e3)")   # an hour ahead
    note = page.locator(".stripchart-empty").first
    wait_for(lambda: note.is_visible() and "last record" in note.inner_text(),
             what="the note on the empty window")
    note.locator("button").click()
    page.wait_for_function("SpeedData.charts[0].history && "
                           "SpeedData.charts[0].history.example.t.length > 10", timeout=10_000)
    assert page.evaluate(COUNT_INK, [0]) > 50
    assert errors == []


def test_one_palette_readable_on_both_backgrounds(browser, server):
    s = server()
    page, errors = open_page(browser, s.url)
    palette = page.evaluate("SpeedData.PALETTE")
    themes = page.evaluate("SpeedData.THEME")

    def luminance(hex_):
        def f(c):
            c /= 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = (int(hex_[i:i + 2], 16) for i in (1, 3, 5))
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)

    for colour in palette:
        for theme in themes.values():
            a, b = sorted((luminance(colour), luminance(theme["bg"])), reverse=True)
            assert (a + 0.05) / (b + 0.05) >= 3.0, (colour, theme["bg"])
    assert errors == []


def test_a_port_typed_by_hand_and_the_senders_of_rejected_datagrams(browser, server):
    import socket
    s = server()
    page, errors = open_page(browser, s.url + "channels")
    page.wait_for_function("document.querySelectorAll('#free-ports option').length > 0")
    port = free_udp_port()
    page.fill("#name", "typed")
    page.fill("#port", "80")
    assert "26000 to 27000" in page.inner_text("#port-check")
    page.fill("#port", str(port))                     # any free one, not only the first 50
    assert page.inner_text("#port-check") == "free"
    page.fill("#schema", json.dumps(load_avro(builtin_schema("example"))))
    page.wait_for_function("document.querySelector('#schema-check').textContent.startsWith('ok')")
    page.select_option("#decimation", "minmax")
    page.fill("#decimation-n", "20")
    page.click("#register button[type=submit]")
    page.wait_for_selector("tr[data-channel=typed]")
    assert f"registered typed on UDP port {port}" in page.inner_text("#register-error")
    assert page.input_value("#name") == ""            # the form is cleared
    client = speeddata.Client(s.address)
    try:
        info = client.get_channel("typed")
        assert info.port == port and info.decimation == "minmax:20"
        wait_for(lambda: client.get_channel("typed").status == "running", what="the worker")
    finally:
        client.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sender = f"127.0.0.1:{sock.getsockname()[1]}"
        for _ in range(5):
            sock.sendto(b"\x02\xab\xcd", ("127.0.0.1", port))        # truncated records
    cell = page.locator("tr[data-channel=typed] td.rejected")
    wait_for(lambda: "truncated: 5" in cell.inner_text(), what="the rejects counted")
    cell.locator("summary").first.click()
    text = cell.inner_text()
    assert f"from {sender}, 3 bytes: 02 ab cd" in text, text
    page.click("tr[data-channel=typed] button.schema")              # opens under its row
    page.wait_for_selector("tr[data-channel=typed] + tr.schema-row pre")
    shot(page, "channels-typed-port")
    assert errors == []
