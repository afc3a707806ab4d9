"""The one place stacks start advancing a deployment (a seam the unit tests replace)."""

from __future__ import annotations


def send_advance(stack_id: int) -> None:
    """Take the stack's deployment a step further now, in this process (its services whose
    dependencies are met start); the panel's periodic host checks take it on from there
    (``hosts.signals.checked``: ``manage.py watchhosts``). Host agents hold no database, so this
    is never a task of theirs."""
    from hostpanel.stacks.services import advance  # services sends through here

    advance(stack_id)
