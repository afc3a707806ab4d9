#!/bin/sh
# Join this machine to a HostPanel panel, as root, from a checkout of the panel's version:
#   sh deploy/join.sh --panel https://PANEL --token hpjoin_...   (`manage.py host add NAME` prints it)
# The Debian packages (stdlib-only step, python3-venv among them), the virtualenv, then the join
# module in it: requirements, `hpctl host setup`, key pair, registration, the agent started.
set -eu
cd "$(dirname "$0")/.."
python3 -m engine.host.packages --install
test -x .venv/bin/python || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
exec .venv/bin/python -m hostpanel.agent.join "$@"
