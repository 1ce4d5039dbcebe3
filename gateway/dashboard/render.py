"""Templates (Jinja2, autoescaped) and what every page gets: the visitor, its CSRF token, flashes."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from . import views
from .session import CSRF_FIELD, Visitor

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(age=views.age, size=views.size, when=views.when, readable=views.readable,
                             public_url=views.public_url, parse_iso=views.parse_iso, csrf_field=CSRF_FIELD)

#: every page: no caching (they show live state), no framing (clickjacking), nothing from elsewhere
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


def qr_svg(qr: str) -> str:
    """The pairing QR drawn as inline SVG (segno: the same library as the terminal's QR)."""
    import segno

    return segno.make_qr(qr).svg_inline(scale=6, border=4, dark="#000", light="#fff",
                                        title="WhatsApp pairing QR code", svgclass="qr-code")


def qr_ref(qr: str) -> str:
    """A short fingerprint of a QR, so a page (and a test) can tell a new one from the last."""
    return hashlib.sha256(qr.encode()).hexdigest()[:12]


templates.env.globals.update(qr_svg=qr_svg, qr_ref=qr_ref)


def page(request: Request, name: str, who: Visitor | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.update(request=request, who=who, now=time.time(),
                   csrf=who.session.csrf if who else context.get("csrf", ""),
                   flashes=who.session.take_flashes() if who and not context.get("fragment") else [])
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=HEADERS)
