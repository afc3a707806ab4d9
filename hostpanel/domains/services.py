"""Business rules of custom domains: add (normalised, one owner), prove ownership, remove, certificates.

A domain is routed, and the proxy may ask for its certificate, only once it is verified. Every
change that alters what is routed publishes the routing table at once (``signals.routing_changed``:
the edge's ``publish_routes`` sends it once the transaction commits).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from hostpanel.audit.services import Actor, audited
from hostpanel.deployments.models import App
from hostpanel.domains import certs, conf, proofs, signals, tls
from hostpanel.domains.hostnames import apps_domain
from hostpanel.domains.models import Domain
from hostpanel.domains.names import (
    WILDCARD_PREFIX,
    BadName,
    covers,
    display,
    is_under,
    lookup_addresses,
    normalise,
)
from hostpanel.errors import Conflict, InvalidRequest, ServiceError
from hostpanel.hosts.models import Host
from hostpanel.tenants.access import require_admin, require_role
from hostpanel.tenants.models import Role

RESERVED_SUFFIXES = ("hostpanel",)  # the proxy's internal DNS zone (routes.hostpanel., hosts.hostpanel.)


class NotVerified(ServiceError):
    """The ownership proof was not found; nothing changed. The message says what to add."""

    status = 422
    code = "not_verified"


def taken(name: str) -> Conflict:
    """The 409 for a name held by another tenant: it never says who."""
    return Conflict(
        f"{display(name)} is held by another account; if the domain is yours, ask the operator to release it"
    )


def visible_domains(actor: Actor, app: App) -> QuerySet[Domain]:
    require_role(actor, app.tenant, Role.VIEWER)
    return Domain.objects.filter(app=app).select_related("app", "tenant")


def clean_name(raw: str) -> str:
    """The normalised name, or InvalidRequest saying what is wrong with it (no state is read)."""
    try:
        name = normalise(raw)
    except BadName as exc:
        raise InvalidRequest(f"name: {exc}") from exc
    reserved = [apps_domain(), *RESERVED_SUFFIXES, *_panel_hostnames()]
    hit = next((r for r in reserved if r and is_under(name, r)), None)
    if hit == apps_domain():
        raise InvalidRequest(
            f"name: names under {hit} are the apps' automatic hostnames; add a domain of your own"
        )
    if hit:
        raise InvalidRequest(f"name: {display(name)} is reserved by the platform")
    return name


def _panel_hostnames() -> list[str]:
    names = []
    for entry in settings.ALLOWED_HOSTS:
        candidate = entry.lstrip(".").lower()
        if candidate and candidate != "*" and not _is_ip(candidate):
            names.append(candidate)
    return names


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def add_domain(actor: Actor, app: App, raw_name: str) -> Domain:
    """Claim ``raw_name`` for ``app`` (unverified, not routed). 409 when another tenant holds it."""
    tenant = app.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "domain.add", tenant) as entry, transaction.atomic():
        name = clean_name(raw_name)
        if name.startswith(WILDCARD_PREFIX):
            require_admin(actor)
        _drop_stale_claim(name)
        _check_free(name, app)
        if Domain.objects.filter(tenant=tenant).count() >= conf.max_domains_per_tenant():
            raise InvalidRequest(
                f"this tenant has {conf.max_domains_per_tenant()} domains, the most allowed; remove one first"
            )
        try:
            with transaction.atomic():
                domain = Domain.objects.create(tenant=tenant, app=app, name=name, created_by=_user(actor))
        except IntegrityError as exc:  # a concurrent claim of the same name won
            raise taken(name) from exc
        entry.obj = domain
    return domain


def _user(actor: Actor) -> object | None:
    return actor.user if actor.user is not None and getattr(actor.user, "pk", None) else None


def _drop_stale_claim(name: str) -> None:
    """An unverified claim older than the claim window no longer blocks the name (no squatting)."""
    cutoff = timezone.now() - timedelta(hours=float(getattr(settings, "HOSTPANEL_DOMAINS_CLAIM_HOURS", 72)))
    Domain.objects.filter(name=name, verified_at__isnull=True, created_at__lt=cutoff).delete()


def _check_free(name: str, app: App) -> None:
    existing = Domain.objects.filter(name=name).select_related("app").first()
    if existing is not None:
        if existing.tenant_id == app.tenant_id:
            raise Conflict(f"{display(name)} is already on app {existing.app.name!r}; remove it there first")
        raise taken(name)
    if name.startswith(WILDCARD_PREFIX):
        base = name[len(WILDCARD_PREFIX) :]
        others = Domain.objects.filter(name__endswith="." + base).exclude(tenant_id=app.tenant_id)
        if any(covers(name, d.name) for d in others):
            raise Conflict(f"names under {display(name)} belong to other tenants; it cannot be added")
        return
    parent = name.partition(".")[2]
    if Domain.objects.filter(name=WILDCARD_PREFIX + parent).exclude(tenant_id=app.tenant_id).exists():
        raise taken(name)


def remove_domain(actor: Actor, domain: Domain) -> None:
    """Delete the domain; its route goes from every proxy at once."""
    require_role(actor, domain.tenant, Role.DEVELOPER)
    with audited(actor, "domain.remove", domain.tenant, domain), transaction.atomic():
        was_routed = domain.verified
        domain.delete()
        if was_routed:
            signals.routing_changed.send(sender=Domain)


def verify_domain(actor: Actor, domain: Domain, method: str | None = None) -> Domain:
    """Look for the ownership proof (``dns``, ``http``, or both when None); route the domain once found.

    NotVerified (422, nothing changed) says what was found and what to add.
    """
    require_role(actor, domain.tenant, Role.DEVELOPER)
    if method not in (None, *Domain.Method.values):
        raise InvalidRequest(f"method: use {' or '.join(Domain.Method.values)} (or leave it out for both)")
    with audited(actor, "domain.verify", domain.tenant, domain):
        if domain.verified:
            return domain
        found = _find_proof(domain, method)
        with transaction.atomic():
            fresh = Domain.objects.select_for_update().get(pk=domain.pk)
            fresh.verified_at = timezone.now()
            fresh.verified_method = found
            fresh.cert_state = Domain.CertState.ON_DEMAND if fresh.is_wildcard else Domain.CertState.PENDING
            fresh.save(update_fields=["verified_at", "verified_method", "cert_state"])
            signals.routing_changed.send(sender=Domain)
    return fresh


def _find_proof(domain: Domain, method: str | None) -> str:
    resolver = proofs.make_resolver(conf.nameservers(), conf.check_timeout())
    methods = [method] if method else [Domain.Method.DNS, Domain.Method.HTTP]
    if domain.is_wildcard and Domain.Method.HTTP in methods:
        if method == Domain.Method.HTTP:
            raise InvalidRequest("method: a wildcard is proven by its DNS TXT record only")
        methods = [Domain.Method.DNS]
    failures: list[str] = []
    for each in methods:
        try:
            if each == Domain.Method.DNS:
                proofs.check_dns(resolver, domain.base_name, domain.token)
            else:
                proofs.check_http(
                    resolver,
                    domain.name,
                    domain.token,
                    http_answer(domain),
                    proxy_addresses(),
                    conf.proxy_http_port(),
                    conf.check_timeout(),
                )
            return str(each)
        except proofs.ProofFailed as exc:
            failures.append(f"{each}: {exc}")
    raise NotVerified(f"{display(domain.name)} is not verified yet. " + " / ".join(failures))


def http_answer(domain: Domain) -> str:
    return proofs.http_answer(settings.SECRET_KEY, domain.name, domain.token)


def well_known_answer(token: str) -> str | None:
    """What ``/.well-known/hostpanel/<token>`` answers through the proxy (None: 404)."""
    if len(token) != 64 or not token.isalnum():
        return None
    domain = Domain.objects.filter(token=token, verified_at__isnull=True).first()
    return http_answer(domain) if domain is not None else None


def proxy_addresses() -> list[str]:
    """Where the world reaches our proxy: configured public addresses, then those of hosts that are up.

    A host address that is a name is resolved by the system (operators set those, tenants do not).
    """
    found = list(conf.extra_proxy_addresses())
    for address in Host.objects.filter(state=Host.State.UP).values_list("address", flat=True):
        address = address.strip()
        if not address:
            continue
        if _is_ip(address):
            found.append(address)
            continue
        try:
            found += lookup_addresses(address)
        except OSError:
            continue
    return list(dict.fromkeys(a for a in found if _is_ip(a)))


def instructions(domain: Domain, addresses: list[str] | None = None) -> dict[str, object]:
    """How the tenant proves ownership (for the API and the dashboard); ``addresses``: the
    :func:`proxy_addresses` when the caller already has them (a list of domains)."""
    http_port = conf.proxy_http_port()
    port = "" if http_port == 80 else f":{http_port}"
    steps: dict[str, object] = {
        "dns": {
            "type": "TXT",
            "name": proofs.txt_name(domain.base_name),
            "value": proofs.txt_value(domain.token),
        }
    }
    if not domain.is_wildcard:
        steps["http"] = {
            "point_at": proxy_addresses() if addresses is None else addresses,
            "url": f"http://{domain.name}{port}{proofs.http_path(domain.token)}",
        }
    return steps


def check_certificate(actor: Actor, domain: Domain) -> Domain:
    """Ask every host's proxy which certificate it presents for the domain; record state and expiry."""
    require_role(actor, domain.tenant, Role.VIEWER)
    if not domain.verified:
        raise NotVerified(f"{display(domain.name)} is not verified: the proxy gets no certificate for it")
    if domain.is_wildcard:
        return domain
    record_certificate(domain)
    return domain


def record_certificate(domain: Domain) -> None:
    """Handshake with each proxy for ``domain.name`` and store the worst answer (no audit: a reading)."""
    state, issuer, expires, error = Domain.CertState.PENDING, "", None, "no proxy answered"
    for address in (proxy_addresses() or ["127.0.0.1"])[:10]:
        try:
            seen = certs.presented(address, conf.proxy_https_port(), domain.name, conf.check_timeout())
        except certs.NoProxy:
            continue  # no proxy runs there (a host without Caddy)
        except certs.NoCertificate as exc:
            state, error = Domain.CertState.ERROR, str(exc)[:500]
            break
        if not seen.covers(domain.name):
            state, error = Domain.CertState.ERROR, f"{address} presents a certificate for {seen.names[:3]}"
            break
        if expires is None or seen.not_after < expires:
            issuer, expires = seen.issuer, seen.not_after
        expired = seen.expired() or state == Domain.CertState.EXPIRED
        state, error = (Domain.CertState.EXPIRED if expired else Domain.CertState.ISSUED), ""
    domain.cert_state, domain.cert_error = state, error
    if expires is not None:
        domain.cert_issuer, domain.cert_expires_at = issuer, expires
    domain.cert_checked_at = timezone.now()
    domain.save(
        update_fields=["cert_state", "cert_issuer", "cert_error", "cert_expires_at", "cert_checked_at"]
    )


def tls_status(actor: Actor, mode: str | None = None) -> dict[str, object]:
    """This host's TLS mode (or ``mode``, asked about): its issuer, the internal CA's root, problems.

    Asking about a mode the host cannot do is InvalidRequest listing every reason.
    """
    require_admin(actor)
    config = conf.tls_config()
    if mode is not None:
        config = replace(config, mode=str(mode).strip().lower())
    found = tls.problems(config)
    if mode is not None and found:
        raise InvalidRequest(
            f"HOSTPANEL_TLS={config.mode} cannot work here: " + "; ".join(found), {"problems": found}
        )
    root = Path(getattr(settings, "HOSTPANEL_CADDY_DATA", settings.VAR_DIR / "caddy")) / "pki" / "authorities"
    return {
        "mode": config.mode,
        "issuer": tls.issuer(config) if not found else None,
        "root_certificate": str(root / "local" / "root.crt") if config.mode == "internal" else None,
        "problems": found,
    }
