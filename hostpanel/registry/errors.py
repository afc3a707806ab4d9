"""The registry's errors: each carries the OCI Distribution Spec error code and HTTP status.

They subclass the panel's error tree so the audit log files refusals as
``denied`` (NotFound/Forbidden) and bad input as ``failed``.
"""

from __future__ import annotations

from typing import Any

from hostpanel.errors import Forbidden, NotFound, ServiceError


class RegistryError(ServiceError):
    """An error answered as ``{"errors": [{"code", "message", "detail"}]}``."""

    status = 400
    code = "UNSUPPORTED"
    headers: dict[str, str]

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details)
        self.headers = {}


class BlobUnknown(RegistryError, NotFound):
    status, code = 404, "BLOB_UNKNOWN"


class BlobUploadUnknown(RegistryError, NotFound):
    status, code = 404, "BLOB_UPLOAD_UNKNOWN"


class BlobUploadInvalid(RegistryError):
    status, code = 400, "BLOB_UPLOAD_INVALID"


class RangeNotSatisfiable(RegistryError):
    """A chunk that does not start where the upload ends (416, the spec's out-of-order chunk)."""

    status, code = 416, "BLOB_UPLOAD_INVALID"


class DigestInvalid(RegistryError):
    status, code = 400, "DIGEST_INVALID"


class ManifestUnknown(RegistryError, NotFound):
    status, code = 404, "MANIFEST_UNKNOWN"


class ManifestInvalid(RegistryError):
    status, code = 400, "MANIFEST_INVALID"


class ManifestBlobUnknown(RegistryError):
    status, code = 400, "MANIFEST_BLOB_UNKNOWN"


class TooManyRequests(RegistryError):
    """Too many failed password logins: locked out until the cool-off passes."""

    status, code = 429, "TOOMANYREQUESTS"


class NameInvalid(RegistryError):
    status, code = 400, "NAME_INVALID"


class NameUnknown(RegistryError, NotFound):
    """Also what a caller gets for a repository it may not read: it never learns that it exists."""

    status, code = 404, "NAME_UNKNOWN"


class SizeInvalid(RegistryError):
    status, code = 400, "SIZE_INVALID"


class Unauthorized(RegistryError):
    status, code = 401, "UNAUTHORIZED"


class Denied(RegistryError, Forbidden):
    status, code = 403, "DENIED"


class InUse(RegistryError):
    """A delete of a blob or manifest that something else in the repository still needs.

    405 UNSUPPORTED, the spec's answer to a delete the registry does not do (its
    end-9/end-10 failures are 404, 400 and 405): the content stays whole, and a
    client that deletes blobs before their manifest (the conformance suite's
    teardown order by default) carries on, then deletes the manifest.
    """

    status, code = 405, "UNSUPPORTED"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.headers = {"Allow": allow}


class Unsupported(RegistryError):
    status, code = 405, "UNSUPPORTED"
