"""Per-host Redis ACL users: what an enrolled host's agent may do on the broker, and nothing more.

The keys and channels are the ones kombu's Redis transport and Celery's Redis result backend
use for a host's two queues ``host.<name>`` and ``build.<name>`` (watched with ``redis-cli
MONITOR`` and ``ACL LOG`` while an agent consumed and answered tasks):

- the queue lists: ``<queue>`` and its priority lists ``<queue>\\x06\\x16<n>`` (BRPOP to consume,
  LPUSH to put back a message whose worker died: both on its own queues only);
- the binding sets ``_kombu.binding.<queue>`` and ``_kombu.binding_permanent.<queue>`` (SADD when
  the worker declares its queue, SMEMBERS when it restores a message);
- the unacked hash, index and mutex, made per host by the agent's transport options
  (``unacked.<name>``, ``unacked_index.<name>``, ``unacked_mutex.<name>``: kombu's defaults are one
  set shared by every consumer, which would let a host put back another host's messages);
- answers: ``celery-task-meta-<queue>.<uuid>`` (the worker reads it before writing: a result
  already SUCCESS is kept) and the channel of that name, where the waiting panel listens. The
  panel names the task ids of its questions so (hosts/dispatch.py); every other host task ignores
  its result.

Live log following (hostpanel/logstream/layer.py) is Redis pub/sub under the host's own prefix
:func:`logs_prefix` (``hostlogs.<name>.``): the viewers' leases the agent's follower SUBSCRIBEs to,
the backfill it PUBLISHes to a viewer's reply channel and the line batches of the replicas placed
on it, every one a channel beginning with that prefix (channels-redis's pub/sub layer names its
group channels ``<prefix>__group__<group>`` and its own channels ``<prefix>specific.<uuid>``). The
user gets the channel pattern ``&hostlogs.<name>.*`` and SUBSCRIBE/UNSUBSCRIBE, and no key: so a
host reads only the leases of its own replicas' viewers and publishes only to viewers of replicas
placed on it (a panel consumer listens for a replica on its host's prefix only), never to another
host's viewers nor into another host's replicas' streams. The terminal relay and ``docker cp``
(hostpanel/hosts/layer.py) use the same prefix: a session's output goes to the panel side's
channel ``<prefix>specific.<uuid>``, its input (keystrokes) to the group channel
``<prefix>__group__exec.<session>``; so a host can neither put output into another host's
sessions, nor type into them, nor read what is typed there.

The agent does all its Redis traffic as this user (its worker publishes no ``/0.celeryev/*``
events: ``--without-heartbeat``, no events); it holds no panel password. MONITOR during
tests/hostpanel/e2e/test_e2e_enrollment.py shows exactly the keys above on the host's user.

Everything else is refused with NOPERM: another host's queue (read or write) or log channels, the
Channels layer's keys, the panel's keys, KEYS/SCAN/CONFIG/FLUSH*, PSUBSCRIBE. The panel keeps its
own user with full access. A user an older version made (other key or channel patterns) is set
again at the host's next heartbeat (:func:`ensure_host_user`).
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from django.conf import settings

from hostpanel.errors import ServiceError

PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: <queue><sep><priority> for priorities 1..9
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Exactly the commands kombu's consumer, its restore path and the result backend send.
COMMANDS = (
    "auth",
    "hello",
    "ping",
    "select",
    "client|setname",
    "client|id",
    "brpop",
    "lpush",
    "llen",
    "rpop",
    "exists",
    "sadd",
    "srem",
    "smembers",
    "hset",
    "hget",
    "hdel",
    "zadd",
    "zrem",
    "zrange",
    "zrangebyscore",
    "set",
    "setex",
    "get",
    "del",
    "expire",
    "pexpire",
    "publish",
    # live log following: pub/sub on its own channels only (logs_prefix)
    "subscribe",
    "unsubscribe",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    # the unacked mutex is a redis-py lock: Lua scripts (run with this user's rights: key checks apply)
    "evalsha",
    "eval",
    "script|load",
)


def user_name(host: str) -> str:
    """The Redis ACL user of ``host``."""
    return f"host-{host}"


def logs_prefix(host: str) -> str:
    """The prefix of ``host``'s pub/sub channels (hostpanel/hosts/layer.py: live logs' leases,
    backfill and line batches; terminal and ``docker cp`` sessions). Anything but letters, digits,
    ``-`` and ``_`` becomes ``_``: an enrolled host's name has neither ``.`` nor ``_``, so no host's
    prefix begins with another host's."""
    return "hostlogs." + re.sub(r"[^A-Za-z0-9_-]", "_", host)[:80] + "."


def host_queues(host: str) -> tuple[str, str]:
    """The Celery queues ``host``'s agent consumes (control work, builds)."""
    return (f"host.{host}", f"build.{host}")


def transport_options(host: str) -> dict[str, str]:
    """Kombu transport options that give ``host``'s consumers their own unacked keys."""
    return {
        "unacked_key": f"unacked.{host}",
        "unacked_index_key": f"unacked_index.{host}",
        "unacked_mutex_key": f"unacked_mutex.{host}",
    }


def password_hash(password: str) -> str:
    """What Redis keeps of a password (``#<sha256 hex>`` in an ACL rule), and so does the panel."""
    return hashlib.sha256(password.encode()).hexdigest()


def acl_rules(host: str, password_sha256: str) -> list[str]:
    """The ``ACL SETUSER`` rules of ``host``'s user (after ``reset``: no keys, channels, commands)."""
    if not HOST_NAME.match(host):
        raise ValueError(f"host name {host!r}: use lowercase letters, digits and inner dashes")
    rules = ["reset", "on", f"#{password_sha256}", "-@all", *(f"+{c}" for c in COMMANDS)]
    for queue in host_queues(host):
        rules += [f"~{queue}", f"~{queue}{PRIORITY_SEP}*"]
        rules += [f"~_kombu.binding.{queue}", f"~_kombu.binding_permanent.{queue}"]
        # answers to the panel's questions (hosts/dispatch.py names their task ids <queue>.<uuid>)
        rules += [f"~celery-task-meta-{queue}.*", f"&celery-task-meta-{queue}.*"]
    rules += [f"~{key}" for key in transport_options(host).values()]
    rules.append(f"&{logs_prefix(host)}*")  # live logs, terminals, copies: its own pub/sub channels
    return rules


class BrokerUnavailable(ServiceError):
    """The panel could not change the host's Redis user (Redis down, or an ACL refused)."""

    status = 503
    code = "broker_unavailable"


def _acl(*args: str) -> object:
    try:
        with redis.Redis.from_url(settings.REDIS_URL) as r:
            return r.execute_command("ACL", *args)
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"the panel cannot change the host's Redis user ({exc}); try again") from exc


def set_host_user(host: str, password_sha256: str) -> str:
    """Create (or reset) ``host``'s ACL user with that password hash; returns the user name."""
    name = user_name(host)
    _acl("SETUSER", name, *acl_rules(host, password_sha256))
    return name


def ensure_host_user(host: str, password_sha256: str) -> bool:
    """Set ``host``'s user again if Redis lost it (a restart: ACL users live in memory) or its key or
    channel patterns are not this version's (an older panel made it: a version that grants new
    commands grants them with the patterns they need, as live log following did); True if so."""
    current = _acl("GETUSER", user_name(host))
    if current is not None and _patterns(current) == _patterns_of(acl_rules(host, password_sha256)):
        return False
    set_host_user(host, password_sha256)
    return True


def _patterns(user: object) -> set[str]:
    """The key (``~pattern``) and channel (``&pattern``) rules of an ``ACL GETUSER`` answer (Redis
    writes them back as given; not commands, which it folds into categories)."""
    fields = user if isinstance(user, dict) else {}
    text = b" ".join(fields.get(k) or b"" for k in (b"keys", b"channels"))
    return {rule for rule in text.decode(errors="replace").split(" ") if rule}


def _patterns_of(rules: list[str]) -> set[str]:
    return {rule for rule in rules if rule[:1] in "~&"}


def delete_host_user(host: str) -> bool:
    """Delete ``host``'s ACL user; Redis closes its connections at once. False if it had none."""
    return bool(_acl("DELUSER", user_name(host)))


def host_redis_url(host: str, password: str) -> str:
    """The broker URL ``host``'s agent uses: the panel's Redis address (or
    ``HOSTPANEL_AGENT_REDIS_ADDRESS``, as the hosts reach it) with the host's user and password."""
    panel = urlsplit(settings.REDIS_URL)
    netloc = settings.HOSTPANEL_AGENT_REDIS_ADDRESS or f"{panel.hostname}:{panel.port or 6379}"
    return urlunsplit(
        (panel.scheme, f"{quote(user_name(host))}:{quote(password)}@{netloc}", panel.path or "/0", "", "")
    )
