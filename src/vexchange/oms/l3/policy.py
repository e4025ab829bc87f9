"""The policy engine and its compliance presets (docs/formats/oms-level3.md §7).

A preset turns regulations into checks the store runs on every operation; each check gives a
:class:`Decision` the store writes to the audit trail whether it allows or denies. The
sensitivity of a grain is its header's bits (which a parser already holds at or above what its
``structural_tags`` require) raised by the preset's reading of ``reg:*`` tags, which the spec
leaves to "the policy engine". The presets are a reasonable reading, not legal advice:

* ``gdpr``: personal data (sensitivity >= pii) needs a data subject (``user_id``) and a
  ``processing_basis`` naming a Consent grain in the store that grants ``store`` and is not
  withdrawn; special-category data (phi) needs that consent's basis to be
  ``explicit_consent`` (Art. 9). Withdrawing a consent erases the grains it was the basis of
  (Art. 17, §23 ``consent_cascade``). Erasure of a user is allowed (right to erasure).
* ``hipaa``: PHI needs a ``user_id``; PHI is kept at least 6 years (45 CFR 164.316(b)(2)), so
  deleting or erasing younger PHI is refused; every read is audited (164.312(b)).
* ``ccpa``: personal data needs a ``user_id`` so a deletion request can reach it; erasure is
  allowed; no consent is required (opt-out model).
* ``none``: Level 2 rules only (plus a grain's own ``retention_policy``).

On every preset a grain's own ``retention_policy.minimum_retention_years`` blocks its deletion
before that age, and a litigation hold (Level 2) blocks any erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ...errors import UsageError

__all__ = ["PRESETS", "ConsentState", "Decision", "PolicyEngine", "Preset"]

PUBLIC, INTERNAL, PII, PHI = 0, 1, 2, 3
_YEAR_MS = 365.25 * 24 * 3600 * 1000


class Decision(NamedTuple):
    allow: bool
    rule: str
    reason: str


class ConsentState(NamedTuple):
    exists: bool
    withdrawn: bool
    scope: tuple[str, ...]
    basis: str | None


@dataclass(frozen=True)
class Preset:
    name: str
    subject_from: int | None = None  # sensitivity from which user_id is required
    consent_from: int | None = None  # ... a processing_basis Consent
    explicit_consent_from: int | None = None
    retention_from: int | None = None  # ... a minimum retention
    retention_years: float = 0.0
    audit_reads: bool = False
    cascade_withdrawal: bool = False
    reg_tags: tuple[tuple[str, int], ...] = ()


PRESETS = {
    "none": Preset("none"),
    "gdpr": Preset("gdpr", subject_from=PII, consent_from=PII, explicit_consent_from=PHI,
                   cascade_withdrawal=True, reg_tags=(("reg:gdpr", PII),)),
    "hipaa": Preset("hipaa", subject_from=PHI, retention_from=PHI, retention_years=6.0, audit_reads=True,
                    reg_tags=(("reg:hipaa", PHI),)),
    "ccpa": Preset("ccpa", subject_from=PII, reg_tags=(("reg:ccpa", PII),)),
}


class PolicyEngine:
    def __init__(self, preset: str = "none") -> None:
        if preset not in PRESETS:
            raise UsageError(f"unknown compliance preset {preset!r}; choose from {', '.join(PRESETS)}")
        self.preset = PRESETS[preset]

    @property
    def audit_reads(self) -> bool:
        return self.preset.audit_reads

    def sensitivity(self, header_bits: int, fields: dict[str, Any]) -> int:
        level = header_bits
        for tag in fields.get("structural_tags") or []:
            for prefix, needed in self.preset.reg_tags:
                if isinstance(tag, str) and tag.startswith(prefix):
                    level = max(level, needed)
        return level

    def on_write(self, kind: str, header_bits: int, fields: dict[str, Any],
                 consent: Any) -> Decision:
        """May this grain be written? ``consent(address) -> ConsentState``."""
        p, level = self.preset, self.sensitivity(header_bits, fields)
        rule = f"{p.name}:write"
        if p.subject_from is not None and level >= p.subject_from and not fields.get("user_id"):
            return Decision(False, f"{p.name}:data-subject",
                            f"sensitivity {level} data needs a user_id (data subject)")
        if p.consent_from is not None and level >= p.consent_from and kind != "consent":
            basis = fields.get("processing_basis")
            if not isinstance(basis, str):
                return Decision(False, f"{p.name}:consent", f"sensitivity {level} data needs a"
                                " processing_basis naming a Consent grain")
            state: ConsentState = consent(basis)
            refusal = ("is not in the store" if not state.exists else "was withdrawn" if state.withdrawn
                       else "does not grant 'store'" if "store" not in state.scope else None)
            if refusal is not None:
                return Decision(False, f"{p.name}:consent", f"the processing_basis Consent {refusal}")
            if (p.explicit_consent_from is not None and level >= p.explicit_consent_from
                    and state.basis != "explicit_consent"):
                return Decision(False, f"{p.name}:special-category",
                                "special-category data needs explicit_consent")
            return Decision(True, f"{p.name}:consent", "processing_basis Consent is valid")
        return Decision(True, rule, f"sensitivity {level}")

    def on_erase(self, header_bits: int, fields: dict[str, Any], now_ms: int) -> Decision:
        """May this grain be deleted now (retention)?"""
        p, level = self.preset, self.sensitivity(header_bits, fields)
        created = fields.get("created_at")
        age_years = (now_ms - created) / _YEAR_MS if isinstance(created, int) else float("inf")
        own = fields.get("retention_policy")
        years = own.get("minimum_retention_years") if isinstance(own, dict) else None
        if isinstance(years, (int, float)) and not isinstance(years, bool) and age_years < years:
            return Decision(False, "grain:retention", f"the grain's retention_policy keeps it {years} years")
        if p.retention_from is not None and level >= p.retention_from and age_years < p.retention_years:
            return Decision(False, f"{p.name}:retention",
                            f"sensitivity {level} data is kept {p.retention_years:g} years")
        return Decision(True, f"{p.name}:erase", "no retention applies")

    def on_read(self) -> Decision:
        return Decision(True, f"{self.preset.name}:read", "")
