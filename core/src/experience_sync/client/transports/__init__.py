"""The built-in transports: ``https`` and ``websocket`` (registered by ``experience_sync.builtin``)."""
