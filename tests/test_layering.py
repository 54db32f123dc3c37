"""DESIGN.md's layering, checked: the gateway and the CLI go through the facade's public
methods (never ``billing.ctx`` or another object's private parts), and the core imports
neither Click, rich nor stripe."""

import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "usagebill"


def sources(*folders):
    for folder in folders:
        yield from sorted((PKG / folder).glob("*.py"))


def test_the_gateway_and_the_cli_never_reach_into_the_facades_context():
    found = [f"{p.relative_to(PKG)}:{n}" for p in sources("gateway", "cli")
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.ctx\b", line)]
    assert found == []


def test_the_core_imports_no_click_rich_or_stripe_at_module_level():
    core = [p for p in PKG.glob("*.py")] + list(sources("ledger", "importer"))
    bad = [f"{p.relative_to(PKG)}: {line.strip()}" for p in core for line in p.read_text().splitlines()
           if re.match(r"(import|from) (click|rich|stripe)\b", line)]
    assert bad == []
