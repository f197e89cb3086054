"""The frame of every HTML page leadscore writes: self-contained (no script, no font, nothing fetched)."""

from __future__ import annotations

import html

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1f2933; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } .sub { color: #52606d; margin-top: 0; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0 1.5rem; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #e4e7eb; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f5f7fa; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
svg text { font-size: 11px; fill: #1f2933; } svg text.t { font-size: 13px; font-weight: 600; }
"""


def page(title: str, subtitle: str, body: str, extra_style: str = "") -> str:
    """A whole page: ``body`` is trusted HTML built by the caller; title and subtitle are escaped here."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}{extra_style}</style></head><body>
<h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>
{body}
</body></html>
"""
