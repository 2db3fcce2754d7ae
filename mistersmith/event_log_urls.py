"""URLs of a live page (filled in by the page's module)."""

urlpatterns: list = []
