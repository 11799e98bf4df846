"""The optional parts of the ``experience-sync`` distribution and how to install them.

``pip install experience-sync`` (``pip install ./core`` from a checkout) is the
client: what an agent process needs to record, ship, pull and search. The hub
(``serve``, ``demo``, ``token``, ``review``, ``replay``, ``state``, the
``experience_sync.hub`` package) needs the ``hub`` extra; zstd-compressed
batches from a client need the ``zstd`` extra (the hub extra includes it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

#: The modules the ``hub`` extra brings (``core/pyproject.toml`` lists their distributions).
HUB_MODULES: tuple[str, ...] = (
    "fastapi",
    "uvicorn",
    "jinja2",
    "prometheus_client",
    "zstandard",
    "rich",
)

#: How to install the hub: from an index, or from a checkout.
HUB_INSTALL = "pip install 'experience-sync[hub]' (from a checkout: pip install './core[hub]')"
#: How to install zstd compression on a client.
ZSTD_INSTALL = "pip install 'experience-sync[zstd]' (from a checkout: pip install './core[zstd]')"


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (found without importing them)."""
    absent = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(name)
    return absent


def hub_missing() -> list[str]:
    """The hub extra's modules that are not installed (empty when the hub can run)."""
    return missing(HUB_MODULES)


def hub_hint(what: str, absent: Iterable[str] | None = None) -> str:
    """One line saying that ``what`` needs the hub extra, which modules lack and how to install."""
    names = list(hub_missing() if absent is None else absent)
    lacking = f" (missing: {', '.join(names)})" if names else ""
    return f"{what} needs the hub extra{lacking}: {HUB_INSTALL}"
