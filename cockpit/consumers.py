"""The one websocket consumer: authenticate, join a topic's group, forward what it receives.

No database work happens here beyond the role check at connect; pages are rendered by whoever
broadcasts (cockpit.realtime), never by the consumer.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from cockpit.realtime import group_for
from cockpit.roles import VIEWER, has_role

# Close codes in the 4000-4999 range are the application's own.
CLOSE_NOT_ALLOWED = 4403
CLOSE_UNKNOWN_TOPIC = 4404


class LiveConsumer(AsyncWebsocketConsumer):
    group: str | None = None

    async def connect(self):
        user = self.scope.get("user")
        if not await database_sync_to_async(has_role)(user, VIEWER):
            await self.close(code=CLOSE_NOT_ALLOWED)
            return
        try:
            self.group = group_for(self.scope["url_route"]["kwargs"]["topic"])
        except ValueError:
            await self.close(code=CLOSE_UNKNOWN_TOPIC)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        # Pages only listen; anything a browser sends is ignored.
        return

    async def live_fragment(self, event):
        await self.send(text_data=event["html"])
