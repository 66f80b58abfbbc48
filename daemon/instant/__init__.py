"""Instant mode: Pipedrive's own webhooks as a nudge, polling as the truth. Here: the pure
decision of what to do with an account's webhooks at Pipedrive (`decide`) and the registration
that lists, creates, re-creates and deletes them and records how it went (`registration`).

May import everything below `config`, and `config`; not `polling`, `delivery`, `actions`,
`status` or `service`.
"""
