"""``claude-export``: a claude.ai data export (Settings > Privacy > Export data) as a read-only
source. docs/connectors/claude-export.md.

``claude-export:///path/data-2026-01-01.zip`` (or the unpacked folder, or its
``conversations.json`` alone). Read, in this order and each streamed element by element:
``conversations.json`` (one record per message, or per exchange with ``?unit=exchange``),
``projects.json`` (a record per project, holding its instructions, and one per project
document) and ``memories.json`` (a record per memory: the account's and each project's).
``users.json`` is never read: it holds the account's name, email address and phone number,
none of which is memory, and contact data must not spread into stores.
"""

from __future__ import annotations

from typing import Any

from ..record import MemoryRecord
from ._base import Reject
from ._conversations import (ConversationExport, Node, Part, Turn, conversation_records, nonempty,
                             pick, reject_at, timestamp)

__all__ = ["ClaudeExportConnector"]

CONVERSATIONS = "claude-conversations"
PROJECTS = "claude-projects"
MEMORIES = "claude-memories"
"""The default namespaces (``?namespace=`` puts every record in one namespace instead)."""

_ROLES = {"human": "user"}


class ClaudeExportConnector(ConversationExport):
    name = "claude-export"
    source_format = "claude.ai"
    parts = (Part("conversations.json", required=True, key="conversations"),
             Part("projects.json", key="projects"), Part("memories.json"))

    def element_items(self, part: Part, element: Any, index: int,
                      where: str) -> list[MemoryRecord | Reject]:
        if part.name == "projects.json":
            return self._project(element, where)
        if part.name == "memories.json":
            return self._memories(element, index, where)
        return self._conversation(element, where)

    # ------------------------------------------------------------------------ conversations

    def _conversation(self, element: Any, where: str) -> list[MemoryRecord | Reject]:
        if not isinstance(element, dict):
            return [reject_at(where, "not_a_conversation", "the element is not a JSON object", element)]
        conv_id = nonempty(element.get("uuid")) or nonempty(element.get("id"))
        if conv_id is None:
            return [reject_at(where, "missing_id", "the conversation has no uuid", element)]
        messages = element.get("chat_messages")
        if not isinstance(messages, list):
            messages = element.get("messages")  # the API shape Vex also reads
        if not isinstance(messages, list):
            return [reject_at(where, "no_messages", "the conversation has no chat_messages list", element)]
        project = element.get("project")
        project_id = nonempty(element.get("project_uuid")) or (
            nonempty(project.get("uuid")) if isinstance(project, dict) else None)
        conv = self.conversation(conv_id, element.get("name") or element.get("title"), CONVERSATIONS,
                                 project_id=project_id)
        tree = any(isinstance(m, dict) and "parent_message_uuid" in m for m in messages)
        nodes: list[Node] = []
        for number, message in enumerate(messages):
            turn = self._turn(message, conv.id, conv.namespace, f"{where} message {number}")
            node_id = turn.id if isinstance(turn, Turn) else (
                nonempty(message.get("uuid")) if isinstance(message, dict) else None) or f"\0{number}"
            parent = (nonempty(message.get("parent_message_uuid")) if isinstance(message, dict) else None) \
                if tree else (nodes[-1].id if nodes else None)
            nodes.append(Node(node_id, parent, turn))
        leaf = nonempty(element.get("current_leaf_message_uuid")) if tree else None
        if leaf is None and nodes:
            leaf = nodes[-1].id
        return conversation_records(conv, nodes, leaf, unit=self.unit, branches=self.branches)

    def _turn(self, message: Any, conv_id: str, namespace: str, where: str) -> Turn | Reject | None:
        if not isinstance(message, dict):
            return reject_at(where, "not_a_message", "the message is not a JSON object", message,
                        namespace=namespace, conversation=conv_id)
        message_id = nonempty(message.get("uuid")) or nonempty(message.get("id"))
        sender = nonempty(message.get("sender")) or nonempty(message.get("role"))
        if message_id is None or sender is None:
            missing = "uuid" if message_id is None else "sender"
            return reject_at(where, f"missing_{'id' if missing == 'uuid' else 'role'}",
                        f"the message has no {missing}", message, namespace=namespace,
                        conversation=conv_id, record_id=message_id)
        try:
            created, updated = timestamp(message.get("created_at")), timestamp(message.get("updated_at"))
        except ValueError as err:
            return reject_at(where, "bad_timestamp", str(err), message, namespace=namespace,
                        conversation=conv_id, record_id=message_id)
        text, kinds = _messagenonempty(message)
        attachments = _attachments(message)
        if text is None and not attachments:
            return None
        extra: dict[str, Any] = {}
        if any(kind != "text" for kind in kinds):
            extra["content_types"] = kinds
        return Turn(message_id, _ROLES.get(sender, sender), text, created, updated, attachments, extra)

    # ----------------------------------------------------------------- projects and memories

    def _project(self, element: Any, where: str) -> list[MemoryRecord | Reject]:
        if not isinstance(element, dict) or nonempty(element.get("uuid")) is None:
            return [reject_at(where, "missing_id", "the project is not an object with a uuid", element)]
        project_id = str(element["uuid"])
        name = element.get("name") if isinstance(element.get("name"), str) else None
        namespace = self.namespace or PROJECTS
        try:
            created, updated = timestamp(element.get("created_at")), timestamp(element.get("updated_at"))
        except ValueError as err:
            return [reject_at(where, "bad_timestamp", str(err), element, namespace=namespace,
                         record_id=project_id)]
        metadata: dict[str, Any] = {"role": "project", "project_id": project_id, "project_name": name,
                                    "source_format": self.source_format}
        description = element.get("description")
        if isinstance(description, str) and description:
            metadata["description"] = description
        for flag in ("is_private", "is_starter_project"):
            if isinstance(element.get(flag), bool):
                metadata[flag] = element[flag]
        items: list[MemoryRecord | Reject] = [MemoryRecord(
            id=project_id, text=nonempty(element.get("prompt_template")), namespace=namespace,
            metadata=metadata, created_at=created, updated_at=updated, source_store=self.name)]
        docs = element.get("docs")
        for number, doc in enumerate(docs if isinstance(docs, list) else []):
            items.append(self._doc(doc, project_id, name, namespace, f"{where} doc {number}"))
        return items

    def _doc(self, doc: Any, project_id: str, name: str | None, namespace: str,
             where: str) -> MemoryRecord | Reject:
        doc_id = nonempty(doc.get("uuid")) if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or doc_id is None:
            return reject_at(where, "missing_id", "the project document has no uuid", doc,
                             namespace=namespace)
        try:
            created = timestamp(doc.get("created_at"))
        except ValueError as err:
            return reject_at(where, "bad_timestamp", str(err), doc, namespace=namespace, record_id=doc_id)
        metadata: dict[str, Any] = {"role": "project_doc", "project_id": project_id,
                                    "project_name": name, "source_format": self.source_format}
        if isinstance(doc.get("filename"), str):
            metadata["file_name"] = doc["filename"]
        return MemoryRecord(id=doc_id, text=nonempty(doc.get("content")), namespace=namespace,
                            metadata=metadata, created_at=created, source_store=self.name)

    def _memories(self, element: Any, index: int, where: str) -> list[MemoryRecord | Reject]:
        """The account's memory (``conversations_memory``) and each project's, ids
        ``memory:<account uuid>`` and ``memory:<account uuid>:<project uuid>`` (the element's
        index instead of the account when it names none)."""
        namespace = self.namespace or MEMORIES
        if not isinstance(element, dict):
            return [reject_at(where, "not_a_memory", "the element is not a JSON object", element,
                         namespace=namespace)]
        owner = nonempty(element.get("account_uuid")) or str(index)
        base = {"role": "memory", "source_format": self.source_format}
        items: list[MemoryRecord | Reject] = []
        account = nonempty(element.get("conversations_memory"))
        if account is not None:
            items.append(MemoryRecord(id=f"memory:{owner}", text=account, namespace=namespace,
                                      metadata={**base, "scope": "account"}, source_store=self.name))
        projects = element.get("project_memories")
        for project_id, text in (projects.items() if isinstance(projects, dict) else ()):
            if not isinstance(text, str):
                items.append(reject_at(where, "not_a_memory", f"project memory {project_id!r} is not text",
                                  {project_id: text}, namespace=namespace))
            elif text:
                items.append(MemoryRecord(
                    id=f"memory:{owner}:{project_id}", text=text, namespace=namespace,
                    metadata={**base, "scope": "project", "project_id": project_id},
                    source_store=self.name))
        return items


def _messagenonempty(message: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The message's ``text``, else its text blocks joined by blank lines; and the kinds of
    its content blocks (thinking, tool_use, tool_result are not text and are not carried)."""
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    kinds = list(dict.fromkeys(str(b.get("type")) for b in blocks))
    text = nonempty(message.get("text"))
    if text is None and isinstance(content, str):
        text = nonempty(content)
    if text is None:
        joined = "\n\n".join(b["text"] for b in blocks
                             if b.get("type") == "text" and isinstance(b.get("text"), str) and b["text"])
        text = joined or None
    return text, kinds


def _attachments(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Attachments by reference: name, id, size, type where the export has them, never the
    ``extracted_content``. ``files_v2`` is preferred to ``files`` (the same files, with ids)."""
    found: list[dict[str, Any]] = []
    for item in message.get("attachments") or []:
        if isinstance(item, dict):
            found.append(pick(item, (("id", "id"), ("file_uuid", "id"), ("file_name", "file_name"),
                                     ("file_size", "size"), ("file_type", "type"))))
    files = message.get("files_v2") or message.get("files") or []
    for item in files if isinstance(files, list) else []:
        if isinstance(item, dict):
            found.append(pick(item, (("file_uuid", "id"), ("file_name", "file_name"),
                                     ("file_kind", "type"))))
    return [a for a in found if a]

