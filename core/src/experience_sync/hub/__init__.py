"""The source agent hub: ingestion, storage and the merge engine."""
