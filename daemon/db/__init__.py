"""The database: engine and migrations, the tables, and every read and write of them (feeds,
outbox, endpoint health, heartbeat, instance lock), SQLite and PostgreSQL alike.

May import the foundation and `model`; nothing here knows Pipedrive, HTTP or the config file.
"""
