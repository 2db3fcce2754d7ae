"""WebSocket routes."""

from django.urls import path

from mistersmith.live.consumer import LiveConsumer

websocket_urlpatterns = [path("ws/live/", LiveConsumer.as_asgi())]
