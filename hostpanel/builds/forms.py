"""The dashboard's "new build" form: text a person types, turned into :func:`services.start_build`'s
arguments. The service decides what is allowed (one context at most, the roots, the Dockerfile)."""

from __future__ import annotations

from typing import Any

from django import forms

from hostpanel.builds.models import Build


class BuildForm(forms.Form):
    """A build from an uploaded context tar, a git repository or a pasted Dockerfile (or a mix:
    a context with a Dockerfile edited here)."""

    name = forms.CharField(
        max_length=200, label="Image name[:tag]", help_text="the image becomes <tenant>/<name>:<tag>"
    )
    context = forms.FileField(
        required=False, label="Context (.tar or .tar.gz)", help_text="the files COPY and ADD read"
    )
    git_url = forms.CharField(
        required=False,
        max_length=1000,
        label="or a git repository on the host",
        help_text="<root>/<tenant>/app.git#branch:dir, in your tenant's own directory under an allowed root",
    )
    dockerfile_text = forms.CharField(
        required=False,
        strip=False,
        label="Dockerfile",
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}),
        help_text="paste or edit it here (it replaces the context's Dockerfile); leave empty to use the "
        "context's",
    )
    dockerfile = forms.CharField(
        required=False,
        max_length=500,
        initial="Dockerfile",
        label="Dockerfile path in the context",
        help_text="used when the box above is empty",
    )
    build_args = forms.CharField(
        required=False,
        label="Build args",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="KEY=value per line",
    )
    target = forms.CharField(
        required=False, max_length=128, label="Target stage", help_text="default: the last"
    )
    no_cache = forms.BooleanField(required=False, label="Do not use the layer cache")

    @classmethod
    def initial_from(cls, build: Build) -> dict[str, Any]:
        """The form filled in like ``build`` was (to edit its Dockerfile and build again)."""
        return {
            "name": build.name,
            "git_url": build.git_url,
            "dockerfile_text": build.dockerfile_text,
            "dockerfile": build.dockerfile,
            "build_args": "\n".join(f"{k}={v}" for k, v in build.build_args.items()),
            "target": build.target,
            "no_cache": build.no_cache,
        }

    def start_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hostpanel.builds.services.start_build` (ValueError on a bad line)."""
        d = self.cleaned_data
        args: dict[str, str] = {}
        for line in d["build_args"].splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"build args: {line.strip()!r} is not KEY=value")
            args[key.strip()] = value
        text = d["dockerfile_text"].replace("\r\n", "\n")
        return {
            "name": d["name"].strip(),
            "context": d["context"],
            "git_url": d["git_url"].strip(),
            "dockerfile": d["dockerfile"].strip() or "Dockerfile",
            "dockerfile_text": text if text.strip() else "",
            "build_args": args,
            "target": d["target"].strip(),
            "no_cache": d["no_cache"],
        }
