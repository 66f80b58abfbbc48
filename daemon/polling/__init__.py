"""Detection: the change feeds (one per account and object type), the pure decision of what a
listed page changed (`change_feed`), the one place events are built from it (`events`), the
poller that lists and commits pages, the dead-letter replay that reads an item again
(`reread`), and the forecast of tokens a config will spend.

May import everything below `config`, and `config`; not `delivery`, `status` or `service`.
"""
