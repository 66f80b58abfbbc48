"""Standard Webhooks headers: a stable id, the attempt's time and one signature per secret."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook


class Signer:
    """Signs each attempt afresh: verifiers reject timestamps older than five minutes. With
    several secrets (rotation), `webhook-signature` holds one signature per secret, separated
    by spaces, so a consumer holding any one of them verifies."""

    def __init__(self, secrets: SecretStr | Sequence[SecretStr] | None) -> None:
        if secrets is None:
            secrets = ()
        elif isinstance(secrets, SecretStr):
            secrets = (secrets,)
        self._webhooks = [Webhook(secret.get_secret_value()) for secret in secrets]

    def headers(self, event_id: str, body: str, now: datetime) -> dict[str, str]:
        moment = now.astimezone(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(moment.timestamp())),
        }
        if self._webhooks:
            headers["webhook-signature"] = " ".join(
                webhook.sign(event_id, moment, body) for webhook in self._webhooks
            )
        return headers
