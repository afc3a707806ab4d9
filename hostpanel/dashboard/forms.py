"""Forms of the dashboard. They only turn text fields into the services' types; the services
(hostpanel.deployments.services.validate_spec, the quota check) decide what is allowed."""

from __future__ import annotations

import shlex
from decimal import Decimal
from typing import Any

from django import forms
from django.http import QueryDict

from hostpanel.deployments import health
from hostpanel.deployments.models import RestartPolicy
from hostpanel.deployments.services import AppSpec, parse_restart_policy
from hostpanel.errors import QuotaExceeded, ServiceError
from hostpanel.tenants import units
from hostpanel.tenants.models import Quota

MIB = 1024**2


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


# Each quota resource's form field (where a "quota exceeded" message is shown).
QUOTA_FIELD_OF = {
    "containers": "replicas",
    "cpu_millis": "cpu_millis",
    "memory_bytes": "memory_mib",
    "pids": "pids",
    "volumes": "volumes",
    "disk_bytes": "volumes",
}
# the health check fields each kind of check uses (the page shows only those: static/js/app_form.js)
HEALTH_FIELDS_OF = {
    "command": ("health_command",),
    "http": ("health_port", "health_path"),
    "tcp": ("health_port",),
}
HEALTH_COMMON = ("health_interval", "health_timeout", "health_retries")


class AppForm(forms.Form):
    """An app's spec: every field of an :class:`AppSpec` as text a person types (deploy and edit)."""

    image = forms.ChoiceField(label="Image")
    command = forms.CharField(
        required=False,
        label="Command",
        help_text="as in a shell: sh -c 'echo hi; sleep 60' (empty: the image's own)",
    )
    env = forms.CharField(
        required=False,
        label="Environment",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="KEY=value per line",
    )
    ports = forms.CharField(
        required=False, label="Published ports", help_text="container ports, e.g. 8080, 5353/udp"
    )
    http_port = forms.IntegerField(
        min_value=1,
        max_value=65535,
        required=False,
        label="HTTP port",
        help_text="the port your app serves HTTP on: it gets a hostname with TLS",
    )
    network = forms.ChoiceField(
        label="Outbound network",
        choices=[("none", "none (loopback only)"), ("bridge", "bridge (outbound traffic, published ports)")],
    )
    networks = forms.CharField(
        required=False,
        label="Tenant networks",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="one per line: network, or network: alias alias (apps on it reach this one by its "
        "name and aliases; empty: none)",
    )
    volumes = forms.CharField(
        required=False,
        label="Volumes",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="volume:/path per line",
    )
    replicas = forms.IntegerField(min_value=0, max_value=100, initial=1, label="Replicas")
    cpu_millis = forms.IntegerField(min_value=10, initial=250, label="CPU per replica (millicores)")
    memory_mib = forms.IntegerField(min_value=4, initial=128, label="Memory per replica (MiB)")
    pids = forms.IntegerField(min_value=1, initial=128, label="Processes per replica")
    restart_policy = forms.ChoiceField(
        choices=RestartPolicy.choices, initial=RestartPolicy.ALWAYS, label="Restart policy"
    )
    restart_max_retries = forms.IntegerField(
        min_value=0, required=False, label="Restart retries (on-failure only)"
    )
    health_kind = forms.ChoiceField(
        choices=[("", "none"), ("command", "command"), ("http", "HTTP GET"), ("tcp", "TCP connect")],
        required=False,
        label="Health check",
    )
    health_command = forms.CharField(
        required=False, label="Check command", help_text="as in a shell; exit code 0 is healthy"
    )
    health_port = forms.IntegerField(min_value=1, max_value=65535, required=False, label="Check port")
    health_path = forms.CharField(required=False, initial="/", label="Check path")
    # Bounds are checked by the one rule (hostpanel/deployments/health.py); these only guide the browser.
    health_interval = forms.FloatField(
        min_value=0.1,
        max_value=health.MAX_INTERVAL,
        required=False,
        initial=10,
        label="Check interval (seconds)",
    )
    health_timeout = forms.FloatField(
        min_value=0.1,
        max_value=health.MAX_INTERVAL,
        required=False,
        label="Check timeout (seconds, at most the interval)",
    )
    health_retries = forms.IntegerField(
        min_value=1,
        max_value=health.MAX_RETRIES,
        required=False,
        initial=3,
        label="Failures before unhealthy",
    )

    def __init__(self, *args: Any, images: list[str], secrets: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["image"].choices = [(ref, ref) for ref in images]
        self.secret_names = secrets

    def chosen_secrets(self, data: QueryDict) -> list[dict[str, Any]]:
        """The ticked secrets, each with its optional env variable name."""
        chosen = []
        for name in data.getlist("secret"):
            if name in self.secret_names:
                env = data.get(f"secret_env_{name}", "").strip()
                chosen.append({"name": name, "env": env or None})
        return chosen

    def spec(self, data: QueryDict) -> AppSpec:
        """The :class:`AppSpec` the valid form asks for (ValueError on text that does not parse)."""
        d = self.cleaned_data
        env: dict[str, str] = {}
        for line in _lines(d["env"]):
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"env: {line!r} is not KEY=value")
            env[key.strip()] = value
        ports = []
        for item in d["ports"].replace(",", " ").split():
            number, _, protocol = item.partition("/")
            if not number.isdigit():
                raise ValueError(f"ports: {item!r} is not a port number like 8080 or 5353/udp")
            ports.append({"container_port": int(number), "protocol": protocol or "tcp"})
        volumes = []
        for line in _lines(d["volumes"]):
            name, sep, path = line.partition(":")
            if not sep:
                raise ValueError(f"volumes: {line!r} is not volume:/path")
            volumes.append({"name": name.strip(), "path": path.strip()})
        networks = []
        for line in _lines(d.get("networks") or ""):
            name, _, aliases = line.partition(":")
            networks.append({"name": name.strip(), "aliases": aliases.replace(",", " ").split()})
        policy = d["restart_policy"]
        if policy == RestartPolicy.ON_FAILURE and d.get("restart_max_retries") is not None:
            policy = f"{policy}:{d['restart_max_retries']}"
        return AppSpec(
            image=d["image"],
            command=shlex.split(d["command"]) if d["command"] else [],
            env=env,
            secrets=self.chosen_secrets(data),
            ports=ports,
            network=d["network"],
            networks=networks,
            volumes=volumes,
            replicas=d["replicas"],
            cpu_millis=d["cpu_millis"],
            memory_bytes=d["memory_mib"] * MIB,
            pids=d["pids"],
            restart_policy=policy,
            health_check=self._health_check(),
            http_port=d.get("http_port"),
        )

    def _health_check(self) -> dict[str, Any] | None:
        d = self.cleaned_data
        kind = d.get("health_kind")
        if not kind:
            return None
        check: dict[str, Any]
        if kind == "command":
            check = {"command": shlex.split(d.get("health_command") or "")}
        elif kind == "tcp":
            check = {"tcp": {"port": d.get("health_port") or 0}}
        else:
            check = {"http": {"port": d.get("health_port") or 0, "path": d.get("health_path") or "/"}}
        if d.get("health_interval"):
            check["interval"] = d["health_interval"]
        if d.get("health_timeout"):
            check["timeout"] = d["health_timeout"]
        if d.get("health_retries"):
            check["retries"] = d["health_retries"]
        return check


# the field a service's message is about, by the message's prefix ("health_check.timeout: ...")
FIELD_OF_PREFIX = {
    "image": "image",
    "command": "command",
    "env": "env",
    "ports": "ports",
    "http_port": "http_port",
    "network": "network",
    "networks": "networks",
    "volumes": "volumes",
    "replicas": "replicas",
    "resources": "memory_mib",
    "health_check.command": "health_command",
    "health_check.http.path": "health_path",
    "health_check.http": "health_port",
    "health_check.tcp": "health_port",
    "health_check.interval": "health_interval",
    "health_check.timeout": "health_timeout",
    "health_check.retries": "health_retries",
    "health_check": "health_kind",
}


def place_error(form: AppForm, exc: ServiceError | ValueError) -> str:
    """Put ``exc`` next to the field(s) it is about; returns the message for the top of the form.

    A quota refusal names each resource over the quota in words and units
    (``memory: 9.8 TiB asked, 3.9 GiB left``) beside the field that asks for it.
    """
    message = str(exc)
    if isinstance(exc, QuotaExceeded):
        for over in exc.details.get("over", []):
            text = over.get("text") or units.over_text(over["resource"], over["requested"], over["limit"])
            form.add_error(QUOTA_FIELD_OF.get(over["resource"]), text)
        return message
    prefix = message.partition(":")[0].strip()
    if prefix in FIELD_OF_PREFIX:
        form.add_error(FIELD_OF_PREFIX[prefix], message.partition(":")[2].strip())
    return message


class DeployForm(AppForm):
    """A new app: its name, then its spec (on the tenant's default network unless changed)."""

    name = forms.RegexField(
        regex=r"^[a-z0-9][a-z0-9-]{0,39}$",
        max_length=40,
        label="Name",
        help_text="lowercase letters, digits, '-'",
    )


def initial_from_spec(spec: AppSpec) -> dict[str, Any]:
    """The form's fields filled from ``spec`` (the edit form starts from the current release)."""
    policy, retries = parse_restart_policy(spec.restart_policy)
    values: dict[str, Any] = {
        "image": spec.image,
        "command": shlex.join(spec.command),
        "env": "\n".join(f"{key}={value}" for key, value in sorted(spec.env.items())),
        "ports": ", ".join(
            f"{p['container_port']}{'/udp' if p.get('protocol') == 'udp' else ''}"
            for p in spec.ports
            if not (p.get("container_port") == spec.http_port and p.get("protocol", "tcp") == "tcp")
        ),
        "http_port": spec.http_port,
        "network": spec.network,
        "networks": "\n".join(
            f"{j['name']}: {' '.join(j['aliases'])}" if j.get("aliases") else j["name"] for j in spec.networks
        ),
        "volumes": "\n".join(f"{v['name']}:{v['path']}" for v in spec.volumes),
        "replicas": spec.replicas,
        "cpu_millis": spec.cpu_millis,
        "memory_mib": max(spec.memory_bytes // MIB, 1),
        "pids": spec.pids,
        "restart_policy": policy,
        "restart_max_retries": retries,
        "health_kind": "",
    }
    check = spec.health_check or {}
    for kind in HEALTH_FIELDS_OF:
        if kind in check:
            values["health_kind"] = kind
    if "command" in check:
        values["health_command"] = shlex.join(check["command"])
    target = check.get("http") or check.get("tcp") or {}
    if target:
        values["health_port"] = target.get("port")
        values["health_path"] = target.get("path", "/")
    for key in ("interval", "timeout", "retries"):
        if key in check:
            values[f"health_{key}"] = check[key]
    return values


QUOTA_FIELDS = ("cpu_millis", "memory_bytes", "pids", "disk_bytes", "containers", "volumes")


class QuotaForm(forms.ModelForm):
    """An admin's quota editor in units a person sets (cores, GiB); the tenants service applies
    it and tells the hosts. :meth:`values` gives the service's numbers (millicores, bytes)."""

    cpu_cores = forms.DecimalField(
        min_value=0, max_digits=9, decimal_places=3, label="CPU (cores)", help_text="e.g. 2 or 0.5"
    )
    memory_gib = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=3, label="Memory (GiB)", help_text="e.g. 4 or 0.75"
    )
    disk_gib = forms.DecimalField(
        min_value=0,
        max_digits=12,
        decimal_places=3,
        label="Storage (GiB)",
        help_text="volumes, images, builds",
    )
    egress_allow = forms.CharField(
        required=False,
        label="Egress allow-list",
        help_text="CIDR ranges (spaces or commas between) the tenant's containers may reach besides the "
        "internet; private, shared and link-local ranges are closed by default",
    )

    class Meta:
        model = Quota
        fields = ["pids", "containers", "volumes"]
        labels = {"pids": "Processes", "containers": "Containers", "volumes": "Volumes"}

    field_order = ["cpu_cores", "memory_gib", "disk_gib", "pids", "containers", "volumes", "egress_allow"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quota = self.instance
        self.initial.setdefault("egress_allow", " ".join(quota.egress_allow or []))
        if quota.pk:
            self.initial.setdefault("cpu_cores", _plain(Decimal(quota.cpu_millis) / 1000))
            self.initial.setdefault("memory_gib", _plain(Decimal(quota.memory_bytes) / units.GIB))
            self.initial.setdefault("disk_gib", _plain(Decimal(quota.disk_bytes) / units.GIB))

    def clean_egress_allow(self) -> list[str]:
        """The ranges as a list (the tenants service validates them with the engine's rule)."""
        return str(self.cleaned_data.get("egress_allow") or "").replace(",", " ").split()

    def values(self) -> dict[str, Any]:
        """The valid form as the tenants service's quota fields (millicores, bytes, counts)."""
        d = self.cleaned_data
        return {
            "cpu_millis": units.millis_of_cores(d["cpu_cores"]),
            "memory_bytes": units.bytes_of(d["memory_gib"], units.GIB),
            "disk_bytes": units.bytes_of(d["disk_gib"], units.GIB),
            "pids": d["pids"],
            "containers": d["containers"],
            "volumes": d["volumes"],
            "egress_allow": d["egress_allow"],
        }


def _plain(value: Decimal) -> str:
    """``0.750`` -> ``0.75``, ``4.000`` -> ``4``: a quota amount as it is typed (at most 3 decimals)."""
    text = f"{value.quantize(Decimal('0.001')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
