"""The hub's web pages: the console (:mod:`experience_sync.hub.web.console`)."""

from experience_sync.hub.web.console import mount_console

__all__ = ["mount_console"]
