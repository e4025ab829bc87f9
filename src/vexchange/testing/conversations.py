"""Conversation exports in the shapes claude.ai and ChatGPT write, for tests: deterministic for
a seed, written element by element (so a large one is written at constant memory), as a zip,
a folder or a lone ``conversations.json``.

The shapes follow what the exports hold (docs/connectors/claude-export.md and
chatgpt-export.md name the fields read): claude.ai's ``conversations.json`` (``chat_messages``
with ``sender``, ``text``, ``content`` blocks, ``attachments``, ``files``/``files_v2``),
``projects.json``, ``memories.json`` and ``users.json``; ChatGPT's ``conversations.json``
(``mapping`` trees with ``current_node``, ``content_type``/``parts``, attachments in
``metadata``), with branches left by regenerated answers and edited questions.

Texts carry what breaks a naive splitter: brackets, braces, quotes, backslashes, escapes,
newlines and non-ASCII characters.
"""

from __future__ import annotations

import random
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import orjson

__all__ = ["Export", "write_chatgpt_export", "write_claude_export"]

Form = Literal["zip", "folder", "file"]

_WORDS = ("memory", "vector", "café", "naïve", "日本語", "🙂", "[bracket]", "{brace}", 'a "quote"',
          "back\\slash", "line\nbreak", "tab\tstop", "]}", "\\\"", "plain", "words", "end")
_BASE = 1_735_689_600  # 2025-01-01T00:00:00Z


@dataclass(frozen=True)
class Export:
    """What was written, for a test to check the read against."""

    path: Path
    conversations: int
    messages: int
    """Records in message mode with every branch (messages with text or an attachment)."""
    main_messages: int
    """Those on the main paths."""
    others: int = 0
    """Other records (claude projects, project documents, memories)."""


class _Rng:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def text(self, size: int) -> str:
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < size:
            words.append(self.random.choice(_WORDS))
        return " ".join(words)


def _iso(seconds: float) -> str:
    whole = int(seconds)
    micros = round((seconds - whole) * 1e6)
    from datetime import datetime, timezone
    moment = datetime.fromtimestamp(whole, timezone.utc).replace(microsecond=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def _writer(path: Path, form: Form) -> Iterator[Any]:
    """A function ``(name, elements | object)`` writing one JSON file of the export."""
    if form == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            def into_zip(name: str, content: Iterable[Any] | dict[str, Any]) -> None:
                with archive.open(name, "w") as out:
                    _dump(out, content)
            yield into_zip
        return
    if form == "folder":
        path.mkdir(parents=True, exist_ok=True)

    def into_files(name: str, content: Iterable[Any] | dict[str, Any]) -> None:
        target = path / name if form == "folder" else path
        if form == "file" and name != "conversations.json":
            return
        with open(target, "wb") as out:
            _dump(out, content)
    yield into_files


def _dump(out: IO[bytes], content: Iterable[Any] | dict[str, Any]) -> None:
    if isinstance(content, dict):
        out.write(orjson.dumps(content))
        return
    out.write(b"[")
    for number, element in enumerate(content):
        out.write((b",\n" if number else b"\n") + orjson.dumps(element, option=orjson.OPT_INDENT_2))
    out.write(b"\n]\n")


# ------------------------------------------------------------------------------ claude.ai


def write_claude_export(path: str | Path, *, conversations: int = 4, messages: int = 6, seed: int = 0,
                        form: Form = "zip", projects: int = 2, text_size: int = 60,
                        attachments: bool = True) -> Export:
    """A claude.ai export: ``conversations`` conversations of ``messages`` messages each
    (human and assistant in turn; some assistant turns with a thinking block, some human
    turns with an attachment and an image file), ``projects`` projects with two documents
    each, the account's and each project's memory, and a ``users.json``."""
    target = Path(path)
    rng = _Rng(seed)
    account = rng.uuid()
    project_ids = [rng.uuid() for _ in range(projects)]
    counted = {"messages": 0}

    def conversation(number: int) -> dict[str, Any]:
        start = _BASE + number * 86_400
        chat = []
        for turn in range(messages):
            human = turn % 2 == 0
            text = rng.text(text_size)
            when = _iso(start + turn * 61.5)
            blocks: list[dict[str, Any]] = [{"start_timestamp": when, "stop_timestamp": when,
                                             "type": "text", "text": text, "citations": []}]
            if not human and turn % 4 == 1:
                blocks.insert(0, {"type": "thinking", "thinking": rng.text(20), "summaries": []})
            message: dict[str, Any] = {"uuid": rng.uuid(), "text": text, "content": blocks,
                                       "sender": "human" if human else "assistant",
                                       "created_at": when, "updated_at": when,
                                       "attachments": [], "files": []}
            if attachments and human and turn % 3 == 0:
                message["attachments"] = [{"file_name": f"notes-{number}.txt", "file_size": 120 + turn,
                                           "file_type": "txt", "extracted_content": "SECRET CONTENT"}]
                file_id = rng.uuid()
                message["files"] = [{"file_name": f"photo-{number}.png"}]
                message["files_v2"] = [{"file_kind": "image", "file_uuid": file_id,
                                        "file_name": f"photo-{number}.png", "created_at": when}]
            chat.append(message)
            counted["messages"] += 1
        project = project_ids[number % len(project_ids)] if project_ids and number % 2 else None
        return {"uuid": rng.uuid(), "name": f"Conversation {number}: {rng.text(15)}",
                "summary": "", "created_at": _iso(start), "updated_at": _iso(start + messages * 62),
                "account": {"uuid": account}, "chat_messages": chat,
                **({"project_uuid": project} if project else {})}

    def project(number: int) -> dict[str, Any]:
        when = _iso(_BASE + number * 3600)
        return {"uuid": project_ids[number], "name": f"Project {number}",
                "description": f"What project {number} is for", "is_private": True,
                "is_starter_project": False, "prompt_template": rng.text(text_size),
                "created_at": when, "updated_at": when,
                "creator": {"uuid": account, "full_name": "Test User"},
                "docs": [{"uuid": rng.uuid(), "filename": f"doc-{number}-{d}.md",
                          "content": rng.text(text_size * 3), "created_at": when} for d in range(2)]}

    with _writer(target, form) as write:
        write("conversations.json", (conversation(n) for n in range(conversations)))
        write("projects.json", (project(n) for n in range(projects)))
        write("memories.json", [{"conversations_memory": rng.text(text_size),
                                 "project_memories": {p: rng.text(text_size) for p in project_ids},
                                 "account_uuid": account}])
        write("users.json", [{"uuid": account, "full_name": "Test User",
                              "email_address": "test.user@example.com", "verified_phone_number": None}])
    others = 0 if form == "file" else projects * 3 + 1 + projects
    return Export(target, conversations, counted["messages"], counted["messages"], others)


# -------------------------------------------------------------------------------- ChatGPT


def write_chatgpt_export(path: str | Path, *, conversations: int = 4, messages: int = 6, seed: int = 0,
                         form: Form = "zip", branches: bool = True, text_size: int = 60,
                         attachments: bool = True) -> Export:
    """A ChatGPT export: each conversation a ``mapping`` tree with an empty root, a hidden
    empty system message, then ``messages`` user and assistant turns on the main path (the
    path to ``current_node``); with ``branches``, a regenerated answer (a sibling of the
    second answer) and an edited question with its own answer (a sibling of the third
    question), each listed before the main child; some user turns upload an image."""
    target = Path(path)
    rng = _Rng(seed)
    counted = {"messages": 0, "main": 0}

    def message(role: str, text: str, when: float, **more: Any) -> dict[str, Any]:
        return {"id": rng.uuid(), "author": {"role": role, "name": None, "metadata": {}},
                "create_time": when, "update_time": None,
                "content": {"content_type": "text", "parts": [text]},
                "status": "finished_successfully", "end_turn": role == "assistant" or None,
                "weight": 1.0, "metadata": {"model_slug": "gpt-4o"} if role == "assistant" else {},
                "recipient": "all", "channel": None, **more}

    def conversation(number: int) -> dict[str, Any]:
        start = _BASE + number * 86_400 + 0.123456
        mapping: dict[str, dict[str, Any]] = {}

        def add(msg: dict[str, Any] | None, parent: str | None, *, main: bool, first: bool = False,
                counts: bool = True) -> str:
            key = msg["id"] if msg else rng.uuid()
            mapping[key] = {"id": key, "message": msg, "parent": parent, "children": []}
            if parent is not None:
                siblings = mapping[parent]["children"]
                siblings.insert(0, key) if first else siblings.append(key)
            if msg is not None and counts:
                counted["messages"] += 1
                counted["main"] += main
            return key

        root = add(None, None, main=True)
        system = message("system", "", start)
        system["metadata"] = {"is_visually_hidden_from_conversation": True}
        node = add(system, root, main=True, counts=False)
        for turn in range(messages):
            role = "user" if turn % 2 == 0 else "assistant"
            when = start + turn * 30.25
            msg = message(role, rng.text(text_size), when)
            if attachments and role == "user" and turn % 4 == 0:
                file_id = f"file-{rng.uuid()[:8]}"
                msg["content"] = {"content_type": "multimodal_text", "parts": [
                    {"content_type": "image_asset_pointer", "asset_pointer": f"file-service://{file_id}",
                     "size_bytes": 2048 + turn, "width": 64, "height": 64}, msg["content"]["parts"][0]]}
                msg["metadata"] = {"attachments": [{"id": file_id, "size": 2048 + turn,
                                                    "name": f"upload-{number}.png",
                                                    "mime_type": "image/png", "width": 64, "height": 64}]}
            if branches and turn == 3:  # a regenerated answer, left behind
                add(message("assistant", rng.text(text_size), when - 1), node, main=False, first=True)
            if branches and turn == 4:  # an edited question and its answer, left behind
                edited = add(message("user", rng.text(text_size), when - 2), node, main=False, first=True)
                add(message("assistant", rng.text(text_size), when - 1), edited, main=False)
            node = add(msg, node, main=True)
        return {"title": f"Chat {number}: {rng.text(12)}", "create_time": start,
                "update_time": start + messages * 31, "mapping": mapping, "moderation_results": [],
                "current_node": node, "plugin_ids": None, "conversation_id": rng.uuid(),
                "conversation_template_id": None, "gizmo_id": None, "is_archived": False,
                "safe_urls": [], "default_model_slug": "gpt-4o", "id": rng.uuid()}

    with _writer(target, form) as write:
        write("conversations.json", (conversation(n) for n in range(conversations)))
        write("user.json", {"id": "user-test", "email": "test.user@example.com",
                            "chatgpt_plus_user": False, "phone_number": None})
    return Export(target, conversations, counted["messages"], counted["main"])
