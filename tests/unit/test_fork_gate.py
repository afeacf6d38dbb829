"""The fork gate: transactions pass, a fork waits for the others, never for its own thread."""

from __future__ import annotations

from conveyor.store.metadata.store import _ForkGate


def test_a_read_nested_in_a_transaction_passes_while_a_fork_waits() -> None:
    gate = _ForkGate()
    with gate.open():
        gate._forking = True  # another thread is about to fork
        with gate.open():  # must not wait: this thread is inside the gate already
            pass
        gate._forking = False
    assert gate._active == 0


def test_forking_from_inside_a_transaction_waits_only_for_other_threads() -> None:
    gate = _ForkGate()
    with gate.open():
        gate.before_fork()  # returns at once: the only transaction is this thread's own
        gate.after_fork_in_parent()
    assert gate._active == 0


def test_the_child_of_such_a_fork_counts_the_transaction_it_inherited() -> None:
    gate = _ForkGate()
    with gate.open():
        gate.before_fork()
        gate.after_fork_in_child()
        assert gate._active == 1
    assert gate._active == 0
