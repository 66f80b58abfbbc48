"""The admin page as HTML, rendered on the server from what `dashboard` read: no JavaScript,
a meta refresh, plain forms for replay. Every value is escaped: names and errors are data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from daemon import times
from daemon.pipedrive.account_usage import Counts
from daemon.status import dashboard

REFRESH_S = 5
CSRF_FIELD = "csrf"

_STYLE = """
:root { color-scheme: light; --line: #d9dee5; --muted: #5b6573; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1d2530; background: #f6f7f9; }
header { background: #1d2530; color: #fff; padding: 10px 16px; display: flex;
  flex-wrap: wrap; gap: 4px 16px; align-items: baseline; }
header h1 { font-size: 17px; margin: 0; }
header span { color: #c4cbd6; font-size: 13px; }
main { padding: 4px 16px 24px; max-width: 1400px; }
h2 { font-size: 15px; margin: 20px 0 6px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 12px; background: #fafbfc; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 12em; max-width: 30em; }
td.attempts { white-space: normal; min-width: 9em; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.muted { color: var(--muted); }
.state { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: #e6e9ee; }
.state-ok, .state-delivered { background: #dff3e4; color: #17602b; }
.state-failing, .state-disabled, .state-dead { background: #fbe1e1; color: #8a1c1c; }
.state-retrying, .state-paused, .state-orphaned, .state-pending { background: #fdf0d5;
  color: #7a4d00; }
.attempt { display: inline-block; margin: 0 4px 2px 0; }
.flash { background: #e3effd; border: 1px solid #b6d2f5; padding: 8px 12px; border-radius: 6px;
  margin-top: 12px; }
form { margin: 0; }
button { font: inherit; font-size: 13px; padding: 3px 10px; border-radius: 5px;
  border: 1px solid #8a96a8; background: #fff; cursor: pointer; }
button:hover { background: #eef1f5; }
"""


@dataclass(frozen=True)
class SubscriptionInfo:
    """What the config says of a subscription, beside what the database says."""

    trigger: str
    account: str


@dataclass(frozen=True)
class Page:
    now: datetime
    subscriptions: Sequence[dashboard.SubscriptionRow]
    configured: Mapping[str, SubscriptionInfo]
    accounts: Mapping[str, Counts]
    recent: dashboard.Recent
    csrf_token: str
    flash: str | None = None


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _time(moment: datetime | None) -> str:
    if moment is None:
        return '<span class="muted">-</span>'
    return f'<time datetime="{times.format_iso(moment)}">{times.format_wall(moment)}</time>'


def _age(now: datetime, moment: datetime | None) -> str:
    if moment is None:
        return '<span class="muted">-</span>'
    return times.format_age((now - moment).total_seconds())


def _event(event_id: str) -> str:
    """An event id, shortened: the full one is in the title (and the row's data-event)."""
    short = event_id if len(event_id) <= 16 else event_id[:16] + "…"
    return f'<code title="{_e(event_id)}">{_e(short)}</code>'


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _state(name: str) -> str:
    return f'<span class="state state-{_e(name)}">{_e(name)}</span>'


def _subscription_state(row: dashboard.SubscriptionRow) -> str:
    """The state as people spell it, its reason in the title."""
    state = row.gauges.state
    title = f' title="{_e(row.state_reason)}"' if row.state_reason else ""
    return f'<span class="state state-{_e(state.value)}"{title}>{_e(state.label)}</span>'


def _replay_form(page: Page, label: str, *, letter: int | None = None, subscription: str) -> str:
    target = f'<input type="hidden" name="subscription" value="{_e(subscription)}">'
    if letter is not None:
        target += f'<input type="hidden" name="id" value="{letter}">'
    return (
        f'<form method="post" action="replay">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{_e(page.csrf_token)}">{target}'
        f'<button type="submit">{_e(label)}</button></form>'
    )


def _table(headers: Sequence[str], rows: Sequence[str], empty: str, table_id: str) -> str:
    head = "".join(
        f'<th class="num">{_e(h[1:])}</th>' if h.startswith("#") else f"<th>{_e(h)}</th>"
        for h in headers
    )
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}" class="muted">{_e(empty)}</td></tr>'
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _subscriptions(page: Page) -> str:
    rows = []
    for row in page.subscriptions:
        g = row.gauges
        info = page.configured.get(g.subscription)
        replay = (
            _replay_form(page, f"Replay all {g.dead}", subscription=g.subscription)
            if g.dead
            else ""
        )
        error = f'<span class="muted">{_e(row.shown_error)}</span>' if row.shown_error else ""
        rows.append(
            f'<tr data-subscription="{_e(g.subscription)}"><td><b>{_e(g.subscription)}</b></td>'
            f"<td>{_e(info.trigger if info else '')}</td>"
            f"<td>{_e(info.account if info else '')}</td>"
            f"<td>{_subscription_state(row)}</td>"
            f'<td class="num" data-col="pending">{g.pending}</td>'
            f'<td class="num">{_age(page.now, g.oldest_pending_at) if g.pending else "-"}</td>'
            f'<td class="num" data-col="delivered">{_e(row.delivered)}</td>'
            f'<td class="num" data-col="dead">{g.dead}</td>'
            f'<td>{_time(row.last_poll_at)}</td><td class="wrap">{error}</td><td>{replay}</td></tr>'
        )
    headers = [
        "Subscription", "Trigger", "Account", "State", "#Pending", "#Oldest", "#Delivered",
        "#Dead", "Last poll", "Last error", "",
    ]  # fmt: skip
    return _table(headers, rows, "No subscriptions.", "subscriptions")


def _accounts(page: Page) -> str:
    rows = [
        f'<tr data-account="{_e(name)}"><td><b>{_e(name)}</b></td>'
        f'<td class="num" data-col="calls">{day.calls}</td>'
        f'<td class="num" data-col="tokens">{day.tokens}</td>'
        f'<td class="num">{day.rate_limit_waits}</td></tr>'
        for name, day in sorted(page.accounts.items())
    ]
    return _table(
        ["Account", "#Calls today", "#Tokens today", "#Rate-limit waits"],
        rows,
        "No accounts.",
        "accounts",
    )


def _attempt(attempt: dashboard.Attempt) -> str:
    outcome = str(attempt.status) if attempt.status is not None else "no reply"
    ok = attempt.error is None
    title = _e(attempt.error or f"{attempt.duration_ms} ms")
    css = "state-delivered" if ok else "state-dead"
    return (
        f'<span class="attempt state {css}" title="{title}">#{attempt.attempt} {_e(outcome)}</span>'
    )


def _deliveries(page: Page) -> str:
    rows = []
    for d in page.recent.deliveries:
        if d.delivered_at is not None:
            state, when = "delivered", _time(d.delivered_at)
        else:
            state = "retrying" if d.attempts else "pending"
            when = "next " + _time(d.next_attempt_at)
        last_error = None  # what the consumer is doing wrong now, not what it did then
        if d.delivered_at is None:
            last_error = next((a.error for a in reversed(d.attempts) if a.error), None)
        rows.append(
            f'<tr data-event="{_e(d.event_id)}"><td>{_event(d.event_id)}</td>'
            f"<td>{_e(d.subscription)}</td><td>{_e(d.event_type)}</td><td>{_e(d.item_id)}</td>"
            f"<td>{_time(d.created_at)}</td><td>{_state(state)} {when}</td>"
            f'<td class="attempts">{" ".join(_attempt(a) for a in d.attempts) or "-"}</td>'
            f'<td class="wrap muted">{_e(last_error)}</td></tr>'
        )
    headers = ["Event", "Subscription", "Trigger", "Item", "Detected", "State", "Attempts", "Error"]
    return _table(headers, rows, "Nothing queued or delivered yet.", "deliveries")


def _dead_letters(page: Page) -> str:
    rows = [
        f'<tr data-letter="{letter.id}" data-event="{_e(letter.event_id)}">'
        f"<td>{_event(letter.event_id)}</td>"
        f"<td>{_e(letter.subscription)}</td><td>{_e(letter.event_type)}</td>"
        f"<td>{_e(letter.item_id)}</td><td>{_time(letter.dead_at)}</td>"
        f'<td class="num">{letter.attempts}</td><td class="num">{_e(letter.last_status)}</td>'
        f'<td class="wrap">{_e(letter.last_error)}</td>'
        f"<td>{_replay_form(page, 'Replay', letter=letter.id, subscription=letter.subscription)}"
        "</td></tr>"
        for letter in page.recent.dead_letters
    ]
    headers = [
        "Event", "Subscription", "Trigger", "Item", "Dead since", "#Attempts", "#Status",
        "Last error", "",
    ]  # fmt: skip
    return _table(headers, rows, "No dead letters.", "dead-letters")


def _document(body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}; url=./">
<title>pipedrive-triggers</title>
<style>{_STYLE}</style>
</head>
<body>
{body}
</body>
</html>
"""


def unavailable(reason: str) -> str:
    """The page while its data cannot be read: it keeps refreshing until it can."""
    return _document(
        f"<header><h1>pipedrive-triggers</h1><span>refreshes every {REFRESH_S}s</span></header>"
        f'<main><p class="flash" role="alert">Not available: {_e(reason)}.</p></main>'
    )


def render(page: Page) -> str:
    dead = page.recent.dead_total
    shown = len(page.recent.dead_letters)
    dead_note = f" (newest {shown} of {dead})" if dead > shown else ""
    flash = f'<p class="flash" role="status">{_e(page.flash)}</p>' if page.flash else ""
    return _document(f"""<header><h1>pipedrive-triggers</h1>
<span>{_plural(len(page.subscriptions), "subscription")} · {_plural(dead, "dead letter")} ·
updated {page.now:%Y-%m-%d %H:%M:%S} UTC · refreshes every {REFRESH_S}s</span></header>
<main>{flash}
<h2>Subscriptions</h2>
{_subscriptions(page)}
<h2>Pipedrive API today <span class="muted">(UTC day, recorded every few seconds)</span></h2>
{_accounts(page)}
<h2>Dead letters{_e(dead_note)}</h2>
{_dead_letters(page)}
<h2>Last {dashboard.RECENT_LIMIT} deliveries</h2>
{_deliveries(page)}
</main>""")
