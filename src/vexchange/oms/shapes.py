"""Other kinds of memory as OMS grains, each from a documented JSONL input shape
(docs/formats/oms.md, "Memory shapes"): conversation logs -> Event, tool-call logs -> Action,
state snapshots -> State, runbooks -> Workflow, sensor readings -> Observation, tasks -> Goal;
and the objects agent-memory frameworks hand out, one per line as their own APIs give them:
Mem0 memories and LangGraph items -> Belief, Letta core-memory blocks and agents -> State,
Letta tools -> Action (definition phase), Letta messages -> Event, or Action (call phase) for
a message that is one tool call.

Every line may carry ``namespace``; ``namespace=`` given to :func:`grains_from_jsonl`
overrides it (``default_namespace`` only fills lines without one). The Mem0 and LangGraph
shapes spell their own namespace (Mem0's session scope, LangGraph's namespace tuple joined by
``.``), as their connectors do. Times (``timestamp``, or the framework's own ``created_at``)
are ISO-8601 or epoch seconds/milliseconds. Unknown keys of a line are kept in the grain's
``context`` map (``source_fields`` for a State, whose context is the snapshot), so nothing in
the input is dropped.

The framework converters are also what ``vexchange.oms.memory`` uses for records read from
those frameworks, so a Letta block becomes the same kind of grain from a ``.af`` as from a
JSONL log of blocks.
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

__all__ = ["FRAMEWORK_SHAPES", "SHAPES", "SHAPE_NAMES", "grains_from_jsonl", "letta_agent", "letta_block",
           "letta_tool", "mem0_scope", "single_tool_call"]

_GOAL_STATES = {"active": "active", "open": "active", "todo": "active", "in_progress": "active",
                "done": "satisfied", "satisfied": "satisfied", "completed": "satisfied",
                "failed": "failed", "cancelled": "failed", "paused": "suspended",
                "suspended": "suspended", "blocked": "suspended"}
RELATION = "remembers"
"""The relation of a Belief that says "the agent remembers this" (as for every memory record)."""


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


# ----------------------------------------------------------------------------- frameworks


def mem0_scope(user_id: Any, agent_id: Any, run_id: Any) -> dict[str, Any]:
    """The common fields a Mem0 session scope gives any grain: ``user_id`` (OMS's data subject,
    §12.4: what per-user keys and erasure go by) and ``run_id`` (§6.1, the execution scope).
    Mem0's ``agent_id`` has no OMS field (``author_did`` is a DID): the caller keeps it in
    ``context``."""
    return {"user_id": user_id if isinstance(user_id, str) and user_id else None,
            "run_id": run_id if isinstance(run_id, str) and run_id else None}


def _mem0(line: dict[str, Any]) -> dict[str, Any]:
    """A Mem0 memory as ``Memory.get_all()["results"]`` / ``Memory.get(id)`` return it: a Belief
    about its scope's user, in the namespace of its session scope (as the mem0 connector)."""
    from ..connectors._mem0_layout import scope_string

    text = line.pop("memory")
    if not isinstance(text, str):
        raise ValueError(f"memory must be a string, not {type(text).__name__}")
    scope = {key: line[key] for key in ("user_id", "agent_id", "run_id") if isinstance(line.get(key), str)
             and line[key]}
    if not scope:
        raise ValueError("a Mem0 memory needs a user_id, agent_id or run_id (its scope)")
    fields = mem0_scope(line.pop("user_id", None), None, line.pop("run_id", None))
    # agent_id stays in the line: it goes to the context with the keys the shape does not name
    return {"type": "belief", "subject": line.pop("id", None) or text, "relation": RELATION, "object": text,
            "confidence": 1.0, "namespace": scope_string(scope), **fields}


def _langgraph(line: dict[str, Any]) -> dict[str, Any]:
    """A LangGraph store item as ``Item.dict()`` gives it (``store.get``/``search``): a Belief
    keyed like the item, its object the value map, in the namespace tuple joined by ``.`` (the
    store's own ``prefix`` form, as the langgraph connectors)."""
    namespace = line.pop("namespace")
    if not (isinstance(namespace, list) and namespace and all(isinstance(x, str) and x for x in namespace)):
        raise ValueError(f"namespace must be a non-empty array of labels, not {namespace!r}")
    value = line.pop("value")
    if not isinstance(value, dict):
        raise ValueError(f"value must be a JSON object, not {type(value).__name__}")
    key = line.pop("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, not {key!r}")
    return {"type": "belief", "subject": key, "relation": RELATION, "object": value, "confidence": 1.0,
            "namespace": ".".join(namespace)}


def letta_block(block: dict[str, Any]) -> dict[str, Any]:
    """A Letta core-memory block: a State grain, the block the snapshot (``label``, ``value``,
    ``description``): a piece of the agent's in-context state, not a fact about the world."""
    value = block.pop("value")
    if not isinstance(value, str):
        raise ValueError(f"value must be a string, not {type(value).__name__}")
    context = {"label": block.pop("label", None), "value": value,
               "description": block.pop("description", None)}
    return {"type": "state", "subject": block.pop("id", None),
            "context": {k: v for k, v in context.items() if v is not None}}


def letta_agent(agent: dict[str, Any]) -> dict[str, Any]:
    """A Letta agent: a State grain with the snapshot keys §8.3 / §22.9 name for Letta-style
    agents (``system_prompt``, ``model``, ``memory_blocks``, ``tools``) and its ``name``."""
    config = agent.get("llm_config")
    model = config.get("model") if isinstance(config, dict) else None
    context = {"system_prompt": agent.pop("system", None), "name": agent.pop("name", None),
               "model": model if isinstance(model, str) else None,
               "memory_blocks": agent.pop("block_ids", None), "tools": agent.pop("tool_ids", None)}
    return {"type": "state", "subject": agent.pop("id", None),
            "context": {k: v for k, v in context.items() if v is not None}}


def letta_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A Letta tool: an Action in the definition phase (§27.1): ``tool_name``,
    ``tool_description`` (``""`` when it has none: the phase requires the field), and
    ``input_schema`` the JSON Schema of its arguments (``json_schema.parameters``, Letta's
    OpenAI-style function schema; the whole ``json_schema`` when it has no ``parameters``)."""
    name = tool.pop("name")
    schema = tool.pop("json_schema")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, not {name!r}")
    if not isinstance(schema, dict):
        raise ValueError(f"json_schema must be a JSON object, not {type(schema).__name__}")
    parameters = schema.get("parameters")
    description = tool.pop("description", None)
    return {"type": "action", "action_phase": "definition", "subject": tool.pop("id", None),
            "tool_name": name, "tool_description": description if isinstance(description, str) else "",
            "input_schema": parameters if isinstance(parameters, dict) else schema}


def single_tool_call(calls: Any) -> tuple[str, dict[str, Any], str | None] | None:
    """(tool name, input, call id) of a list of exactly one OpenAI-format tool call
    (``{"id", "function": {"name", "arguments"}}``, as Letta, OpenAI and LangChain write them)
    whose arguments are a JSON object; None for anything else (no call, several, other
    arguments), which an Action in the call phase could not say exactly."""
    if not isinstance(calls, list) or len(calls) != 1 or not isinstance(calls[0], dict):
        return None
    function = calls[0].get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        return None
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    call_id = calls[0].get("id")
    return function["name"], arguments, call_id if isinstance(call_id, str) else None


def _letta_message(line: dict[str, Any]) -> dict[str, Any]:
    """A Letta message as an Agent File and ``Message`` hold it (``role``, ``content`` parts,
    ``tool_calls``, ``agent_id``): the call phase of an Action when it is exactly one tool call
    with object arguments (its text parts, if any, stay in ``context``), else an Event."""
    role = line.pop("role")
    if not isinstance(role, str) or not role:
        raise ValueError(f"role must be a non-empty string, not {role!r}")
    common = {"subject": line.pop("id", None), "role": role, "session_id": line.pop("agent_id", None)}
    call = single_tool_call(line.get("tool_calls"))
    if call is not None:
        line.pop("tool_calls")
        name, arguments, call_id = call
        return {"type": "action", "action_phase": "call", "tool_name": name, "input": arguments,
                "tool_call_id": call_id, **common}
    content = line.pop("content", None)
    grain = {"type": "event", "model_id": line.pop("model", None), **common}
    if isinstance(content, str) and content:
        return {**grain, "content": content}
    parts = content if isinstance(content, list) else []
    texts = [p["text"] for p in parts if isinstance(p, dict) and p.get("type") == "text"
             and isinstance(p.get("text"), str)]
    if not parts or not all(isinstance(p, dict) for p in parts):
        raise ValueError("content must be a non-empty string or a list of content parts")
    if len(texts) == len(parts):
        return {**grain, "content": "\n".join(texts)}
    return {**grain, "content": "\n".join(texts) or None, "content_blocks": parts}


SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "conversation": _conversation, "tool_call": _tool_call, "state": _state,
    "runbook": _runbook, "sensor": _sensor, "task": _task,
    "mem0": _mem0, "langgraph": _langgraph, "letta_block": letta_block, "letta_agent": letta_agent,
    "letta_tool": letta_tool, "letta_message": _letta_message,
}
SHAPE_NAMES: tuple[str, ...] = tuple(SHAPES)
"""The ``--shape`` choices of ``vex grains encode``, in the order the docs list them."""
FRAMEWORK_SHAPES = {"mem0": True, "langgraph": True, "letta_message": True, "letta_block": False,
                    "letta_agent": False, "letta_tool": False}
"""Shapes of framework objects, which carry their time as ``created_at`` when they have no
``timestamp``: True where the framework always writes one (required), False where its objects
have none (Letta blocks, agents and tools: the grain's ``created_at`` is then 0, as for a
record without a time)."""


def _created(line: dict[str, Any], shape: str) -> int | None:
    if "timestamp" in line or shape not in FRAMEWORK_SHAPES:
        return parse_timestamp(line.pop("timestamp"))
    if FRAMEWORK_SHAPES[shape]:
        return parse_timestamp(line.pop("created_at"))
    return parse_timestamp(line.pop("created_at", None)) or 0


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
                created = _created(line, shape)
                own = line.pop("namespace", None) if shape != "langgraph" else None
                grain = {k: v for k, v in convert(line).items() if v is not None}
                ns = namespace or grain.pop("namespace", None) or own or default_namespace
                if line:  # what the shape does not name is kept, not dropped
                    context = grain.get("context") if grain["type"] == "state" else None
                    grain["context" if context is None else "source_fields"] = line
                grain.update(created_at=created, namespace=ns, source_type="imported")
                yield encode_grain(grain)
            except KeyError as err:
                raise UsageError(f"{where}: the {shape} shape needs the key {err.args[0]!r}") from None
            except (ValueError, OMSError) as err:
                raise UsageError(f"{where}: {err}") from None
