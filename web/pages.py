"""The HTML the edge shows people: a referrer's status page, a share page, and the pages a
visitor sees when a link cannot take them to the shop. Every value is escaped."""

from __future__ import annotations

from html import escape

from refstream.rewards.rules import Campaign
from refstream.schemas.status import RewardKind
from refstream.web.status import ReferrerStatus

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.code{font:bold 1.6rem monospace;letter-spacing:.15em} .muted{color:#666}
.numbers td{font-size:1.2rem;text-align:right}
"""


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<meta name=robots content=noindex><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def problem_page(title: str, message: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p id=problem>{escape(message)}</p>")


def _money(amount_minor: int, currency: str, kind: str) -> str:
    if kind == RewardKind.POINTS:
        return f"{amount_minor} points"
    return f"{amount_minor / 100:.2f} {escape(currency)}"


def share_block(code: str, link: str, campaign: Campaign | None, discount_percent: int = 0
                ) -> str:
    name = f"campaign {escape(campaign.id)}" if campaign else "the referral programme"
    discount = (f"<p>Friends who follow it get {discount_percent}% off.</p>"
                if discount_percent else "")
    return (f"<section class=share data-code='{escape(code)}'>"
            f"<h2>Your link for {name}</h2>"
            f"<p>Your code: <span class=code id=code-{escape(code)}>{escape(code)}</span></p>"
            f"<p><a class=link href='{escape(link)}'>{escape(link)}</a></p>{discount}"
            f"<p><img class=qr id=qr-{escape(code)} alt='QR code of your link' "
            f"src='/qr/{escape(code)}.svg' width=200 height=200></p>"
            f"<p class=muted>Download the QR code as <a href='/qr/{escape(code)}.png'>PNG</a> "
            f"or <a href='/qr/{escape(code)}.svg'>SVG</a>.</p></section>")


def status_page(status: ReferrerStatus, shares: list[tuple[str, str, Campaign | None, int]],
                share_pages: list[tuple[str, str]]) -> str:
    numbers = (("clicks", "people who followed your link", status.clicks),
               ("signups", "signed up", status.signups),
               ("orders", "orders by people you referred", status.orders),
               ("qualified", "qualified referrals", status.qualified),
               ("held", "held for review", status.held),
               ("rejected", "rejected", status.rejected),
               ("rewards_due", "rewards that fell due", status.rewards_due))
    rows = "".join(f"<tr><th>{escape(label)}</th><td id=n-{key}>{value}</td></tr>"
                   for key, label, value in numbers)
    referrals = "".join(
        f"<tr class=referral><td>{escape(r.signed_up)}</td><td>{escape(r.status_words)}</td>"
        f"<td>{escape(r.reason or '')}</td></tr>" for r in status.referrals
    ) or "<tr><td colspan=3 class=muted>nobody yet</td></tr>"
    rewards = "".join(
        f"<tr class='reward {escape(w.status)}'><td>{_money(w.amount_minor, w.currency, w.kind)}"
        f"</td><td>{escape(w.status_words)}</td><td>{escape(w.reason)}</td></tr>"
        for w in status.rewards) or "<tr><td colspan=3 class=muted>none yet</td></tr>"
    blocks = "".join(share_block(code, link, campaign, discount)
                     for code, link, campaign, discount in shares)
    more = "".join(f"<li><a href='{escape(href)}'>{escape(label)}</a></li>"
                   for href, label in share_pages)
    more_html = f"<h2>Share another campaign</h2><ul>{more}</ul>" if more else ""
    as_of = (f"<p class=muted>Numbers as of {escape(status.snapshot_as_of)}.</p>"
             if status.snapshot_as_of else "")
    return page("Your referrals", f"""<h1>Your referrals</h1>{as_of}
<table class=numbers>{rows}</table>
<h2>People you referred</h2>
<table id=referrals><tr><th>signed up</th><th>status</th><th>why</th></tr>{referrals}</table>
<h2>Your rewards</h2>
<table id=rewards><tr><th>amount</th><th>status</th><th>for</th></tr>{rewards}</table>
{blocks}{more_html}
<p class=muted>This page's address is your private key to it: do not share it. Lost or
leaked? Ask the shop for a new one; the old address stops working.</p>""")
