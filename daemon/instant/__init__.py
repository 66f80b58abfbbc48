"""Instant mode: Pipedrive's own webhooks as a nudge, polling as the truth. Here: the pure
decision of what to do with an account's webhooks at Pipedrive (`decide`) and the registration
that lists, creates, re-creates and deletes them and records how it went (`registration`); the
ingress that takes Pipedrive's calls (`ingress`: checked against `credentials`, read into
`nudges`, counted in `counts`, passed to the account's holder through `relay` when another
replica holds it) and the per-feed coalescing of the reads they cause (`coalesce`).

May import everything below `config`, and `config`; not `polling`, `delivery`, `actions`,
`status` or `service`.
"""
