"""The pages in a real headless Chromium (Debian's, driven by Playwright) against a real
`speeddata serve` fed over UDP: the live chart's pixels, a one-sample spike, zoom and back
to live, the registration form, a tag and its HDF5 download, and both themes. Screenshots
go to test-artifacts/ (ignored by git)."""

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


# the number of pixels of a colour (within a tolerance) in the plot area of chart k
COUNT_COLOR = """([k, rgb, top]) => {
  const c = SpeedData.charts[k];
  const ctx = c.canvas.getContext("2d");
  const r = c.ratio, w = c.canvas.width, h = c.canvas.height;
  const y1 = Math.floor((top === undefined ? 1 : top) * (h - 44 * r));
  const d = ctx.getImageData(Math.floor(50 * r), Math.floor(8 * r), w - Math.floor(60 * r), y1).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i+1] - rgb[1]) < 40 && Math.abs(d[i+2] - rgb[2]) < 40) n++;
  return n;
}"""
# pixels of the plot area (inside its frame) far from the background: what was drawn
COUNT_INK = """([k, top]) => {
  const c = SpeedData.charts[k];
  const ctx = c.canvas.getContext("2d");
  const r = c.ratio, w = c.canvas.width, h = c.canvas.height;
  const bg = ctx.getImageData(2, 2, 1, 1).data;
  const y1 = Math.floor((top === undefined ? 1 : top) * (h - 48 * r));
  const d = ctx.getImageData(Math.floor(53 * r), Math.floor(11 * r), w - Math.floor(66 * r), y1).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.max(Math.abs(d[i] - bg[0]), Math.abs(d[i+1] - bg[1]), Math.abs(d[i+2] - bg[2])) > 60) n++;
  return n;
}"""
BLUE = [0x1F, 0x4F, 0xD6]          # the light palette's first colour
PALETTE = [BLUE, [0xD6, 0x27, 0x28], [0x2C, 0xA0, 0x2C], [0xFF, 0x7F, 0x0E]]


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
        assert "example.sine_wave" in legend and "–" not in legend   # its latest value
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
    held = page.evaluate("SpeedData.charts[0].history.t.length")
    assert held > 100                         # the overview of an hour, at pixel resolution
    shot(page, "zoomed-out")
    assert page.evaluate(COUNT_INK, [0]) > 20
    page.once("dialog", lambda d: d.accept("the-hour"))
    page.locator(".tag-button").first.click()          # tag the range on screen
    page.wait_for_function("document.querySelector('.chart-status').textContent"
                           ".includes('tagged the-hour')")
    client = speeddata.Client(s.address)
    try:
        tag = client.tags()[0]
    finally:
        client.close()
    span = page.evaluate("SpeedData.charts[0].span") * 1e6
    assert tag["name"] == "the-hour" and abs((tag["end"] - tag["start"]) - span) < 3e6   # whole ms
    assert tag["channels"] == ["example"]
    page.locator(".live-button").first.click()
    assert page.evaluate("SpeedData.charts[0].live && SpeedData.charts[0].span === 60000")
    assert errors == []


def test_register_through_the_form_bad_schema_shown_then_remove(browser, server):
    s = server()
    page, errors = open_page(browser, s.url + "channels")
    page.wait_for_function("document.querySelectorAll('#port option').length > 0")
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
