"""Delivery: claiming due outbox rows, sharing slots between subscriptions, POSTing signed
webhooks over the consumer transport, and the pure verdicts and retry policy that decide what
each answer means.

May import everything below `config`, and `config`; not `polling`, `status` or `service`.
"""
