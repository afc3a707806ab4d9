"""Where a build's context comes from, row-free: the tenant's context roots, the checks of a
directory or git repository there, the admin's size bounds, and the safe unpacking of an upload.

The host agent uses these (a tenant is given by its slug), as the panel does when a build is
started (hostpanel/builds/services.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from engine.build.git import parse_git_url
from engine.build.model import ContextLimits
from engine.build.upload import unpack_context
from engine.errors import InvalidSpec
from hostpanel.errors import InvalidRequest

if TYPE_CHECKING:
    from hostpanel.tenants.models import Tenant


def context_limits() -> ContextLimits:
    """The admin's size bounds on what a build reads from its context."""
    return ContextLimits(
        dockerfile=settings.HOSTPANEL_BUILD_MAX_DOCKERFILE_BYTES,
        dockerignore=settings.HOSTPANEL_BUILD_MAX_DOCKERIGNORE_BYTES,
        context=settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES,
    )


def tenant_context_roots(tenant: Tenant | str) -> list[Path]:
    """The directories a tenant's builds may read a context from: ``<root>/<slug>`` for each
    root of ``HOSTPANEL_BUILD_CONTEXT_ROOTS`` (symlinks the admin made resolved), never a shared one."""
    slug = tenant if isinstance(tenant, str) else tenant.slug
    return [(Path(p) / slug).resolve() for p in settings.HOSTPANEL_BUILD_CONTEXT_ROOTS if p]


def _under_tenant_roots(path: Path, tenant: Tenant | str, field: str, what: str) -> Path:
    """``path`` resolved, if it is a directory in one of the tenant's own context directories.
    The refusal is the same whether the path is missing or another tenant's: it reveals neither."""
    roots = tenant_context_roots(tenant)
    if not roots:
        raise InvalidRequest(f"{field}: building from {what} is not enabled here; upload a context tar")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots) or not resolved.is_dir():
        raise InvalidRequest(
            f"{field}: {path} is not {what} in this tenant's context directories "
            f"({', '.join(str(r) for r in roots)}); put it there or upload a context tar instead"
        )
    return resolved


def check_context_path(path: str, tenant: Tenant | str) -> Path:
    """``path`` resolved, if a directory under the tenant's own context roots; else InvalidRequest."""
    return _under_tenant_roots(Path(path), tenant, "context_path", "a directory")


def check_git_url(url: str, tenant: Tenant | str) -> str:
    """``url`` (``PATH[#REF][:DIR]`` or ``file://``) with its repository path resolved (symlinks
    followed), if that is a directory under the tenant's own context roots; InvalidRequest otherwise."""
    if not tenant_context_roots(tenant):
        raise InvalidRequest(
            "git_url: building from a git repository is not enabled here; upload a context tar"
        )
    try:
        source = parse_git_url(url)
    except InvalidSpec as exc:
        raise InvalidRequest(f"git_url: {exc}") from None
    resolved = _under_tenant_roots(source.repository, tenant, "git_url", "a repository")
    fragment = f"#{source.ref}" if source.ref or source.subdir else ""
    return f"{resolved}{fragment}{':' + source.subdir if source.subdir else ''}"


def unpack_context_archive(archive: Path, into: Path) -> None:
    """Extract an uploaded context tar (plain or compressed) safely: nothing can land outside ``into``,
    devices are skipped and the unpacked tar is bounded (FIFOs kept are refused when a build reads them)."""
    limit = settings.HOSTPANEL_BUILD_MAX_CONTEXT_BYTES
    unpack_context(archive, into, limit=limit, what="the context tar (HOSTPANEL_BUILD_MAX_CONTEXT_BYTES)")
