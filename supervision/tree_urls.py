"""URLs of the supervision tree, included at /admin/supervision/tree/ in the "supervision" namespace."""

from django.urls import path

from supervision.views import tree

urlpatterns = [
    path("", tree.tree_page, name="tree"),
    path("children/", tree.tree_children, name="tree_children"),
    path("search/", tree.tree_search, name="tree_search"),
    path("path/<uuid:node_pk>/", tree.tree_path, name="tree_path"),
    path("nodes/<uuid:node_pk>/", tree.tree_node, name="tree_node"),
    path("nodes/", tree.tree_nodes, name="tree_nodes"),
]
