"""Fault injection into webhook deliveries: the next N matching attempts are dropped, sent late,
sent twice, or held back until the webhook's next delivery has gone (out of order)."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.dev.sandbox import faults


@dataclass
class DeliveryFault:
    drop: bool = False  # never sent, never retried: lost, as a banned webhook's events are
    delay_s: float = 0.0  # sent this many real seconds late; later deliveries overtake it
    duplicate: bool = False  # sent twice, same body (same meta.id and attempt)
    reorder: bool = False  # held back until the webhook's next delivery has been sent
    count: int = 1
    skip: int = 0  # matching attempts let through untouched before the fault fires
    webhook_id: int | None = None  # None: any webhook
    attempt: int | None = None  # None: any attempt (1 = first attempts only)

    def matches(self, webhook_id: int, attempt: int) -> bool:
        return (self.webhook_id is None or self.webhook_id == webhook_id) and (
            self.attempt is None or self.attempt == attempt
        )


class DeliveryFaults(faults.Armed[DeliveryFault]):
    """Armed delivery faults (see `add`)."""

    def add(
        self,
        *,
        drop: bool = False,
        delay_s: float = 0.0,
        duplicate: bool = False,
        reorder: bool = False,
        count: int = 1,
        skip: int = 0,
        webhook_id: int | None = None,
        attempt: int | None = None,
    ) -> DeliveryFault:
        """Arm a fault for the next `count` delivery attempts matching webhook/attempt (after
        `skip`). One kind per fault: drop, delay_s, duplicate or reorder."""
        kinds = sum((drop, delay_s > 0, duplicate, reorder))
        if kinds != 1:
            raise ValueError("a delivery fault is one of drop, delay_s > 0, duplicate, reorder")
        if count < 1 or skip < 0:
            raise ValueError("count must be >= 1 and skip >= 0")
        return self._arm(
            DeliveryFault(drop, delay_s, duplicate, reorder, count, skip, webhook_id, attempt)
        )

    def take(self, webhook_id: int, attempt: int) -> DeliveryFault | None:
        """The first armed fault matching this attempt, spending one of its uses."""
        return self._take(lambda fault: fault.matches(webhook_id, attempt))
