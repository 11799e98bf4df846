"""Hub stores: where the hub keeps each agent's log and merged state.

The rows a store keeps (:mod:`~experience_sync.stores.state`) and the built-in
SQLite store (:mod:`~experience_sync.stores.sqlite`).

A third-party store implements :class:`experience_sync.api.Store` and registers
itself through the ``experience_sync_register_stores`` hook.
"""
