"""Which of the volumes a host holds were deleted: how a host agent (it holds no database) learns
what to remove.

The panel does not record where a volume's data is (it is created on the host of the first
container there that mounts it, and stays when the replica moves). So the host names the panel
volumes its engine holds and the panel answers which of them are gone. A host may only ask about
a volume it was given: the volume entries of its desired document carry a proof of the volume's
id (:func:`proof`, an HMAC under the panel's secret key), the agent labels the engine volume with
it, and the answer covers only ids with their right proof. Another host's, or another tenant's,
volume ids cannot be probed: without its proof an id is ignored, whether it exists or not.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.crypto import constant_time_compare, salted_hmac

from hostpanel.volumes.models import Volume

_SALT = "hostpanel.volumes.held"
PROOF_LENGTH = 64  # sha256, hex


def proof(volume_id: int) -> str:
    """The proof that a host was given volume ``volume_id`` (its desired document's volume entry)."""
    return salted_hmac(_SALT, str(int(volume_id)), algorithm="sha256").hexdigest()


def deleted(held: Mapping[int, str]) -> tuple[list[int], list[int]]:
    """Of ``held`` (volume id -> its proof, as a host names its engine's volumes): the ids whose
    volume was deleted, and the ids ignored (a wrong proof: not a volume this host was given)."""
    proven = sorted(pk for pk, given in held.items() if constant_time_compare(proof(pk), given))
    alive = set(Volume.objects.filter(pk__in=proven).values_list("pk", flat=True)) if proven else set()
    return [pk for pk in proven if pk not in alive], sorted(set(held) - set(proven))
