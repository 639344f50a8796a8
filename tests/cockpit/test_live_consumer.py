"""The live websocket: role check at connect, topics, and fragments broadcast after commit."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.test import Client

from cockpit import realtime
from cockpit.asgi import application
from cockpit.consumers import CLOSE_NOT_ALLOWED, CLOSE_UNKNOWN_TOPIC
from cockpit.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

router = URLRouter(websocket_urlpatterns)


def test_the_channel_layer_under_test_is_redis():
    # The suite exercises the production layer: a broadcast crosses processes.
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


async def connect(user, topic="fleet"):
    communicator = WebsocketCommunicator(router, f"/ws/live/{topic}/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


def in_transaction(send):
    """Call send() inside a transaction that commits; the broadcast goes out at the commit."""
    with transaction.atomic():
        send()
        assert connection.run_on_commit, "the broadcast waits for the commit"


def test_a_viewer_receives_fragments_sent_to_the_topic(people):
    async def scenario():
        communicator, connected, _ = await connect(people["viewer"])
        assert connected
        await sync_to_async(in_transaction)(
            lambda: realtime.send_fragment("fleet", '<div id="tile-1">3 runs</div>')
        )
        assert await communicator.receive_from(timeout=3) == '<div id="tile-1">3 runs</div>'
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_rolled_back_change_is_never_announced(people):
    async def scenario():
        communicator, connected, _ = await connect(people["viewer"])
        assert connected

        def rolled_back():
            with transaction.atomic():
                realtime.send_fragment("fleet", "<div id='tile-1'>never</div>")
                transaction.set_rollback(True)

        await sync_to_async(rolled_back)()
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_refresh_names_the_element_to_refetch(people):
    async def scenario():
        communicator, connected, _ = await connect(people["operator"], "run.ab12")
        assert connected
        await sync_to_async(in_transaction)(lambda: realtime.send_refresh("run.ab12", "span-tree"))
        message = await communicator.receive_from(timeout=3)
        assert 'id="live-refresh"' in message
        assert 'data-refresh="span-tree"' in message
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_other_topics_do_not_receive_the_fragment(people):
    async def scenario():
        communicator, connected, _ = await connect(people["viewer"], "runs")
        assert connected
        await sync_to_async(in_transaction)(
            lambda: realtime.send_fragment("fleet", "<div id='x'></div>")
        )
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("name", ["outsider", None])
def test_people_without_a_role_are_refused(people, name):
    async def scenario():
        user = people[name] if name else AnonymousUser()
        _, connected, code = await connect(user)
        assert not connected
        assert code == CLOSE_NOT_ALLOWED

    async_to_sync(scenario)()


def test_an_unknown_topic_is_refused(people):
    async def scenario():
        _, connected, code = await connect(people["viewer"], "secrets")
        assert not connected
        assert code == CLOSE_UNKNOWN_TOPIC

    async_to_sync(scenario)()


def test_topics_outside_the_list_cannot_name_a_group():
    with pytest.raises(ValueError):
        realtime.group_for("fleet; DROP")
    assert realtime.group_for("incident.42") == "live.incident.42"


def test_the_full_asgi_stack_authenticates_by_session_cookie(people):
    client = Client()
    client.force_login(people["viewer"])
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def scenario():
        communicator = WebsocketCommunicator(
            application,
            "/ws/live/fleet/",
            headers=[(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1")],
        )
        connected, _ = await communicator.connect()
        assert connected
        await communicator.disconnect()

        foreign = WebsocketCommunicator(
            application,
            "/ws/live/fleet/",
            headers=[(b"cookie", cookie.encode()), (b"origin", b"http://evil.example")],
        )
        connected, _ = await foreign.connect()
        assert not connected

    async_to_sync(scenario)()
