"""Tasks of stacks (run by the host agents' workers). Thin: they take ids and call stacks.services."""

from __future__ import annotations

from celery import shared_task

from hostpanel.stacks import dispatch, services


@shared_task(acks_late=False, ignore_result=True)
def advance_stack(stack_id: int) -> None:
    """Start the stack's services whose dependencies are met; again shortly while some still wait."""
    if services.advance(stack_id):
        dispatch.send_advance(stack_id, countdown=dispatch.ADVANCE_EVERY)
