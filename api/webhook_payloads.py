"""The body of a webhook: the prediction as the front door it came through shows it, rendered when sent
(so output URLs are fresh on every attempt)."""

from typing import Any

from api.compat import eachlabs, fal
from api.presenter import prediction_public
from models.catalog import find_model
from models.storage import Storage
from models.tables import Prediction
from models.webhooks import WebhookFormat


def webhook_payload(prediction: Prediction, fmt: WebhookFormat, *, storage: Storage, public_url: str) -> dict[str, Any]:
    if fmt is WebhookFormat.FAL:
        spec = find_model(prediction.model)
        assert spec is not None, f"prediction {prediction.id} names unknown model {prediction.model}"
        return fal.webhook_body(spec, prediction, storage)
    if fmt is WebhookFormat.EACHLABS:
        return eachlabs.prediction_body(prediction, storage, public_url)
    return prediction_public(prediction, storage=storage, public_url=public_url)
