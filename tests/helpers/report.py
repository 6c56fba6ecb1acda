"""The reliability figures of a test run: hostile inputs tried, faults injected, and for
each fault the deliveries accepted, lost and applied twice. Printed at the end of the run
and written to var/reliability.json; README's "Reliability and security" quotes them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Fault:
    name: str
    accepted: int
    applied_once: int
    lost: int
    applied_twice: int


@dataclass
class Reliability:
    hostile: Counter = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    checks: Counter = field(default_factory=Counter)  # schemathesis: answers each check ran on

    def hostile_input(self, kind: str, count: int = 1) -> None:
        self.hostile[kind] += count

    def checked(self, check: str, count: int = 1) -> None:
        self.checks[check] += count

    def fault(self, name: str, accepted: int, applied_once: int, events: int) -> None:
        """Record a fault's outcome: `events` counts the applications (one event each)."""
        self.faults.append(Fault(name, accepted, applied_once, accepted - applied_once, max(0, events - applied_once)))

    def as_dict(self) -> dict:
        return {
            "hostile_inputs": dict(self.hostile),
            "hostile_inputs_total": sum(self.hostile.values()),
            "schemathesis_checks": dict(self.checks),
            "faults": [asdict(f) for f in self.faults],
            "faults_injected": len(self.faults),
            "deliveries_accepted_under_faults": sum(f.accepted for f in self.faults),
            "deliveries_lost": sum(f.lost for f in self.faults),
            "deliveries_applied_twice": sum(f.applied_twice for f in self.faults),
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    def lines(self) -> list[str]:
        data = self.as_dict()
        out = [f"hostile inputs tried: {data['hostile_inputs_total']}"]
        out += [f"  {kind}: {count}" for kind, count in sorted(self.hostile.items())]
        out += [f"  answers checked by schemathesis' {check}: {count}" for check, count in sorted(self.checks.items())]
        out.append(f"faults injected: {data['faults_injected']}; deliveries accepted under them: "
                   f"{data['deliveries_accepted_under_faults']}, lost: {data['deliveries_lost']}, "
                   f"applied twice: {data['deliveries_applied_twice']}")
        out += [f"  {f.name}: accepted {f.accepted}, lost {f.lost}, applied twice {f.applied_twice}" for f in self.faults]
        return out
