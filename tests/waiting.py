"""How long a test may wait for what it expects. Tests wait for a condition (an event arrived,
a row changed), never for a stretch of time tuned to an idle machine: `HANG_S` only bounds a
hang, and a passing test returns as soon as its condition holds, so a loaded machine (CI beside
another job, parallel workers) slows a test down instead of failing it."""

from __future__ import annotations

HANG_S = 60.0
