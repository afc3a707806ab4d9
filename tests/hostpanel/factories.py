"""factory_boy factories for the panel's models."""

from __future__ import annotations

from typing import Any

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Membership, Quota, Role, Tenant


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-not-used")


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"tenant{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())

    @factory.post_generation
    def quota(obj: Tenant, create: bool, extracted: dict[str, Any] | None, **kwargs: Any) -> None:
        if create:
            values = {**settings.HOSTPANEL_DEFAULT_QUOTA, **(extracted or {})}
            Quota.objects.update_or_create(tenant=obj, defaults=values)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.DEVELOPER


class HostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Host
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"h{n}")
    cpu_millis = 8000
    memory_bytes = 16 * 1024**3
    state = Host.State.UP
    last_heartbeat = factory.LazyFunction(timezone.now)
