"""Deterministic demo data: the same seed always builds the same account, ids and times."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from daemon.dev.sandbox import bodies, clock
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
    finally:
        store.now = real_now


def describe(store: Store) -> str:
    with store.lock:
        return (
            f"{len(store.users)} users, {len(store.pipelines)} pipelines, "
            f"{len(store.stages)} stages, {len(store.persons)} persons, "
            f"{len(store.organizations)} organizations, {len(store.deals)} deals, "
            f"{len(store.activities)} activities (seed times from {clock.rfc3339(SEED_EPOCH)})"
        )
