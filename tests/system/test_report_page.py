"""The campaign report page as a browser draws it: every chart on the page, with marks and ink."""

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from reports.campaign_page import render_report
from reports.campaign_quality import quality_table, summary_lines, weekly_trend

pytestmark = pytest.mark.slow

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


MEASURE = """<script>
const out = [...document.querySelectorAll('svg.chart')].map(svg => {
  const r = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('.mark')].filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
  return {name: svg.dataset.chart, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height, marks: marks.length};
});
const pre = document.createElement('pre'); pre.id = 'measure';
pre.textContent = JSON.stringify({charts: out, height: document.documentElement.scrollHeight});
document.body.appendChild(pre);
</script>"""


def _chromium(*args, timeout=60):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
             "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-extensions"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


def test_report_page_draws_every_chart_in_headless_chromium(demo_scale, tmp_path):
    from PIL import Image

    # A real browser is part of the suite (.ci/run installs it): without one this fails, saying how to get it.
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: `apt-get install chromium` (as .ci/run does), then run the tests "
                    "again", pytrace=False)

    cfg, as_of, scored = demo_scale
    as_of = pd.Timestamp(as_of)
    costs = pd.read_csv(cfg.data.campaigns.path).rename(columns={"Campaign": "campaign", "Cost": "cost"})
    campaigns = quality_table(scored, "campaign", costs, as_of, cfg.label.horizon_days)
    page = render_report(campaigns, quality_table(scored, "source", None, as_of, cfg.label.horizon_days),
                         weekly_trend(scored, "campaign", as_of), weekly_trend(scored, "source", as_of),
                         summary_lines(campaigns, None, None), "Campaign lead quality", "browser test", "notes")
    assert "https://" not in page and "<script" not in page  # nothing to fetch, nothing to run
    html_file = tmp_path / "index.html"
    html_file.write_text(page, encoding="utf-8")

    # Where each chart landed and how many of its marks have a size, measured by the browser itself.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium("--window-size=1280,900", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    measured = json.loads(re.search(r'<pre id="measure">(.*?)</pre>', dom.stdout, re.S).group(1).replace("&quot;", '"'))
    charts = {c["name"]: c for c in measured["charts"]}
    assert set(charts) == {"cost", "calibration", "tiers", "trend_leads", "trend_probability", "trend_sources"}
    for c in charts.values():
        assert c["w"] > 200 and c["h"] > 60 and c["marks"] > 0, c
        assert c["x"] + c["w"] <= 1280 + 1  # fits a laptop-width window

    # The screenshot of the real page: every chart's area holds drawn (non-background) pixels.
    shot = tmp_path / "report.png"
    height = int(measured["height"]) + 20
    taken = _chromium(f"--window-size=1280,{height}", f"--screenshot={shot}", html_file.as_uri())
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1280, height)
    for c in charts.values():
        box = image.crop((int(c["x"]), int(c["y"]), int(c["x"] + c["w"]), int(c["y"] + c["h"])))
        pixels = np.asarray(box)
        inked = (pixels < 235).mean()
        assert inked > 0.02, (c["name"], inked)
