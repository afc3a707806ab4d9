"""One error format for the whole API: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hostpanel.errors import ServiceError


def error_response(code: str, message: str, http_status: int, details: Any = None) -> Response:
    return Response(
        {"error": {"code": code, "message": message, "details": details or {}}}, status=http_status
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map service errors and DRF's own errors onto the one format."""
    if isinstance(exc, ServiceError):
        return error_response(exc.code, exc.message, exc.status, exc.details)
    if isinstance(exc, Http404):
        return error_response("not_found", "not found", status.HTTP_404_NOT_FOUND)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail
        message = "invalid input: " + _summary(fields)
        response.data = {"error": {"code": "invalid", "message": message, "details": fields}}
        return response
    detail = getattr(exc, "detail", str(exc))
    code = getattr(exc, "default_code", "error")
    response.data = {"error": {"code": code, "message": str(detail), "details": {}}}
    return response


def _summary(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_summary(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_summary(v) for v in detail)
    return str(detail)
