"""The dashboard's stack forms: a compose file pasted, uploaded or taken from git, and its env."""

from __future__ import annotations

from typing import Any

from django import forms

from hostpanel.errors import InvalidRequest
from hostpanel.stacks import sources
from hostpanel.stacks.models import STACK_NAME_RE
from hostpanel.tenants.models import Tenant


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` per line (blank lines and ``#`` comments skipped)."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"env: line {number}: write KEY=value")
        env[key.strip()] = value
    return env


class StackSourceForm(forms.Form):
    """One source of a compose file (the service decides what is allowed), and its variables."""

    compose = forms.CharField(
        required=False,
        strip=False,
        label="Compose file",
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false", "class": "code"}),
        help_text="paste it here, or upload it below, or take it from git",
    )
    file = forms.FileField(
        required=False,
        label="or upload it",
        help_text="a compose file, or a .tar/.tar.gz of the project (env_file and build contexts inside)",
    )
    git_url = forms.CharField(
        required=False,
        max_length=1000,
        label="or a git repository on the host",
        help_text="<root>/<tenant>/app.git#branch:dir, in your tenant's own directory under an allowed root",
    )
    git_file = forms.CharField(required=False, max_length=255, label="Compose file in the repository")
    env = forms.CharField(
        required=False,
        label="Variables",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="KEY=value per line, for ${KEY} in the file",
    )

    def source(self, tenant: Tenant) -> sources.Source | None:
        data = self.cleaned_data
        given = [
            bool(data.get("compose", "").strip()),
            data.get("file") is not None,
            bool(data.get("git_url")),
        ]
        if sum(given) > 1:
            raise InvalidRequest("give one source: paste, upload or git, not several")
        if given[0]:
            return sources.pasted(data["compose"])
        if given[1]:
            return sources.uploaded(tenant, data["file"])
        if given[2]:
            return sources.from_git(tenant, data["git_url"], data.get("git_file", ""))
        return None

    def env_values(self) -> dict[str, str]:
        return parse_env(self.cleaned_data.get("env", ""))


class StackForm(StackSourceForm):
    name = forms.RegexField(
        STACK_NAME_RE,
        max_length=30,
        label="Stack name",
        help_text="lowercase letters, digits and '-'; its networks and volumes are named <stack>_<name>",
    )
    field_order = ["name", "compose", "file", "git_url", "git_file", "env"]

    def clean(self) -> dict[str, Any]:
        return super().clean() or {}
