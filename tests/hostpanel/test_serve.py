"""hostpanel/serve.py's pieces: the front door's routes, trusted proxies, worker count."""

from __future__ import annotations

from hostpanel.serve import default_workers, front_config, gunicorn_command, trusting_loopback


def test_front_door_sends_sockets_to_daphne_and_the_rest_to_gunicorn() -> None:
    config = front_config("127.0.0.1:8000", "127.0.0.1:1001", "127.0.0.1:1002")
    server = config["apps"]["http"]["servers"]["panel"]
    assert server["listen"] == ["127.0.0.1:8000"]
    sockets, rest = server["routes"]
    assert sockets["match"] == [{"path": ["/ws/*"]}]
    assert sockets["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:1002"}]
    assert "match" not in rest  # everything else
    assert rest["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:1001"}]
    assert config["admin"] == {"disabled": True}  # nothing may reconfigure the panel's door
    assert server["automatic_https"] == {"disable": True}


def test_the_front_caddy_is_a_trusted_proxy_besides_the_operators() -> None:
    assert trusting_loopback({})["HOSTPANEL_TRUSTED_PROXIES"] == "127.0.0.1"
    given = {"HOSTPANEL_TRUSTED_PROXIES": "10.0.0.1, 127.0.0.1"}
    assert trusting_loopback(given)["HOSTPANEL_TRUSTED_PROXIES"] == "10.0.0.1,127.0.0.1"


def test_workers_follow_the_cpus_and_threads_are_given() -> None:
    assert default_workers(1) == 2
    assert default_workers(2) == 4
    assert default_workers(8) == 16
    command = gunicorn_command("127.0.0.1:9", 3, 5)
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--threads") + 1] == "5"
    assert command[-1] == "hostpanel.wsgi:application"
    assert "--no-control-socket" in command  # two panels on one machine must not share a socket
