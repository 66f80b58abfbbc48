"""Deterministic demo data: the same seed always builds the same account, ids and times."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from daemon.dev.sandbox import bodies, clock, custom_fields
from daemon.dev.sandbox.state import Store

# Fixed, in the past: seeded times must not depend on when the sandbox starts.
SEED_EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

DEFAULT_STAGES = ["Qualified", "Contact Made", "Demo Scheduled", "Proposal Made", "Negotiations"]
PARTNER_STAGES = ["Prospect", "Intro Call", "Terms Sent", "Signed"]
FIRST_NAMES = [
    "Maria", "James", "Aino", "Lukas", "Sofia", "Daniel", "Emma", "Marko", "Olivia", "Jonas",
    "Chloe", "Rasmus", "Isabel", "Tomas", "Hanna", "Oskar", "Laura", "Mikk", "Grace", "Henrik",
]  # fmt: skip
LAST_NAMES = [
    "Tamm", "Smith", "Virtanen", "Schmidt", "Rossi", "Novak", "Kask", "Garcia", "Jensen",
    "Dubois", "Kowalski", "Berg", "Martin", "Saar", "Lopez", "Weber", "Ilves", "Murphy",
]  # fmt: skip
COMPANIES = [
    ("Northwind Logistics", "northwind.io"),
    ("Baltic Timber Works", "baltictimber.ee"),
    ("Helio Solar GmbH", "heliosolar.de"),
    ("Pinecrest Dental", "pinecrestdental.com"),
    ("Lumen Analytics", "lumenanalytics.co"),
    ("Aurora Foods", "aurorafoods.fi"),
    ("Granite & Co Architects", "granite-arch.com"),
    ("Bluefin Marine Supply", "bluefinmarine.no"),
]
DEAL_TOPICS = ["annual licence", "pilot", "support renewal", "expansion", "onboarding package"]
ACTIVITY_TYPES = [("call", "Call"), ("meeting", "Meeting"), ("email", "Email"), ("task", "Task")]
# Custom fields of the kinds accounts use most: (name, field_type, option labels). Activities
# get none: API v2 activities carry no `custom_fields` (absent from the v2 spec's activity).
CUSTOM_FIELDS: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "deal": (
        ("Purchase order", "varchar", ()),
        ("Discount %", "double", ()),
        ("Lead source", "enum", ("Website", "Referral", "Trade fair", "Cold call")),
        ("Modules", "set", ("CRM", "Analytics", "Integrations", "Training")),
        ("Contract start", "date", ()),
        ("Technical contact", "people", ()),
    ),
    "person": (
        ("LinkedIn profile", "varchar", ()),
        ("Satisfaction score", "double", ()),
        ("Preferred language", "enum", ("English", "Estonian", "Finnish", "German")),
        ("Interests", "set", ("Newsletter", "Webinars", "Events", "Case studies")),
        ("First met", "date", ()),
        ("Referred by", "people", ()),
    ),
    "organization": (
        ("Account notes", "text", ()),
        ("Credit limit", "double", ()),
        ("Segment", "enum", ("SMB", "Mid-market", "Enterprise")),
        ("Regions", "set", ("Baltics", "Nordics", "DACH", "UK & Ireland")),
        ("Customer since", "date", ()),
        ("Main contact", "people", ()),
    ),
}
ACCOUNT_NOTES = [
    "Pays on time.\nPrefers one invoice a quarter.",
    "Procurement signs off on anything above 10k.",
    "Asked for a reference call with a customer in their sector.",
]


def seed_minimum(store: Store, owner_name: str, owner_email: str) -> None:
    """Only what Pipedrive always has: the token's user and one pipeline with stages."""
    store.add_user(owner_name, owner_email)
    store.add_pipeline("Pipeline", list(DEFAULT_STAGES))


def seed_demo(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    moment = [SEED_EPOCH]

    def tick(max_minutes: int = 600) -> datetime:
        moment[0] += timedelta(seconds=rng.randint(60, max_minutes * 60))
        return moment[0]

    real_now = store.now
    store.now = lambda: moment[0]
    try:
        seed_minimum(store, "Kristi Kaljuste", "kristi@sandbox-trading.example")
        for first, last in [("Peeter", "Mets"), ("Anna", "Lind"), ("Samuel", "Okafor")]:
            store.add_user(f"{first} {last}", f"{first.lower()}@sandbox-trading.example")
        store.add_pipeline("Partnerships", list(PARTNER_STAGES))
        codes = _define_custom_fields(store)
        user_ids = sorted(store.users)
        orgs = []
        for name, domain in COMPANIES:
            tick(120)
            orgs.append((store.add_organization(name, owner_id=rng.choice(user_ids)), domain))
        persons = []
        for _ in range(20):
            tick(120)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            org, domain = rng.choice(orgs)
            persons.append(
                store.add_person(
                    f"{first} {last}",
                    org_id=org["id"],
                    owner_id=rng.choice(user_ids),
                    email=f"{first.lower()}.{last.lower()}@{domain}",
                    phone=f"+372 5{rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                )
            )
        stage_ids = sorted(store.stages)
        deals = []
        for _ in range(24):
            tick()
            person = rng.choice(persons)
            fields = {
                "title": f"{store.organizations[person['org_id']]['name']} "
                f"{rng.choice(DEAL_TOPICS)}",
                "value": rng.randrange(500, 50_000, 250),
                "currency": "EUR",
                "owner_id": rng.choice(user_ids),
                "person_id": person["id"],
                "org_id": person["org_id"],
                "stage_id": rng.choice(stage_ids),
                "expected_close_date": (
                    moment[0].date() + timedelta(days=rng.randint(7, 90))
                ).isoformat(),
            }
            deals.append(
                store.create_deal(bodies.validate(fields, bodies.DEAL_FIELDS), "ManuallyCreated")
            )
        for deal in deals[::4]:
            tick()
            store.update_deal(deal["id"], {"status": "won"})
        for deal in deals[1::6]:
            tick()
            store.update_deal(deal["id"], {"status": "lost", "lost_reason": "Went with competitor"})
        tick()
        store.archive_deal(deals[-1]["id"])
        for _ in range(40):
            tick(240)
            deal = rng.choice(deals[:-1])
            kind, label = rng.choice(ACTIVITY_TYPES)
            due: date = moment[0].date() + timedelta(days=rng.randint(-5, 20))
            fields = {
                "subject": f"{label} with {store.persons[deal['person_id']]['first_name']}",
                "type": kind,
                "owner_id": deal["owner_id"],
                "deal_id": deal["id"],
                "org_id": deal["org_id"],
                "participants": [{"person_id": deal["person_id"], "primary": True}],
                "due_date": due.isoformat(),
                "due_time": f"{rng.randint(7, 16):02d}:{rng.choice((0, 15, 30, 45)):02d}",
                "duration": rng.choice(["00:15", "00:30", "01:00"]),
                "done": due < moment[0].date(),
            }
            store.create_activity(bodies.validate(fields, bodies.ACTIVITY_FIELDS))
        _fill_custom_fields(store, codes, random.Random(f"custom fields {seed}"))
    finally:
        store.now = real_now


def _define_custom_fields(store: Store) -> dict[str, dict[str, dict[str, Any]]]:
    """`CUSTOM_FIELDS`, defined: entity -> field name -> definition."""
    return {
        entity: {
            name: custom_fields.define(store, entity, name, field_type, options)
            for name, field_type, options in fields
        }
        for entity, fields in CUSTOM_FIELDS.items()
    }


def _fill_custom_fields(
    store: Store, codes: dict[str, dict[str, dict[str, Any]]], rng: random.Random
) -> None:
    """Of each three records by id, the first gets every field (a people field stays null when
    no other person fits), the second about half of them, the third none.

    `rng` is a stream of its own, so the records above are what they were before custom fields
    were seeded. The values count as entered with the record: its update_time stays.
    """
    members: dict[int, list[int]] = {}
    for person in store.persons.values():
        members.setdefault(person["org_id"], []).append(person["id"])

    def contact(org_id: int | None, besides: int | None) -> int | None:
        choices = [p for p in members.get(org_id or 0, []) if p != besides]
        return rng.choice(choices) if choices else None

    def days(record: dict[str, Any], low: int, high: int) -> str:
        start = clock.parse_any(record["add_time"]).date()
        return (start + timedelta(days=rng.randint(low, high))).isoformat()

    makers: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
        "deal": {
            "Purchase order": lambda deal: f"PO-{rng.randint(10_000, 99_999)}",
            "Discount %": lambda deal: rng.choice([2.5, 5.0, 7.5, 10.0, 12.5]),
            "Contract start": lambda deal: days(deal, 30, 120),
            "Technical contact": lambda deal: contact(deal["org_id"], deal["person_id"]),
        },
        "person": {
            "LinkedIn profile": lambda person: (
                "https://www.linkedin.com/in/" + person["name"].lower().replace(" ", "-")
            ),
            "Satisfaction score": lambda person: round(rng.uniform(6.0, 10.0), 1),
            "First met": lambda person: days(person, -400, -1),
            "Referred by": lambda person: contact(person["org_id"], person["id"]),
        },
        "organization": {
            "Account notes": lambda org: rng.choice(ACCOUNT_NOTES),
            "Credit limit": lambda org: float(rng.randrange(5_000, 100_000, 2_500)),
            "Customer since": lambda org: days(org, -2_000, -30),
            "Main contact": lambda org: contact(org["id"], None),
        },
    }
    for entity, fields in codes.items():
        table = store.table(entity)
        for position, record_id in enumerate(sorted(table)):
            record = table[record_id]
            if position % 3 == 2:
                continue
            values: dict[str, Any] = {}
            for name, field in fields.items():
                if position % 3 == 1 and rng.random() < 0.5:
                    continue
                option_ids = [option["id"] for option in field["options"] or ()]
                if field["field_type"] == "enum":
                    values[field["field_code"]] = rng.choice(option_ids)
                elif field["field_type"] == "set":
                    picked = set(rng.sample(option_ids, rng.randint(1, 3)))
                    values[field["field_code"]] = [i for i in option_ids if i in picked]
                else:
                    values[field["field_code"]] = makers[entity][name](record)
            record["custom_fields"] = custom_fields.merged(
                store, entity, record["custom_fields"], values
            )


def describe(store: Store) -> str:
    with store.lock:
        return (
            f"{len(store.users)} users, {len(store.pipelines)} pipelines, "
            f"{len(store.stages)} stages, {len(store.persons)} persons, "
            f"{len(store.organizations)} organizations, {len(store.deals)} deals, "
            f"{len(store.activities)} activities, "
            f"{sum(map(len, store.custom_fields.values()))} custom fields "
            f"(seed times from {clock.rfc3339(SEED_EPOCH)})"
        )
