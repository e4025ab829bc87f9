"""Other kinds of memory as OMS grains, each from a documented JSONL input shape
(docs/formats/oms.md, "Memory shapes"): conversation logs -> Event, tool-call logs -> Action,
state snapshots -> State, runbooks -> Workflow, sensor readings -> Observation, tasks -> Goal.

Every line may carry ``namespace``; ``namespace=`` given to :func:`grains_from_jsonl`
overrides it (``default_namespace`` only fills lines without one). Times (``timestamp``) are
ISO-8601 or epoch seconds/milliseconds. Unknown keys of a line are kept in the grain's
``context`` map, so nothing in the input is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .._time import parse_timestamp
from ..errors import UsageError
from .errors import OMSError
from .grain import encode_grain

__all__ = ["SHAPES", "grains_from_jsonl"]

_GOAL_STATES = {"active": "active", "open": "active", "todo": "active", "in_progress": "active",
                "done": "satisfied", "satisfied": "satisfied", "completed": "satisfied",
                "failed": "failed", "cancelled": "failed", "paused": "suspended",
                "suspended": "suspended", "blocked": "suspended"}


def _conversation(line: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event", "content": line.pop("content"), "role": line.pop("role", None),
            "session_id": line.pop("session_id", None), "model_id": line.pop("model_id", None)}


def _tool_call(line: dict[str, Any]) -> dict[str, Any]:
    """A complete Action when the line has an output; without one, the call phase (§27.1: a
    call whose result is not in the log), which carries no is_error or duration."""
    output = line.pop("output", None)
    is_error = line.pop("is_error", None)
    if is_error is not None and not isinstance(is_error, bool):
        raise ValueError(f"is_error must be true or false, not {is_error!r}")
    duration = line.pop("duration_ms", None)
    grain = {"type": "action", "tool_name": line.pop("tool"), "input": line.pop("input", {}),
             "tool_call_id": line.pop("call_id", None)}
    if output is None:
        if is_error is not None or duration is not None:
            raise ValueError("a tool call with is_error or duration_ms needs its output"
                             " (without one it is a call still waiting for its result)")
        return {**grain, "action_phase": "call"}
    return {**grain, "content": output, "is_error": bool(is_error), "duration_ms": duration}


def _state(line: dict[str, Any]) -> dict[str, Any]:
    return {"type": "state", "context": line.pop("state"), "plan": line.pop("plan", None)}


def _runbook(line: dict[str, Any]) -> dict[str, Any]:
    steps = line.pop("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(step, str) for step in steps):
        raise ValueError(f"steps must be a non-empty array of strings, not {steps!r}")
    return {"type": "workflow", "trigger": line.pop("trigger"), "steps": steps}


def _sensor(line: dict[str, Any]) -> dict[str, Any]:
    sensor = line.pop("sensor_id")
    reading = line.pop("reading")
    return {"type": "observation", "observer_id": sensor, "observer_type": line.pop("sensor_type"),
            "subject": sensor, "relation": "reads",
            "object": reading if isinstance(reading, (str, dict)) else orjson.dumps(reading).decode()}


def _task(line: dict[str, Any]) -> dict[str, Any]:
    status = str(line.pop("status", "active")).lower()
    if status not in _GOAL_STATES:
        raise ValueError(f"status {status!r} is not one of {', '.join(sorted(_GOAL_STATES))}")
    due = line.pop("due", None)
    return {"type": "goal", "description": line.pop("description"), "goal_state": _GOAL_STATES[status],
            "priority": line.pop("priority", None), "deadline": None if due is None else parse_timestamp(due)}


SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "conversation": _conversation, "tool_call": _tool_call, "state": _state,
    "runbook": _runbook, "sensor": _sensor, "task": _task,
}


def grains_from_jsonl(path: str | Path, shape: str, *, namespace: str | None = None,
                      default_namespace: str = "shared") -> Iterator[bytes]:
    """Canonical grain blobs, one per line of a JSONL file of the given shape."""
    if shape not in SHAPES:
        raise UsageError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    convert = SHAPES[shape]
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            where = f"{path} line {number}"
            try:
                line = orjson.loads(raw)
                if not isinstance(line, dict):
                    raise ValueError("a line must be a JSON object")
                created = parse_timestamp(line.pop("timestamp"))
                ns = namespace or line.pop("namespace", None) or default_namespace
                line.pop("namespace", None)
                grain = {k: v for k, v in convert(line).items() if v is not None}
                if line:  # what the shape does not name is kept, not dropped
                    context = grain.get("context") if shape == "state" else None
                    grain["context" if context is None else "source_fields"] = line
                grain.update(created_at=created, namespace=ns, source_type="imported")
                yield encode_grain(grain)
            except KeyError as err:
                raise UsageError(f"{where}: the {shape} shape needs the key {err.args[0]!r}") from None
            except (ValueError, OMSError) as err:
                raise UsageError(f"{where}: {err}") from None
