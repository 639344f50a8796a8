"""The incident page's live timeline: a change is announced over the websocket after commit,
and the part it names, fetched again, shows the change."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from django.urls import reverse

from cockpit.routing import websocket_urlpatterns
from incidents.actions import do_add_note, do_transition

pytestmark = pytest.mark.django_db(transaction=True)

router = URLRouter(websocket_urlpatterns)


async def subscribe(user, incident):
    communicator = WebsocketCommunicator(router, f"/ws/live/incident.{incident.pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def refreshes(communicator) -> set[str]:
    """The parts named by every message that arrives until the socket goes quiet."""
    names = set()
    while not await communicator.receive_nothing(timeout=0.5):
        message = await communicator.receive_from(timeout=1)
        names.add(message.split('data-refresh="', 1)[1].split('"', 1)[0])
    return names


def test_a_note_is_announced_and_the_refetched_timeline_shows_it(people, incident):
    async def scenario():
        communicator = await subscribe(people["viewer"], incident)
        await sync_to_async(do_add_note)(incident, user=people["commander"], text="Rolled back")
        assert "incident-timeline" in await refreshes(communicator)
        await communicator.disconnect()

    async_to_sync(scenario)()
    client = Client()
    client.force_login(people["viewer"])
    part = client.get(
        reverse("incident-detail", args=[incident.pk]), {"part": "timeline"}, HTTP_HX_REQUEST="true"
    )
    assert b"Rolled back" in part.content


def test_a_status_change_refreshes_the_header_and_the_timeline(people, incident):
    async def scenario():
        communicator = await subscribe(people["viewer"], incident)
        await sync_to_async(do_transition)(
            incident, "active", user=people["commander"], note="on it"
        )
        assert {"incident-head", "incident-timeline"} <= await refreshes(communicator)
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_note_rolled_back_is_never_announced(people, incident):
    def rolled_back():
        with transaction.atomic():
            do_add_note(incident, user=people["commander"], text="never")
            transaction.set_rollback(True)

    async def scenario():
        communicator = await subscribe(people["viewer"], incident)
        await sync_to_async(rolled_back)()
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_another_incidents_page_hears_nothing(people, open_incident):
    first, second = open_incident(), open_incident(title="Other")

    async def scenario():
        communicator = await subscribe(people["viewer"], first)
        await sync_to_async(do_add_note)(second, user=people["commander"], text="elsewhere")
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()

    async_to_sync(scenario)()
