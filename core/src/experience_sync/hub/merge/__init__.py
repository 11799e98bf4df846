"""The merge room: similarity and its guards, conflict strategies, skill aggregations."""
