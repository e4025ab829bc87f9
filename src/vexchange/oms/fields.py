"""The OMS v1.3 field-compaction maps (§6, §7, §14.2), full name -> short key.

Compaction is type-dependent (``content`` is ``cnt`` on Action, ``content`` elsewhere), so the
map for a grain is the common map plus its type's map. Keys not in the map pass through
unchanged both ways. Only the top-level map and the entries of ``content_refs``,
``embedding_refs`` and ``related_to`` are compacted (§4.7).
"""

from __future__ import annotations

from functools import cache

__all__ = [
    "COMMON",
    "CONTENT_REF",
    "DELEGATION",
    "EMBEDDING_REF",
    "NESTED",
    "RELATED_TO",
    "TYPE_FIELDS",
    "compact_map",
    "expand_map",
]

COMMON = {
    "type": "t", "subject": "s", "relation": "r", "object": "o", "confidence": "c",
    "source_type": "st", "created_at": "ca", "temporal_type": "tt", "valid_from": "vf",
    "valid_to": "vt", "system_valid_from": "svf", "system_valid_to": "svt", "context": "ctx",
    "superseded_by": "sb", "contradicted": "ct", "importance": "im", "author_did": "adid",
    "namespace": "ns", "user_id": "user", "structural_tags": "tags", "derived_from": "df",
    "consolidation_level": "cl", "success_count": "sc", "failure_count": "fc",
    "provenance_chain": "pc", "origin_did": "odid", "origin_namespace": "ons",
    "content_refs": "cr", "embedding_refs": "er", "related_to": "rt", "_elided": "_e",
    "_disclosure_of": "_do", "invalidation_policy": "ip", "supersession_justification": "sj",
    "supersession_auth": "sa", "owner": "own", "category": "cat", "run_id": "rid",
    "role": "role", "access_count": "ac", "last_accessed_at": "laa", "timestamp_ms": "tms",
    "observer_did": "obsdid", "subject_did": "sdid", "session_id": "sid2", "entity_id": "eid",
    "epistemic_status": "epstat", "verification_status": "vstatus",
    "requires_human_review": "rhr", "processing_basis": "pbasis", "identity_state": "idst",
    "license": "lic", "trusted_timestamp": "tts", "invalidation_type": "itype",
    "invalidation_reason": "ireason", "invalidation_initiator": "iinit",
    "retention_policy": "rpol", "recall_priority": "rpri",
}

DELEGATION = {
    "authorized_namespaces": "ans", "authorized_types": "atypes", "authorized_tools": "atools",
    "delegation_depth": "ddepth", "delegation_expiry": "dexp", "context_grains": "cgrains",
    "return_to": "retdid",
}
"""The delegation-scope keys of §6.11, which the section scopes to Goal and Belief grains
(``mg:delegates_to``): compacted on those two types only, verbatim on every other type."""

TYPE_FIELDS: dict[str, dict[str, str]] = {
    "belief": dict(DELEGATION),
    "event": {
        "content": "content", "consolidated": "consolidated", "content_blocks": "cblocks",
        "model_id": "mdl", "stop_reason": "stopr", "token_usage": "toku",
        "parent_message_id": "pmid",
    },
    "state": {"plan": "plan", "history": "history"},
    "workflow": {"steps": "steps", "trigger": "trigger"},
    "action": {
        "action_phase": "aphase", "tool_name": "tn", "input": "inp", "content": "cnt",
        "is_error": "iserr", "tool_call_id": "tcid", "call_batch_id": "cbid",
        "tool_type": "ttype", "tool_version": "tver", "execution_mode": "emode", "code": "code",
        "stdout": "out", "stderr": "err2", "exit_code": "xc", "interpreter_id": "iid",
        "error": "err", "error_type": "etype", "duration_ms": "dur", "parent_task_id": "ptid",
        "tool_description": "tdesc", "input_schema": "isch", "output_schema": "osch",
        "strict": "strict",
    },
    "observation": {
        "observer_id": "oid", "observer_type": "otype", "frame_id": "fid", "sync_group": "sg",
        "observation_mode": "omode", "observation_scope": "oscope", "observer_model": "omdl",
        "compression_ratio": "ocmp",
    },
    "goal": {
        "description": "desc", "goal_state": "gs", "criteria": "crit",
        "criteria_structured": "crs", "priority": "pri", "parent_goals": "pgs",
        "state_reason": "sr", "satisfaction_evidence": "se", "progress": "prog",
        "delegate_to": "dto", "delegate_from": "dfo", "expiry_policy": "ep", "recurrence": "rec",
        "evidence_required": "evreq", "rollback_on_failure": "rof", "allowed_transitions": "atr",
        "depends_on": "depg", "assigned_agent": "asgn", "expected_output": "expout",
        "output_grain": "outg", "deadline": "dline", **DELEGATION,
    },
    "reasoning": {
        "premises": "prem", "conclusion": "conc", "inference_method": "imethod",
        "alternatives_considered": "altc", "thinking_content": "think",
        "thinking_redacted": "tredact", "statistical_context": "statctx",
        "software_environment": "swenv", "parameter_set": "params", "random_seed": "rseed",
    },
    "consensus": {
        "participating_observers": "pobs", "threshold": "thold", "agreement_count": "agcnt",
        "dissent_count": "discnt", "dissent_grains": "disgrn", "agreed_content": "agcon",
    },
    "consent": {
        "grantee_did": "gdid", "scope": "scope", "is_withdrawal": "isw", "basis": "basis",
        "jurisdiction": "jur", "prior_consent": "pcon", "witness_dids": "wdids",
    },
}

CONTENT_REF = {"uri": "u", "modality": "m", "mime_type": "mt", "size_bytes": "sz",
               "checksum": "ck", "metadata": "md"}
EMBEDDING_REF = {"vector_id": "vi", "model": "mo", "dimensions": "dm", "modality_source": "ms",
                 "distance_metric": "di", "chunk_index": "ci", "chunk_text": "ct",
                 "chunk_strategy": "cs", "chunk_overlap": "co"}
RELATED_TO = {"hash": "h", "relation_type": "rl", "weight": "w"}
NESTED = {"content_refs": CONTENT_REF, "embedding_refs": EMBEDDING_REF, "related_to": RELATED_TO}
"""Array fields whose map entries are compacted too, by their full name."""


@cache
def compact_map(kind: str) -> dict[str, str]:
    """Full name -> short key for a type (shared, cached: do not modify)."""
    return {**COMMON, **TYPE_FIELDS.get(kind, {})}


@cache
def expand_map(kind: str) -> dict[str, str]:
    """Short key -> full name for a type (shared, cached: do not modify)."""
    return {short: full for full, short in compact_map(kind).items()}
