"""Findings: what a check learned without comparing entries with finite differences.

A :class:`Finding` is one named result of a whole-function test: the forward
pass is not deterministic, the backward pass wrote into its cotangent, a zero
cotangent gave a nonzero gradient, ... Each has a stable keyword
(:attr:`Finding.kind`), a status (``"failed"``: a bug, whatever the numerical
comparison says; ``"inconclusive"``: the numerical comparison cannot be
trusted), a message with advice, and the inputs it concerns.

A :class:`~gradprobe.report.reports.CheckReport` holds its findings in
``report.findings``; its status is ``"failed"`` when any finding failed, else
``"inconclusive"`` when any finding is inconclusive (the entry-by-entry
verdict is then set aside, since it compared against estimates of a function
that changes between calls), else the entries' verdict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

#: Statuses a finding may have.
FINDING_STATUSES = ("failed", "inconclusive")


@dataclass(frozen=True)
class Finding:
    """One whole-function result of a check.

    Attributes
    ----------
    kind : str
        Stable keyword: ``"nondeterministic-forward"``, ``"forward-mutates-input"``,
        ``"backward-mutates-cotangent"``, ``"backward-mutates-input"``,
        ``"gradient-shape"``, ``"gradient-dtype"``, ``"zero-cotangent"``,
        ``"nondeterministic-backward"``, ...
    status : {"failed", "inconclusive"}
        ``"failed"``: a bug; ``"inconclusive"``: the numerical verdict cannot
        be trusted.
    message : str
        ``"<kind>: what was seen; how to fix it"``.
    names : tuple of str
        The inputs or parameters concerned (empty: the whole function).

    Examples
    --------
    >>> f = Finding("zero-cotangent", "failed", "zero-cotangent: ...", ("x",))
    >>> f.to_dict()["kind"], f.names
    ('zero-cotangent', ('x',))
    """

    kind: str
    status: str
    message: str
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in FINDING_STATUSES:
            raise ValueError(f"Finding status must be one of {FINDING_STATUSES}, got "
                             f"{self.status!r}")
        object.__setattr__(self, "names", tuple(self.names))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"kind": self.kind, "status": self.status, "message": self.message,
                "names": list(self.names)}


def findings_status(findings: Iterable[Finding]) -> str | None:
    """``"failed"``, ``"inconclusive"``, or None (no finding decides the verdict).

    Examples
    --------
    >>> findings_status([Finding("a", "inconclusive", "a: ..."), Finding("b", "failed", "b")])
    'failed'
    >>> findings_status([]) is None
    True
    """
    statuses = {f.status for f in findings}
    if "failed" in statuses:
        return "failed"
    return "inconclusive" if "inconclusive" in statuses else None
