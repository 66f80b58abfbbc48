"""Plain values the layers hand each other (an event to queue, an attempt's outcome, an
endpoint's health, an item's stored state) and the pure rules that change them.

Imports only the foundation (errors, times): no database, no HTTP, so deciders can use them.
"""
