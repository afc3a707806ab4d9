"""Forms of the dashboard. They only turn text fields into the services' types; the services
(hostpanel.deployments.services.validate_spec, the quota check) decide what is allowed."""

from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.http import QueryDict

from hostpanel.deployments import health
from hostpanel.deployments.models import RestartPolicy
from hostpanel.deployments.services import AppSpec
from hostpanel.tenants.models import Quota

MIB = 1024**2


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


class DeployForm(forms.Form):
    """A new app: every field of an :class:`AppSpec` as text a person types."""

    name = forms.RegexField(
        regex=r"^[a-z0-9][a-z0-9-]{0,39}$", max_length=40, help_text="lowercase letters, digits, '-'"
    )
    image = forms.ChoiceField()
    command = forms.CharField(required=False, help_text="as in a shell: sh -c 'echo hi; sleep 60'")
    env = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="KEY=value per line"
    )
    ports = forms.CharField(required=False, help_text="container ports, e.g. 8080, 5353/udp")
    http_port = forms.IntegerField(
        min_value=1,
        max_value=65535,
        required=False,
        label="HTTP port",
        help_text="the port your app serves HTTP on: it gets a hostname with TLS",
    )
    network = forms.ChoiceField(
        choices=[("none", "none (loopback only)"), ("bridge", "bridge (tenant network)")]
    )
    volumes = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="volume:/path per line"
    )
    replicas = forms.IntegerField(min_value=0, max_value=100, initial=1)
    cpu_millis = forms.IntegerField(min_value=10, initial=250, label="CPU per replica (millicores)")
    memory_mib = forms.IntegerField(min_value=4, initial=128, label="Memory per replica (MiB)")
    pids = forms.IntegerField(min_value=1, initial=128, label="Processes per replica")
    restart_policy = forms.ChoiceField(choices=RestartPolicy.choices, initial=RestartPolicy.ALWAYS)
    restart_max_retries = forms.IntegerField(min_value=0, required=False, label="max retries (on-failure)")
    health_kind = forms.ChoiceField(
        choices=[("", "none"), ("command", "command"), ("http", "HTTP GET"), ("tcp", "TCP connect")],
        required=False,
        label="Health check",
    )
    health_command = forms.CharField(required=False, label="health command")
    health_port = forms.IntegerField(min_value=1, max_value=65535, required=False, label="HTTP/TCP port")
    health_path = forms.CharField(required=False, initial="/", label="HTTP path")
    # Bounds are checked by the one rule (hostpanel/deployments/health.py); these only guide the browser.
    health_interval = forms.FloatField(
        min_value=0.1, max_value=health.MAX_INTERVAL, required=False, initial=10, label="interval (s)"
    )
    health_timeout = forms.FloatField(
        min_value=0.1,
        max_value=health.MAX_INTERVAL,
        required=False,
        label="timeout (s, at most the interval)",
    )
    health_retries = forms.IntegerField(
        min_value=1, max_value=health.MAX_RETRIES, required=False, initial=3, label="retries"
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


QUOTA_FIELDS = ("cpu_millis", "memory_bytes", "pids", "disk_bytes", "containers", "volumes")


class QuotaForm(forms.ModelForm):
    """An admin's quota editor (the tenants service applies it and tells the hosts)."""

    egress_allow = forms.CharField(
        required=False,
        label="Egress allow-list",
        help_text="CIDR ranges (spaces or commas between) the tenant's containers may reach besides the "
        "internet; private, shared and link-local ranges are closed by default",
    )

    class Meta:
        model = Quota
        fields = list(QUOTA_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.setdefault("egress_allow", " ".join(self.instance.egress_allow or []))

    def clean_egress_allow(self) -> list[str]:
        """The ranges as a list (the tenants service validates them with the engine's rule)."""
        return str(self.cleaned_data.get("egress_allow") or "").replace(",", " ").split()
