"""The daily report by mail: a real SMTP server receives text and HTML alternatives; the
HTML shows the attention items first (checked in headless chromium when installed, and
always with an HTML parser)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import Workspace
from .dailykit import FakeSystem
from .test_mail import SMTPServer, smtp, smtp_config  # noqa: F401 - the fixture

SUBJECT = re.compile(r"^\[Systraq\] fakehost daily \d{4}-\d{2}-\d{2}: (\d+) need attention$")


class Outline(HTMLParser):
    """The texts of the attention items and the order of the page's landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.landmarks: list[str] = []
        self.items: list[str] = []
        self.stack: list[str] = []
        self._in_item = False
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.landmarks.append(str(found["id"]))
        if tag == "li" and "attention" in self.landmarks[-1:]:
            self._in_item, self._text = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._in_item:
            self.items.append(self._text)
            self._in_item = False

    def handle_data(self, data: str) -> None:
        if self._in_item:
            self._text += data


def _mail_setup(ws: Workspace, smtp_server: SMTPServer, root: Path) -> None:
    smtp_server.start()
    smtp_config(ws, smtp_server.port)
    with (ws.config / "systraq.conf").open("a") as conf:
        conf.write('[daily]\ndisable = ["system", "logs", "audit"]\n')
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0


def test_the_mailed_report_arrives_with_text_and_html_parts(
        ws: Workspace, smtp: SMTPServer) -> None:  # noqa: F811
    system = FakeSystem(ws.root / "sys")
    system.add_account("toor", 0, "/root")
    system.add_account("<b>x</b>", 0, "/root")  # markup in a name stays text
    _mail_setup(ws, smtp, system.root)
    done = ws.run("daily", "--mail", "--root", str(system.root))
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "")
    [message] = smtp.inbox.messages
    match = SUBJECT.match(message["Subject"])
    assert match, message["Subject"]
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    body = text.get_content()
    assert body.startswith("systraq daily report for fakehost, ")
    assert f"{match.group(1)} need attention:" in body
    assert "  * account toor has uid 0" in body

    outline = Outline()
    outline.feed(html.get_content())
    assert outline.landmarks.index("attention") < outline.landmarks.index("chart") < \
        outline.landmarks.index("accounts")
    assert len(outline.items) == int(match.group(1))
    assert "account toor has uid 0" in outline.items
    assert "account <b>x</b> has uid 0" in outline.items
    assert "<b>x</b>" not in html.get_content()


def test_a_mail_system_that_is_down_keeps_the_report_in_the_spool(
        ws: Workspace, smtp: SMTPServer) -> None:  # noqa: F811
    system = FakeSystem(ws.root / "sys")
    smtp_config(ws, smtp.port)  # nothing listens yet
    down = ws.run("daily", "--mail", "--root", str(system.root))
    assert down.returncode == 2 and "1 message waits in the spool" in down.stderr
    smtp.start()
    up = ws.run("daily", "--mail", "--root", str(system.root))
    assert up.returncode in (0, 1), up.stderr
    assert len(smtp.inbox.messages) == 2  # the spooled one first, then today's
    assert all(m.get_content_type() == "multipart/alternative" for m in smtp.inbox.messages)


# A real browser engine: the attention items must be laid out, visible, near the top.
_PROBE = """<script>
const items = [...document.querySelectorAll('#attention li')].map(li => {
  const box = li.getBoundingClientRect(), style = getComputedStyle(li);
  return {text: li.textContent, top: box.top, height: box.height,
          visible: style.visibility === 'visible' && style.display !== 'none'};
});
const first = document.querySelector('section').getBoundingClientRect().top;
document.body.insertAdjacentHTML('beforeend', '<pre id="pro' + 'be">' +
  JSON.stringify({items, first}).replace(/</g, '&lt;') + '</pre>');
</script>"""


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_browser() is None, reason="chromium is not installed")
def test_attention_items_are_visible_first_in_a_browser(ws: Workspace, tmp_path: Path) -> None:
    from systraq.config import load_settings
    from systraq.daily.html import render_html
    from systraq.daily.job import build_report

    system = FakeSystem(ws.root / "sys")
    system.add_account("toor", 0, "/root")
    system.write("run/reboot-required", "")
    report = build_report(load_settings(ws.config, ws.state), system.root, time.time())
    page = tmp_path / "report.html"
    page.write_text(render_html(report).replace("</body>", _PROBE + "</body>"))
    done = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--window-size=1000,800", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    probe = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert probe, done.stderr[-2000:]
    found = json.loads(probe.group(1).replace("&lt;", "<").replace("&amp;", "&"))
    texts = [item["text"] for item in found["items"]]
    assert "account toor has uid 0" in texts and "a reboot is required" in texts
    for item in found["items"]:
        assert item["visible"] and item["height"] > 0
        assert 0 <= item["top"] < found["first"] and item["top"] < 800  # in the first screen
