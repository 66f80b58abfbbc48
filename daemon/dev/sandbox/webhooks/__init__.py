"""Pipedrive's outgoing webhooks, faked: the `/v1/webhooks` subscriptions (`registry`, `routes`),
the v2 bodies a change becomes (`events`), when to retry, ban or delete (`policy`), the
background sender (`sender`) and the faults tests inject into its deliveries (`faults`)."""
