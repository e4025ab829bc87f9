"""Connectors: one per store, found by name through the registry."""

from ._base import Capabilities, Connector, Page, Reject, Writer
from ._registry import available, get, register

__all__ = ["Capabilities", "Connector", "Page", "Reject", "Writer", "available", "get", "register"]
