"""Tenants' networks. On a host each is an engine overlay network named :attr:`Network.engine_name`.

Subnets and VNIs are allocated panel-wide (services.py): a host's engine
refuses overlapping subnets, and one VNI carries one network between hosts.
Each host a network has members on gets its own slice of the subnet
(:class:`NetworkSlot`), so addresses given out on different hosts never clash.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

# The engine's network names (engine.networks.manager.validate_network_name).
NETWORK_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DEFAULT_NAME = "default"


class Network(models.Model):
    """A tenant's network: its apps reach each other on it by app name and aliases."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="networks")
    name = models.CharField(
        max_length=63,
        validators=[RegexValidator(NETWORK_NAME_RE, "use lowercase letters, digits, '_', '-'")],
    )
    subnet = models.CharField(max_length=43, unique=True, help_text="panel-wide unique, e.g. 10.128.0.0/24")
    vni = models.PositiveIntegerField(unique=True, help_text="the VXLAN network identifier between hosts")
    # Overlay networks carry east-west traffic only; "internal" is kept for the API (and for a
    # later outbound gateway): today every tenant network is internal in the engine.
    internal = models.BooleanField(default=False)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="network_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"

    @property
    def engine_name(self) -> str:
        """The engine network's name on every host: unique by the row's id (slugs and names may hold
        '-' and '_', so joining them could collide), readable by the name; at most 63 characters."""
        return f"hp{self.pk}-{self.name}"[:63]


class NetworkSlot(models.Model):
    """Which slice of a network's subnet one host gives addresses from (its ``ip_range``)."""

    network = models.ForeignKey(Network, on_delete=models.CASCADE, related_name="slots")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="network_slots")
    slot = models.PositiveIntegerField()

    class Meta:
        ordering = ["network", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["network", "host"], name="one_slot_per_network_host"),
            models.UniqueConstraint(fields=["network", "slot"], name="slot_used_once_per_network"),
        ]

    def __str__(self) -> str:
        return f"{self.network} slot {self.slot} on {self.host_id}"
