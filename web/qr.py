"""QR codes of share links, as SVG (to print) and PNG (to send), made with segno; the
edge serves them and `links issue --qr-dir` writes them."""

from __future__ import annotations

import io

import segno

QR_ERROR_LEVEL = "m"  # survives ~15% damage: a printed code with a crease still scans
SVG_SCALE = 4
PNG_SCALE = 8


def qr_svg(link: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(link, error=QR_ERROR_LEVEL, micro=False).save(
        buffer, kind="svg", scale=SVG_SCALE, xmldecl=False, title="referral link QR code")
    return buffer.getvalue()


def qr_png(link: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(link, error=QR_ERROR_LEVEL, micro=False).save(buffer, kind="png",
                                                             scale=PNG_SCALE)
    return buffer.getvalue()
