"""Websocket routes: one consumer, one URL per live topic (see cockpit.realtime)."""

from django.urls import re_path

from cockpit.consumers import LiveConsumer

websocket_urlpatterns = [
    re_path(r"^ws/live/(?P<topic>[a-z]+(?:\.[0-9a-f]{1,32})?)/$", LiveConsumer.as_asgi()),
]
