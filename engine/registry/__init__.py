"""A client for registries that speak the OCI Distribution Spec: pull, push, login.

``pull(store, "registry:5000/team/app:1")`` and ``push(store, local, remote)``
work against any such registry (HostPanel's own, a distribution registry,
quay, Docker Hub ...), anonymously, with HTTP basic auth or with the Docker
token flow. Credentials come from the caller or from ``<engine root>/auth.json``
(see engine.registry.credentials).
"""

from engine.registry.client import RegistryClient
from engine.registry.credentials import AuthFile, Credentials
from engine.registry.errors import AuthenticationFailed, RegistryError, RegistryUnreachable
from engine.registry.progress import BlobProgress, TransferReport
from engine.registry.pull import pull
from engine.registry.push import push
from engine.registry.remote import Endpoint, RemoteRef, parse_registry_url, parse_remote, remote_in

__all__ = [
    "AuthFile",
    "AuthenticationFailed",
    "BlobProgress",
    "Credentials",
    "Endpoint",
    "RegistryClient",
    "RegistryError",
    "RegistryUnreachable",
    "RemoteRef",
    "TransferReport",
    "parse_registry_url",
    "parse_remote",
    "pull",
    "push",
    "remote_in",
]
