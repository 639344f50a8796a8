"""Websocket routes. Each app's consumers are added here as they land."""

websocket_urlpatterns: list = []
