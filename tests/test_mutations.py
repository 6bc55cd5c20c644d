"""The mutation check (``python -m tests.mutations``) stays runnable: every mutation still applies
to the code it targets, changes it, and names tests that exist. Running the mutations themselves
takes minutes; its results are in bench/results/mutations.json."""

from __future__ import annotations

import pytest

from tests.mutations import MUTATIONS, REPO, Mutation, MutationError, check_applies


def test_every_mutation_applies_to_the_current_code() -> None:
    check_applies()
    for m in MUTATIONS:
        text = (REPO / m.path).read_text()
        assert m.apply(text) != text, m.id
        assert m.tests, m.id
        for test in m.tests:
            path, _, name = test.partition("::")
            assert (REPO / path).is_file(), (m.id, test)
            assert not name or f"def {name}(" in (REPO / path).read_text(), (m.id, test)
    assert len({m.id for m in MUTATIONS}) == len(MUTATIONS)


def test_a_mutation_whose_code_changed_fails_loudly() -> None:
    stale = Mutation("stale", "targets code that is not there", "dnadiff/noise.py", (("no such code", "x"),), ("t",))
    with pytest.raises(MutationError, match="stale.*dnadiff/noise.py.*found 0"):
        check_applies((stale,))
