"""The web demo in real headless Chromium (Debian's, through chromedriver) against a real `streamrt serve`.

The fake camera plays a deterministic shapes-world clip (y4m). Oracles: the server's own messages
(every text event the page received is what the page shows; answers sit under their question; the
HUD shows numbers from `stats`), the protocol's counters (frames sent by the page arrive: stats
frames_in grows), and the pixels: the generation canvas and a screenshot of it are not blank, and with
the trained built-in generator the canvas shows the prompt's colour (red, then blue after the live
prompt switch). Error
paths: a wrong token (E_AUTH: refused, no retry), a full server (the page waits, then connects by
itself when a slot frees), a dropped open session (a new one opens by itself), camera permission
denied.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image
from selenium.webdriver.common.by import By

PROBE = """
const d = window.streamrtDemo, c = document.getElementById('conn');
return {sent: d.sent, out: d.framesOut, texts: d.texts, answers: d.answers, state: c.dataset.state,
        conn: document.getElementById('conn-text').textContent,
        banner: document.getElementById('banner').hidden ? '' : document.getElementById('banner').textContent};
"""

RECORD = """
window.seen = [];
window.streamrtDemo.client.addEventListener('text', (e) => window.seen.push(e.detail));
"""


def wait(drv, cond, timeout: float = 20.0, what: str = ""):
    """Poll PROBE until cond(state) is true; the last state in the failure message."""
    end = time.monotonic() + timeout
    st = {}
    while time.monotonic() < end:
        st = drv.execute_script(PROBE)
        if cond(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {st}")


def canvas_pixels(drv) -> np.ndarray:
    """The generation canvas' pixels, read inside the page: [H, W, 4] uint8."""
    w, h, data = drv.execute_script(
        "const c = document.getElementById('out'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);"
        "return [c.width, c.height, Array.from(d.data)];"
    )
    return np.asarray(data, dtype=np.uint8).reshape(h, w, 4)


def dominant(px: np.ndarray) -> int:
    """The strongest colour channel (0 red, 1 green, 2 blue) over the canvas' bright pixels."""
    rgb = px[..., :3].reshape(-1, 3).astype(np.float32)
    bright = rgb[rgb.max(axis=1) > 80]
    return int(bright.mean(axis=0).argmax()) if len(bright) else -1


def test_live_demo_understand_and_generate(served, models, browser, tmp_path) -> None:
    drv = browser
    drv.get(f"{served.http}/?mode=understand")
    wait(drv, lambda s: s["state"] == "open", what="the session to open")
    drv.execute_script(RECORD)
    st = wait(drv, lambda s: s["sent"] >= 6, what="camera frames to be sent")
    assert st["banner"] == ""

    # commentary: the server's text events, shown on the page as they are
    seen = []
    end = time.monotonic() + 30
    while time.monotonic() < end and not any(t["text"] and not t["question_id"] for t in seen):
        time.sleep(0.3)
        seen = drv.execute_script("return window.seen")
    said = [t for t in seen if t["text"] and not t["question_id"]]
    assert said, f"no commentary text from the server within 30 s: {seen[-5:]}"
    rows = drv.execute_script(
        "return Array.from(document.querySelectorAll('#commentary li')).map(li => li.querySelector('.text').textContent)"
    )
    latest = {t["segment_id"]: t["text"] for t in said}  # the newest version of each segment
    assert any(txt in rows for txt in latest.values()), (latest, rows)

    # a question, answered inline right under it with a stream time
    drv.find_element(By.ID, "question").send_keys("how many objects are there?")
    drv.find_element(By.CSS_SELECTOR, "#ask-form button").click()
    wait(drv, lambda s: s["answers"] >= 1, timeout=30, what="an answer")
    qa = drv.execute_script(
        "const q = document.querySelector('#commentary li.question'); const a = q.nextElementSibling;"
        "return [q.innerText, a.className, a.querySelector('.t').textContent, a.querySelector('.text').textContent];"
    )
    assert "how many objects are there?" in qa[0] and "answer" in qa[1], qa
    assert qa[2].endswith(" s"), qa  # the stream time of the chunk that answered
    answers = [t for t in drv.execute_script("return window.seen") if t["question_id"] and t["final"]]
    assert answers and (answers[-1]["text"] or "(no answer)") == qa[3]
    if models.trained_vlm:  # the trained model speaks the shapes world's language and counts
        from streamrt.synth import parse
        from streamrt.synth.language import NUMBERS

        assert any(parse(t["text"]) for t in drv.execute_script("return window.seen") if t["final"]), seen
        assert any(w in answers[-1]["text"].lower().split() for w in NUMBERS), answers[-1]

    # the HUD shows the server's stats: frames came in at a positive rate
    hud = drv.execute_script(
        "return ['hud-fps-in','hud-p50','hud-miss'].map(id => document.getElementById(id).textContent)"
    )
    assert float(hud[0]) > 0 and hud[1] != "–" and hud[2].endswith("%"), hud

    (tmp_path / "understand.png").write_bytes(drv.get_screenshot_as_png())

    # generation: text to video drawn on the canvas, then a live prompt switch
    drv.find_element(By.ID, "mode-generate").click()
    base = wait(drv, lambda s: s["state"] == "open" and s["out"] > 0, what="generated frames")["out"]
    wait(drv, lambda s: s["out"] >= base + 6, what="a steady flow of generated frames")
    px = canvas_pixels(drv)
    assert px[..., 3].min() == 255 and px[..., :3].std() > 5, "generation canvas is blank"
    if models.gen is None:  # the trained generator draws the prompt: "a red circle" (the page's default)
        assert dominant(px) == 0, dominant(px)
    drv.find_element(By.ID, "prompt").clear()
    drv.find_element(By.ID, "prompt").send_keys("a blue square")
    drv.find_element(By.CSS_SELECTOR, "#prompt-form button").click()
    end = time.monotonic() + 15
    while time.monotonic() < end and "applied" not in drv.find_element(By.ID, "prompt-state").text:
        time.sleep(0.2)
    assert "prompt applied from frame" in drv.find_element(By.ID, "prompt-state").text
    if models.gen is None:  # ... and after the live switch, a blue square
        end = time.monotonic() + 10
        while time.monotonic() < end and dominant(canvas_pixels(drv)) != 2:
            time.sleep(0.3)
        assert dominant(canvas_pixels(drv)) == 2

    # the screenshot shows the canvas: its area is not blank and not the page background
    png = drv.get_screenshot_as_png()
    (tmp_path / "generate.png").write_bytes(png)
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    r = drv.execute_script(
        "const b = document.getElementById('out').getBoundingClientRect(); return [b.x, b.y, b.width, b.height, devicePixelRatio];"
    )
    x, y, w, h = (int(v * r[4]) for v in r[:4])
    region = shot[y : y + h, x : x + w].reshape(-1, 3).astype(np.float32)
    assert w > 50 and h > 50 and region.std(axis=0).mean() > 5, f"canvas area blank in screenshot {r}"

    # restyling the camera: frames go out and come back; the page measures end-to-end latency
    drv.find_element(By.ID, "restyle").click()
    sent0 = wait(drv, lambda s: s["state"] == "open", what="the video-to-video session")["sent"]
    wait(drv, lambda s: s["sent"] >= sent0 + 5, what="camera frames in video-to-video mode")
    end = time.monotonic() + 10
    while time.monotonic() < end and drv.find_element(By.ID, "hud-e2e").text in ("–", ""):
        time.sleep(0.2)
    assert float(drv.find_element(By.ID, "hud-e2e").text) > 0


def test_camera_denied_is_explained(served, make_chrome) -> None:
    drv = make_chrome(None, deny_camera=True)
    drv.get(f"{served.http}/?mode=understand")
    st = wait(drv, lambda s: s["banner"] != "", timeout=15, what="the camera error")
    assert "Camera access denied" in st["banner"], st
    assert drv.execute_script(PROBE)["sent"] == 0


def test_wrong_token_full_server_and_reconnect(make_server, make_chrome, fake_cam) -> None:
    from streamrt.client import Client

    guarded = make_server("--token", "s3cret-token", "--max-sessions", "1")
    drv = make_chrome(fake_cam)
    drv.get(f"{guarded.http}/?mode=generate&token=wrong-token")
    st = wait(drv, lambda s: s["state"] == "failed", what="the refusal")
    assert "token" in st["banner"] and "E_AUTH" in st["banner"], st
    time.sleep(1.5)
    assert drv.execute_script(PROBE)["state"] == "failed"  # no retry loop on a wrong token

    with Client(guarded.url, "generate", {"prompt": "a red circle"}, token="s3cret-token"):  # the only slot
        drv.get(f"{guarded.http}/?mode=generate&token=s3cret-token")
        st = wait(drv, lambda s: "full" in s["banner"], what="the server-full notice")
        assert st["state"] in ("reconnecting", "connecting"), st
    # the slot is free again: the page connects by itself and frames flow
    st = wait(
        drv, lambda s: s["state"] == "open" and s["out"] > 2, timeout=30, what="the automatic reconnect"
    )
    assert st["banner"] == ""
    # an open session that drops (network hiccup): the page opens a new session by itself
    drv.execute_script("window.streamrtDemo.client.ws.close()")
    again = wait(drv, lambda s: s["state"] == "open" and s["conn"] != st["conn"], what="a new session")
    out = again["out"]
    wait(drv, lambda s: s["out"] > out + 2, what="frames on the new session")


def test_js_client_header_matches_the_python_codec_and_page_fits_a_phone(served, make_chrome) -> None:
    """streamrt-client.js encodes and decodes the 32-byte header exactly like streamrt.server.protocol."""
    from streamrt.server import protocol as P

    drv = make_chrome(None, width=390, height=844)  # a phone-sized window
    drv.get(f"{served.http}/?mode=generate")
    wait(drv, lambda s: s["state"] == "open", what="the session to open")
    assert drv.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    cases = [(0, 1_700_000_000_123_456, -1, 0, 0, b"\xff\xd8abc"), (2**32 - 1, 5, 7, 640, 360, b"\x00" * 9)]
    for seq, cap, ref, w, h, payload in cases:
        js = drv.execute_async_script(
            "const [seq, cap, ref, w, h, payload, done] = arguments;"
            "import('/streamrt-client.js').then((m) => {"
            "  const buf = m.encodeFrame({seq, captureUs: cap, refSeq: ref, width: w, height: h}, new Uint8Array(payload));"
            "  const back = m.decodeFrame(buf);"
            "  done({bytes: Array.from(new Uint8Array(buf)), back: {...back.header, payload: Array.from(back.payload)}});"
            "});",
            seq,
            cap,
            ref,
            w,
            h,
            list(payload),
        )
        want = P.encode_frame(P.FrameHeader(P.KIND_INPUT, "jpeg", seq, cap, ref, w, h), payload)
        assert bytes(js["bytes"]) == want
        out = P.encode_frame(
            P.FrameHeader(P.KIND_OUTPUT, "png", seq, cap, ref, w, h, P.FLAG_DEGRADED), payload
        )
        back = drv.execute_async_script(
            "const [bytes, done] = arguments;"
            "import('/streamrt-client.js').then((m) => { const f = m.decodeFrame(new Uint8Array(bytes).buffer);"
            " done({...f.header, payload: Array.from(f.payload)}); });",
            list(out),
        )
        assert back == {
            "kind": 2,
            "codec": "png",
            "flags": P.FLAG_DEGRADED,
            "seq": seq,
            "width": w,
            "height": h,
            "captureUs": cap,
            "refSeq": ref,
            "payload": list(payload),
        }
