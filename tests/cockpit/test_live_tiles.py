"""Fleet tiles pushed live: a fold pass's signal renders the page's own fragments to sockets."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from cockpit import live_tiles
from cockpit.rollups import rollups_folded
from cockpit.routing import websocket_urlpatterns
from tests.cockpit.rollup_rows import minute_row
from tests.factories import make_agent

pytestmark = pytest.mark.django_db(transaction=True)

router = URLRouter(websocket_urlpatterns)


async def connect(user, topic):
    communicator = WebsocketCommunicator(router, f"/ws/live/{topic}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.fixture
def agent(project):
    agent = make_agent(project, "support-triage", first_seen_at=timezone.now() - timedelta(days=3))
    minute_row(agent, timezone.now() - timedelta(minutes=1), ok=41, failed=1, cost="0.42")
    return agent


def test_a_fold_pushes_the_agents_tile_totals_and_alerts_to_the_fleet(people, agent):
    async def scenario():
        communicator = await connect(people["viewer"], "fleet")
        await sync_to_async(rollups_folded.send)(sender=None, agent_ids={agent.pk})
        message = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()

    assert message.lstrip().startswith(
        f'<article class="tile state-active" id="agent-tile-{agent.pk}"'
    )
    assert 'id="fleet-totals"' in message
    assert 'id="fleet-alerts"' in message
    assert "42" in message  # the hour's runs in the totals
    assert "<html" not in message


def test_the_pushed_tile_is_the_one_the_page_renders(client_as, agent):
    page = client_as("viewer").get("/").content.decode()
    pushed = live_tiles.render_fleet_update({agent.pk})

    tile = pushed[: pushed.index("</article>")]
    assert tile.strip() in page


def test_a_fold_ticks_the_agent_page_so_its_charts_refresh(people, agent):
    async def scenario():
        communicator = await connect(people["viewer"], f"agent.{agent.pk}")
        await sync_to_async(live_tiles.push_fleet_tiles)(agent_ids={agent.pk})
        message = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()

    assert 'id="charts-tick"' in message
    assert 'data-refresh="agent-summary"' in message


def test_a_brand_new_agent_makes_fleet_pages_refetch_whole(people, project):
    newcomer = make_agent(project, "brand-new")
    minute_row(newcomer, timezone.now(), ok=1)

    async def scenario():
        communicator = await connect(people["viewer"], "fleet")
        await sync_to_async(live_tiles.push_fleet_tiles)(agent_ids={newcomer.pk})
        messages = [await communicator.receive_from(timeout=5) for _ in range(2)]
        await communicator.disconnect()
        return messages

    tiles, refresh = async_to_sync(scenario)()

    assert f'id="agent-tile-{newcomer.pk}"' in tiles
    assert 'data-refresh="fleet-live"' in refresh


def test_nothing_is_sent_when_a_fold_changed_nothing(people, agent):
    async def scenario():
        communicator = await connect(people["viewer"], "fleet")
        await sync_to_async(live_tiles.push_fleet_tiles)(agent_ids=set())
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    async_to_sync(scenario)()
