"""The hub on the wire: its HTTP and WebSocket API, server and console.

The FastAPI application (:mod:`~experience_sync.hub.web.app`), authentication
(:mod:`~experience_sync.hub.web.auth`), the JSON error body
(:mod:`~experience_sync.hub.web.wire`), the event stream
(:mod:`~experience_sync.hub.web.sse`), the ASGI server
(:mod:`~experience_sync.hub.web.server`) and the console
(:mod:`~experience_sync.hub.web.console`).
"""
