"""WebSocket routes. The live pages add their consumers here."""

websocket_urlpatterns: list = []
