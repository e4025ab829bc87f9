"""``chatgpt-export``: a ChatGPT data export (Settings > Data controls > Export data) as a
read-only source. docs/connectors/chatgpt-export.md.

``chatgpt-export:///path/export.zip`` (or the unpacked folder, or its ``conversations.json``).
Each conversation is a tree (``mapping``: node id -> ``{message, parent, children}``): the main
path is the one from the root to ``current_node``, as ChatGPT shows it, and every branch left
behind by an edit or a regenerated answer is kept too, as records with ``branch`` > 0 (Vex keeps
the main path only). The export's other files (``user.json``, ``message_feedback.json``,
``shared_conversations.json``, images) are not read.
"""

from __future__ import annotations

from typing import Any

from ..record import MemoryRecord
from ._base import Reject
from ._conversations import (ConversationExport, Node, Part, Turn, conversation_records, nonempty,
                             pick, reject_at, timestamp)

__all__ = ["ChatGPTExportConnector"]

CONVERSATIONS = "chatgpt-conversations"
"""The default namespace (``?namespace=`` names another)."""

_TEXT_FIELDS = ("text", "result", "content", "model_set_context")
"""Where a content object without ``parts`` holds its text: code, execution_output,
tether_quote, sonic_webpage, system_error (``text``), tether_browsing_display (``result``),
reasoning_recap (``content``), model_editable_context (``model_set_context``)."""


class ChatGPTExportConnector(ConversationExport):
    name = "chatgpt-export"
    source_format = "chatgpt"
    parts = (Part("conversations.json", required=True, key="conversations"),)

    def element_items(self, part: Part, element: Any, index: int,
                      where: str) -> list[MemoryRecord | Reject]:
        if not isinstance(element, dict):
            return [reject_at(where, "not_a_conversation", "the element is not a JSON object", element)]
        conv_id = nonempty(element.get("conversation_id")) or nonempty(element.get("id"))
        if conv_id is None:
            return [reject_at(where, "missing_id", "the conversation has no id", element)]
        mapping = element.get("mapping")
        if not isinstance(mapping, dict):
            return [reject_at(where, "no_messages", "the conversation has no mapping of messages",
                              element)]
        conv = self.conversation(conv_id, element.get("title"), CONVERSATIONS)
        nodes: list[Node] = []
        for key, node in mapping.items():
            here = f"{where} node {key}"
            if not isinstance(node, dict):
                nodes.append(Node(key, None, reject_at(here, "not_a_message", "the node is not an object",
                                                       node, namespace=conv.namespace,
                                                       conversation=conv.id)))
                continue
            message = node.get("message")
            turn = None if message is None else self._turn(message, key, conv.id, conv.namespace, here)
            nodes.append(Node(key, nonempty(node.get("parent")), turn))
        return conversation_records(conv, nodes, nonempty(element.get("current_node")),
                                    unit=self.unit, branches=self.branches)

    def _turn(self, message: Any, key: str, conv_id: str, namespace: str,
              where: str) -> Turn | Reject | None:
        if not isinstance(message, dict):
            return reject_at(where, "not_a_message", "the message is not a JSON object", message,
                             namespace=namespace, conversation=conv_id)
        message_id = nonempty(message.get("id")) or key
        author = message.get("author")
        role = nonempty(author.get("role")) if isinstance(author, dict) else None
        if role is None:
            return reject_at(where, "missing_role", "the message has no author.role", message,
                             namespace=namespace, conversation=conv_id, record_id=message_id)
        try:
            created, updated = timestamp(message.get("create_time")), timestamp(message.get("update_time"))
        except ValueError as err:
            return reject_at(where, "bad_timestamp", str(err), message, namespace=namespace,
                             conversation=conv_id, record_id=message_id)
        content = _object(message.get("content"))
        meta = _object(message.get("metadata"))
        text = _text(content)
        attachments = _attachments(content, meta)
        if text is None and not attachments:
            return None
        extra: dict[str, Any] = {}
        if isinstance(content.get("content_type"), str):
            extra["content_type"] = content["content_type"]
        if isinstance(meta.get("model_slug"), str):
            extra["model"] = meta["model_slug"]
        if isinstance(author, dict) and isinstance(author.get("name"), str):
            extra["author_name"] = author["name"]
        if meta.get("is_visually_hidden_from_conversation") is True:
            extra["hidden"] = True
        return Turn(message_id, role, text, created, updated, attachments, extra)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(content: dict[str, Any]) -> str | None:
    """The text of a content object: its string ``parts`` (and the ``text`` of object parts)
    joined by newlines; else the first text field it has (``_TEXT_FIELDS``, a ``thoughts``
    list's contents, custom instructions' profile and instructions)."""
    parts = content.get("parts")
    if isinstance(parts, list):
        texts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None
                 for p in parts]
        return "\n".join(t for t in texts if isinstance(t, str) and t) or None
    for name in _TEXT_FIELDS:
        if nonempty(content.get(name)):
            return str(content[name])
    thoughts = content.get("thoughts")
    if isinstance(thoughts, list):
        said = [t.get("content") for t in thoughts if isinstance(t, dict)]
        return "\n\n".join(s for s in said if isinstance(s, str) and s) or None
    context = [content.get(k) for k in ("user_profile", "user_instructions")]
    return "\n\n".join(c for c in context if isinstance(c, str) and c) or None


def _attachments(content: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """``metadata.attachments`` (uploads: id, name, size, MIME type) and the image pointers
    among the parts that are not one of them (generated images), by reference only."""
    found: list[dict[str, Any]] = []
    listed = meta.get("attachments")
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, dict):
            picked = pick(item, (("id", "id"), ("name", "file_name"), ("size", "size"),
                                  ("mime_type", "type"), ("mimeType", "type")))
            if picked:
                found.append(picked)
    known = {str(a.get("id")) for a in found}
    parts = content.get("parts")
    for part in parts if isinstance(parts, list) else []:
        pointer = part.get("asset_pointer") if isinstance(part, dict) else None
        if isinstance(pointer, str) and pointer.rpartition("://")[2] not in known:
            picked = {"id": pointer, **pick(part, (("size_bytes", "size"), ("content_type", "type")))}
            found.append(picked)
    return found

