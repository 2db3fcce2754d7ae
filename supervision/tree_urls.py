"""URLs of the supervision tree view (filled in by the tree view work)."""

urlpatterns: list = []
