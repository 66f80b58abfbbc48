"""Standard Webhooks headers: a stable id, the attempt's time and, with a secret, a signature."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook


class Signer:
    """Signs each attempt afresh: verifiers reject timestamps older than five minutes."""

    def __init__(self, secret: SecretStr | None) -> None:
        # Room for rotation later: several secrets give several space-separated signatures.
        self._webhook = Webhook(secret.get_secret_value()) if secret is not None else None

    def headers(self, event_id: str, body: str, now: datetime) -> dict[str, str]:
        moment = now.astimezone(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(moment.timestamp())),
        }
        if self._webhook is not None:
            headers["webhook-signature"] = self._webhook.sign(event_id, moment, body)
        return headers
