"""API serializers: shapes only. Rules live in the services."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from engine.errors import InvalidSpec
from engine.volumes.spec import MAX_VOLUME_SIZE, MIN_VOLUME_SIZE, validate_volume_target
from hostpanel.api.base import ModelSerializer, StrictModelSerializer, StrictSerializer
from hostpanel.audit.models import AuditLog
from hostpanel.deployments import health
from hostpanel.deployments.models import (
    APP_NAME_RE,
    NETWORKS,
    RESTART_POLICY_RE,
    App,
    Release,
    Replica,
    Rollout,
)
from hostpanel.deployments.services import tenant_usage
from hostpanel.hosts.models import Host
from hostpanel.images.models import IMAGE_NAME_RE, Image
from hostpanel.networks.models import DEFAULT_NAME as DEFAULT_NETWORK
from hostpanel.networks.models import NETWORK_NAME_RE
from hostpanel.secrets.models import SECRET_NAME_RE, Secret
from hostpanel.tenants.models import SLUG_RE, ApiToken, Membership, Quota, Role, Tenant
from hostpanel.tenants.storage import storage_use
from hostpanel.usage.models import Prices
from hostpanel.volumes.models import VOLUME_NAME_RE, Volume


class TenantSerializer(StrictModelSerializer):
    slug = serializers.RegexField(SLUG_RE, max_length=63)
    owner = serializers.CharField(write_only=True, required=False, help_text="username of the first owner")

    class Meta:
        model = Tenant
        fields = ["slug", "name", "owner", "created_at"]
        read_only_fields = ["created_at"]


class TenantUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, allow_blank=True)


class MembershipSerializer(StrictModelSerializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
        read_only_fields = ["id", "created_at"]


class RoleSerializer(StrictSerializer):
    role = serializers.ChoiceField(Role.choices)


class TokenSerializer(StrictModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "username",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "is_active",
        ]
        read_only_fields = ["id", "prefix", "created_at", "revoked_at", "last_used_at"]
        extra_kwargs = {"expires_at": {"help_text": "a time in the future; none: the token does not expire"}}


class NewTokenSerializer(TokenSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="shown once; send it as 'Authorization: Token <secret>'"
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "secret"]


QUOTA_FIELDS = [
    "cpu_millis",
    "memory_bytes",
    "pids",
    "disk_bytes",
    "containers",
    "volumes",
    "build_time_limit",
]


class QuotaSerializer(StrictModelSerializer):
    usage = serializers.SerializerMethodField()
    egress_allow = serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=64,
        required=False,
        help_text="CIDR ranges the tenant's containers may reach besides the internet "
        "(private, shared and link-local ranges are closed by default); admins set it",
    )
    storage = serializers.SerializerMethodField(
        help_text="bytes stored, by kind (volumes, images, registry, rootfs, build_cache) and total; "
        "the total counts against disk_bytes"
    )

    class Meta:
        model = Quota
        fields = [*QUOTA_FIELDS, "egress_allow", "usage", "storage", "updated_at"]
        read_only_fields = ["updated_at"]

    def get_storage(self, quota: Quota) -> dict[str, int]:
        return storage_use(quota.tenant).to_dict()

    def get_usage(self, quota: Quota) -> dict[str, int]:
        from dataclasses import asdict

        return asdict(tenant_usage(quota.tenant))


# A host's fields that only its agent and the panel write: state (up, down) from heartbeats, the
# lifecycle through the actions (cordon, uncordon, drain, evacuate), the engine at registration
HOST_OBSERVED = [
    "state",
    "lifecycle",
    "lifecycle_changed_at",
    "last_heartbeat",
    "engine_root",
    "engine_instance",
    "created_at",
]


class HostSerializer(StrictModelSerializer):
    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "address",
            "cpu_millis",
            "memory_bytes",
            "disk_bytes",
            "labels",
            *HOST_OBSERVED,
            "replicas",
            "used_cpu_millis",
            "used_memory_bytes",
        ]
        read_only_fields = ["id", *HOST_OBSERVED]

    replicas = serializers.IntegerField(read_only=True, source="replica_count", default=0)
    used_cpu_millis = serializers.IntegerField(
        read_only=True, default=0, help_text="requested by placed replicas"
    )
    used_memory_bytes = serializers.IntegerField(
        read_only=True, default=0, help_text="requested by placed replicas"
    )


class SecretRefSerializer(StrictSerializer):
    name = serializers.RegexField(SECRET_NAME_RE)
    env = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_]*$", required=False, allow_null=True)


class PortSerializer(StrictSerializer):
    container_port = serializers.IntegerField(min_value=1, max_value=65535)
    protocol = serializers.ChoiceField(["tcp", "udp"], default="tcp")


class VolumeRefSerializer(StrictSerializer):
    read_only = serializers.BooleanField(required=False)
    name = serializers.RegexField(
        VOLUME_NAME_RE,
        max_length=63,
        error_messages={
            "invalid": "invalid volume name: use lowercase letters, digits, '_' or '-', starting with one "
            "of the first two"
        },
    )
    path = serializers.CharField(
        max_length=255,
        help_text="an absolute path in the container, not on or below /, /proc, /sys, /dev, "
        "/run/secrets, /etc/hosts or /etc/resolv.conf, no '..'",
    )

    def validate_path(self, value: str) -> str:
        """The engine's own rule (engine.volumes.spec), so the host never refuses an accepted path."""
        try:
            return validate_volume_target(value)
        except InvalidSpec as exc:
            raise serializers.ValidationError(str(exc)) from None


class TmpfsSerializer(StrictSerializer):
    path = serializers.CharField(max_length=255, help_text="an absolute path in the container")
    size_bytes = serializers.IntegerField(
        min_value=4096, required=False, help_text="at most the replica's memory (default 64 MiB)"
    )


def _health_check_schema() -> dict[str, Any]:
    """The OpenAPI shape of ``health_check``; the rule itself is hostpanel/deployments/health.py."""
    seconds = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": health.MAX_INTERVAL}
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    timing = {
        "interval": seconds
        | {"description": f"seconds between checks (default {health.DEFAULT_INTERVAL:g})"},
        "timeout": seconds
        | {
            "description": f"seconds, at most the interval (default {health.DEFAULT_TIMEOUT:g}, "
            "or the interval if shorter)"
        },
        "retries": {"type": "integer", "minimum": 1, "maximum": health.MAX_RETRIES},
    }
    kinds = {
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "http": {
            "type": "object",
            "properties": {"port": port, "path": {"type": "string", "pattern": "^/[\\x21-\\x7e]{0,1023}$"}},
            "required": ["port"],
            "additionalProperties": False,
        },
        "tcp": {
            "type": "object",
            "properties": {"port": port},
            "required": ["port"],
            "additionalProperties": False,
        },
    }
    return {
        "type": "object",
        "nullable": True,
        "description": (
            "one of command, http or tcp; http and tcp probes connect to the container's own address "
            "from inside its network namespace; http never follows redirects (200-399 is healthy). "
            f"Bounds: {health.BOUNDS_TEXT}; anything else is a 400."
        ),
        "oneOf": [
            {
                "type": "object",
                "properties": {kind: shape} | timing,
                "required": [kind],
                "additionalProperties": False,
            }
            for kind, shape in kinds.items()
        ],
    }


@extend_schema_field(_health_check_schema())
class HealthCheckField(serializers.JSONField):
    """A release's health check (checked by the deployments service, one rule for every door)."""


_NETWORK_JOINS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "oneOf": [
            {"type": "string", "pattern": NETWORK_NAME_RE, "description": "a network of the tenant"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": NETWORK_NAME_RE},
                    "aliases": {"type": "array", "items": {"type": "string"}, "maxItems": 16},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        ]
    },
}


@extend_schema_field(_NETWORK_JOINS_SCHEMA)
class NetworkJoinsField(serializers.JSONField):
    """The tenant networks an app joins (checked by the networks service, one rule for every door)."""


class SpecSerializer(StrictSerializer):
    """The fields of a release. On update every field is optional (changes to the current release)."""

    image = serializers.CharField(max_length=255)
    command = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False)
    env = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    secrets = SecretRefSerializer(many=True, required=False)
    ports = PortSerializer(many=True, required=False)
    network = serializers.ChoiceField(
        NETWORKS,
        required=False,
        help_text="none (loopback only) or bridge (the tenant's per-host bridge: outbound traffic, "
        "published ports); independent of `networks`",
        error_messages={"invalid_choice": "use none or bridge; {input!r} is not for tenants"},
    )
    networks = NetworkJoinsField(
        required=False,
        help_text='the tenant networks the app joins: names or {"name", "aliases"}; on each, the app\'s '
        "name and aliases resolve to its replicas from every member, on whichever host. Default on "
        'create: ["default"] (the tenant\'s default network); [] joins none',
    )
    volumes = VolumeRefSerializer(many=True, required=False)
    replicas = serializers.IntegerField(min_value=0, max_value=100, required=False)
    cpu_millis = serializers.IntegerField(min_value=1, required=False)
    memory_bytes = serializers.IntegerField(min_value=1, required=False)
    pids = serializers.IntegerField(min_value=1, required=False)
    restart_policy = serializers.RegexField(
        RESTART_POLICY_RE,
        required=False,
        help_text="no, on-failure[:N], always, unless-stopped",
        error_messages={
            "invalid": "invalid restart policy: use no, on-failure[:N] (N to 999999), always, unless-stopped"
        },
    )
    health_check = HealthCheckField(required=False, allow_null=True)
    http_port = serializers.IntegerField(
        min_value=1,
        max_value=65535,
        required=False,
        allow_null=True,
        help_text="the container port that serves HTTP: the app gets a hostname and rolling deploys",
    )
    entrypoint = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        allow_null=True,
        help_text="null: the image's own; [] clears it",
    )
    user = serializers.CharField(
        max_length=65, required=False, allow_blank=True, help_text="user[:group], by name or number"
    )
    working_dir = serializers.CharField(max_length=255, required=False, allow_blank=True)
    stop_signal = serializers.CharField(
        max_length=16, required=False, allow_blank=True, help_text="SIGTERM, TERM or 15 ('' the image's)"
    )
    stop_grace_seconds = serializers.IntegerField(
        min_value=0, max_value=3600, required=False, help_text="seconds from the stop signal to SIGKILL"
    )
    init = serializers.BooleanField(required=False, help_text="run a tiny init as PID 1")
    labels = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=1024),
        required=False,
        help_text="the containers' labels; org.hostpanel.* are the panel's and refused",
    )
    tmpfs = TmpfsSerializer(many=True, required=False)

    def spec_changes(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        for key in ("secrets", "ports", "volumes", "tmpfs"):
            if key in data:
                data[key] = [dict(item) for item in data[key]]
        if "secrets" in data:
            data["secrets"] = [{"name": s["name"], "env": s.get("env")} for s in data["secrets"]]
        return data


class UpdateSpecSerializer(SpecSerializer):
    image = serializers.CharField(max_length=255, required=False)


class AppCreateSerializer(SpecSerializer):
    name = serializers.RegexField(APP_NAME_RE)

    def spec_changes(self) -> dict[str, Any]:
        data = super().spec_changes()
        data.setdefault("networks", [{"name": DEFAULT_NETWORK, "aliases": []}])  # web reaches db, no setup
        return data


class ChangeSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="the spec's field, env.NAME for one variable")
    label = serializers.CharField()
    before = serializers.CharField(help_text="in words and units, as the dashboard shows it")
    after = serializers.CharField()


class ReleaseSerializer(ModelSerializer):
    restart_policy = serializers.CharField(source="restart_policy_text")
    created_by = serializers.CharField(source="created_by.username", default=None)
    changes = serializers.SerializerMethodField(
        help_text="what this release changed from the version before it (releases/ only; null elsewhere)"
    )

    @extend_schema_field(ChangeSerializer(many=True, allow_null=True))
    def get_changes(self, release: Release) -> list[dict[str, str]] | None:
        changes = self.context.get("changes", {}).get(release.pk)
        return None if changes is None else [asdict(c) for c in changes]

    class Meta:
        model = Release
        fields = [
            "version",
            "image",
            "command",
            "env",
            "secrets",
            "ports",
            "network",
            "networks",
            "volumes",
            "replicas",
            "cpu_millis",
            "memory_bytes",
            "pids",
            "restart_policy",
            "health_check",
            "http_port",
            "entrypoint",
            "user",
            "working_dir",
            "stop_signal",
            "stop_grace_seconds",
            "init",
            "labels",
            "tmpfs",
            "note",
            "status",
            "status_message",
            "created_by",
            "created_at",
            "changes",
        ]


# The columns ReplicaSummarySerializer and RolloutSerializer read (AppViewSet loads only these).
REPLICA_SUMMARY_COLUMNS = [
    "id",
    "app_id",
    "index",
    "container_name",
    "host__name",
    "state",
    "health",
    "restart_count",
    "message",
    "release__version",
    "ready",
    "drain_until",
    "addresses",
]
ROLLOUT_COLUMNS = [
    "id",
    "app_id",
    "kind",
    "state",
    "release__version",
    "previous__version",
    "phase",
    "message",
    "step_deadline",
    "created_at",
    "finished_at",
]


class ReplicaSummarySerializer(ModelSerializer):
    host = serializers.CharField(source="host.name", default=None)
    release = serializers.IntegerField(source="release.version")
    addresses = serializers.DictField(
        source="network_addresses",
        child=serializers.CharField(),
        read_only=True,
        help_text="its address on each tenant network it joins, once its container started",
    )

    class Meta:
        model = Replica
        fields = [
            "id",
            "index",
            "container_name",
            "host",
            "state",
            "health",
            "restart_count",
            "message",
            "release",
            "ready",
            "drain_until",
            "addresses",
        ]


class RolloutSerializer(ModelSerializer):
    """A rolling change of an app (rollout.py): what it does now, or how it ended and why."""

    release = serializers.IntegerField(source="release.version", help_text="the version rolled to")
    previous = serializers.IntegerField(source="previous.version", default=None)

    class Meta:
        model = Rollout
        fields = [
            "kind",
            "state",
            "release",
            "previous",
            "phase",
            "message",
            "step_deadline",
            "created_at",
            "finished_at",
        ]


LATEST_ROLLOUT = (
    "latest_rollouts"  # the attribute an app's prefetched latest rollout (a list of 0 or 1) is in
)


class AppSerializer(ModelSerializer):
    release = ReleaseSerializer(source="current_release")
    replicas = ReplicaSummarySerializer(many=True)
    rollout = serializers.SerializerMethodField(help_text="the app's latest roll (null: none yet)")

    class Meta:
        model = App
        fields = ["name", "state", "release", "replicas", "rollout", "created_at", "updated_at"]

    @extend_schema_field(RolloutSerializer(allow_null=True))
    def get_rollout(self, app: App) -> dict[str, Any] | None:
        prefetched = getattr(app, LATEST_ROLLOUT, None)  # AppViewSet prefetches it for every app
        if prefetched is not None:
            latest = prefetched[0] if prefetched else None
        else:
            latest = app.rollouts.select_related("release", "previous").first()
        if latest is None:
            return None
        rollout = getattr(self, "_rollout", None)
        if rollout is None:  # one per list: building a serializer's fields costs more than using them
            rollout = self._rollout = RolloutSerializer()
        return rollout.to_representation(latest)  # type: ignore[no-any-return]


class ScaleSerializer(StrictSerializer):
    replicas = serializers.IntegerField(min_value=0, max_value=100)


class RollbackSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)


class ContainerSerializer(ModelSerializer):
    app = serializers.CharField(source="app.name")
    host = serializers.CharField(source="host.name", default=None)
    release = serializers.IntegerField(source="release.version")
    ports = serializers.SerializerMethodField(
        help_text="published ports: host address and port per container port"
    )

    class Meta:
        model = Replica
        fields = [
            "id",
            "app",
            "index",
            "container_name",
            "host",
            "release",
            "state",
            "engine_id",
            "exit_code",
            "restart_count",
            "health",
            "health_failures",
            "started_at",
            "finished_at",
            "next_restart_at",
            "message",
            "ports",
            "stop_requested",
            "restart_requested",
        ]

    def get_ports(self, replica: Replica) -> list[dict[str, Any]]:
        address = replica.host.address if replica.host else ""
        return [p | {"address": f"{address}:{p['host_port']}" if address else ""} for p in replica.ports]


# The columns ContainerSerializer reads (ContainerViewSet's list and detail load only these): the
# replica's own, and what it reads through its app, host and release.
CONTAINER_RELATED = ("app", "host", "release")
CONTAINER_COLUMNS = [
    *(name for name in ContainerSerializer.Meta.fields if name not in CONTAINER_RELATED),
    "app__name",
    "host__name",
    "host__address",
    "release__version",
]


class LogLineSerializer(serializers.Serializer):
    time = serializers.CharField()
    stream = serializers.CharField()
    text = serializers.CharField()


class SecretSerializer(StrictModelSerializer):
    name = serializers.RegexField(SECRET_NAME_RE)
    value = serializers.CharField(write_only=True, trim_whitespace=False, style={"input_type": "password"})

    class Meta:
        model = Secret
        fields = ["name", "value", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class SecretValueSerializer(StrictSerializer):
    value = serializers.CharField(write_only=True, trim_whitespace=False)


class ImageSerializer(ModelSerializer):
    base = serializers.BooleanField(source="is_base", read_only=True)

    class Meta:
        model = Image
        fields = ["id", "reference", "base", "size", "sha256", "created_at", "updated_at"]


class ImageUploadSerializer(StrictSerializer):
    name = serializers.RegexField(
        IMAGE_NAME_RE,
        max_length=192,
        help_text="<name>[:<tag>]; stored as <tenant>/<name>:<tag>",
        error_messages={"invalid": "give <name>[:<tag>] in lowercase letters, digits, '.', '_', '-'"},
    )
    archive = serializers.FileField(help_text="a docker-save or OCI archive (tar)")


class BaseImageSerializer(StrictSerializer):
    reference = serializers.CharField(max_length=255)


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,6}(\.[0-9]{1,6})?$", "example": "0.010000"}
)
class PriceField(serializers.DecimalField):
    """A price per unit: 0 or more, up to 6 digits before and after the point."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=6, min_value=Decimal(0), **kwargs)


class PricesSerializer(StrictModelSerializer):
    cpu_hour = PriceField(required=False)
    memory_gb_hour = PriceField(required=False)
    disk_gb_hour = PriceField(required=False)

    class Meta:
        model = Prices
        fields = ["currency", "cpu_hour", "memory_gb_hour", "disk_gb_hour", "updated_at"]
        read_only_fields = ["updated_at"]


class UsageHourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    cpu_seconds = serializers.FloatField()
    memory_gb_hours = serializers.FloatField()
    disk_gb_hours = serializers.FloatField()
    cost = serializers.CharField()


class UsageTotalSerializer(serializers.Serializer):
    cpu_seconds = serializers.FloatField()
    memory_gb_hours = serializers.FloatField()
    disk_gb_hours = serializers.FloatField()
    cost = serializers.CharField()


class AppUsageHourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    cpu_seconds = serializers.FloatField()
    memory_gb_hours = serializers.FloatField()


class AppUsageSerializer(serializers.Serializer):
    app = serializers.CharField()
    hours = AppUsageHourSerializer(many=True)


class UsageReportSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    currency = serializers.CharField()
    hours = UsageHourSerializer(many=True)
    total = UsageTotalSerializer()
    apps = AppUsageSerializer(many=True, help_text="each app's hourly usage (a view, not billed apart)")


class VolumeSerializer(StrictModelSerializer):
    name = serializers.RegexField(VOLUME_NAME_RE)
    size_bytes = serializers.IntegerField(
        min_value=MIN_VOLUME_SIZE,
        max_value=MAX_VOLUME_SIZE,
        help_text="bytes: at least 4 MiB, at most 16 TiB",
    )

    class Meta:
        model = Volume
        fields = ["id", "name", "size_bytes", "created_at"]
        read_only_fields = ["id", "created_at"]


class AuditLogSerializer(ModelSerializer):
    actor = serializers.CharField(source="actor_name")
    tenant = serializers.CharField(source="tenant.slug", default=None)

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "created_at",
            "actor",
            "tenant",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "source_address",
            "result",
            "message",
        ]
