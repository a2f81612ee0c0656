"""``pubsub_emulator``: the suite's Pub/Sub emulator, once checked that a streaming pull on a
subscription still gets messages after an earlier one on it was cancelled.

The emulator jar of google-cloud-cli 528 (0.8.20) fails that when it runs with its own bundled
grpc-api: the cancelled stream is never taken off the subscription and gets all its messages
(scripts/services' PubSub class runs it with the matching grpc-api). Every contract test that
runs two sidecars one after another on one subscription would then time out with no clue why;
this says why, once, at the first test that needs the emulator."""

from __future__ import annotations

import threading
import uuid

import pytest


def _second_stream_gets_messages(project: str) -> bool:
    from google.cloud import pubsub_v1

    publisher, admin = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    prefix = f"wojak-check-{uuid.uuid4().hex[:12]}"
    topic, subscription = publisher.topic_path(project, prefix), admin.subscription_path(project, prefix)
    publisher.create_topic(name=topic)
    admin.create_subscription(request={"name": subscription, "topic": topic, "ack_deadline_seconds": 10})
    try:
        for round_ in range(2):
            publisher.publish(topic, f"check-{round_}".encode()).result(timeout=30)
            got = threading.Event()

            def on_message(message, got=got) -> None:
                message.ack()
                got.set()

            client = pubsub_v1.SubscriberClient()
            future = client.subscribe(subscription, on_message)
            delivered = got.wait(15)
            future.cancel()
            try:
                future.result(timeout=15)
            except Exception:
                pass
            client.close()
            if not delivered:
                return False
        return True
    finally:
        admin.delete_subscription(subscription=subscription)
        publisher.delete_topic(topic=topic)
        admin.close()


@pytest.fixture(scope="session")
def pubsub_emulator(pubsub_service):
    if not _second_stream_gets_messages(pubsub_service.project):
        pytest.fail(
            f"the Pub/Sub emulator at {pubsub_service.host} delivers nothing to a second streaming pull on a subscription "
            "once the first was cancelled: it runs with its jar's own, older grpc-api (NoSuchMethodError "
            "InternalStatus.asRuntimeException in its log). Restart it with this repository's scripts/services "
            "(`scripts/services down pubsub && scripts/services up pubsub`), which puts the matching grpc-api first."
        )
    return pubsub_service
