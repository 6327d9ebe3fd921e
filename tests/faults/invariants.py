"""The farm's guarantees (../shared/DESIGN.md §5), checked after every fault scenario has settled."""

import json
from collections import defaultdict

from sqlalchemy import select
from standardwebhooks import Webhook

from models.db import session_scope
from models.tables import Prediction, WebhookEvent
from tests.faults.scenario import TERMINAL, Scenario


def assert_guarantees(scenario: Scenario) -> dict[str, Prediction]:
    """Nothing lost, nothing done twice, nothing half done. Returns the settled predictions."""
    rows = scenario.settle()
    accepted = scenario.accepted

    # 1. Every accepted prediction is stored, and nothing else.
    assert set(rows) == set(accepted), f"lost: {set(accepted) - set(rows)}, unexpected: {set(rows) - set(accepted)}"

    for prediction_id, row in rows.items():
        # 2. Terminal, within its attempts.
        assert row.status in TERMINAL, (prediction_id, row.status)
        assert 1 <= row.attempt <= row.max_attempts, (prediction_id, row.attempt, row.max_attempts)
        # 3. A success has every output, all of its own (final) attempt: a losing attempt's files are never shown.
        if row.status == "succeeded":
            keys = row.output_keys or []
            assert len(keys) == accepted[prediction_id]["num_images"], (prediction_id, keys)
            prefix = f"outputs/{prediction_id}/{row.attempt}/"
            assert all(key.startswith(prefix) for key in keys), (prediction_id, row.attempt, keys)
            missing = [key for key in keys if not scenario.s3.has_object(key)]
            assert not missing, f"{prediction_id} succeeded without its objects {missing}"
        else:
            assert not row.output_keys, (prediction_id, row.status, row.output_keys)

    # 4. Exactly one terminal transition each: the `completed` event is written in that transition's transaction.
    with session_scope(scenario.postgres.url) as session:
        events = session.execute(
            select(WebhookEvent.prediction_id, WebhookEvent.id).where(WebhookEvent.event == "completed")
        ).all()
    event_ids: dict[str, list[str]] = defaultdict(list)
    for prediction_id, event_id in events:
        event_ids[prediction_id].append(event_id)
    twice = {prediction_id: ids for prediction_id, ids in event_ids.items() if len(ids) != 1}
    assert not twice, f"terminal transitions recorded more than once: {twice}"
    assert set(event_ids) == set(rows), f"no terminal event for {set(rows) - set(event_ids)}"

    # 5. The receiver got each terminal event, under its one webhook-id, signed, saying what the database says.
    secret = scenario.webhook_secret()
    received: dict[str, set[str]] = defaultdict(set)
    for delivery in scenario.receiver.deliveries:
        payload = json.loads(delivery.body)
        Webhook(secret).verify(delivery.body, delivery.headers)  # raises on a bad signature
        received[payload["id"]].add(delivery.webhook_id)
        assert payload["status"] == rows[payload["id"]].status, (payload["id"], payload["status"])
    for prediction_id in rows:
        assert received[prediction_id] == {event_ids[prediction_id][0]}, (prediction_id, received[prediction_id])
    return rows
