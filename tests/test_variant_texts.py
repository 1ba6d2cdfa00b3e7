"""Every mutant and correct alternative still applies to the solutions it was written against.

The seeded runs that prove them are slow (the full suite); this is the quick part a contributor
who edits `solutions/` needs at once: a `replace` text that no longer occurs exactly once.
"""

from __future__ import annotations

import pytest

from tests.conftest import COURSE
from tests.variants import Variant, applied, load_variants

VARIANTS = load_variants("mutant") + load_variants("correct")


@pytest.mark.parametrize("variant", VARIANTS, ids=[f"{v.kind}:{v.id}" for v in VARIANTS])
def test_variant_applies_exactly_once(variant: Variant) -> None:
    source = (COURSE.solutions.parent / variant.file).read_text(encoding="utf-8")
    assert applied(variant, source) != source, f"{variant.kind} {variant.name!r} changes nothing"
