"""Host provisioning: what a machine needs before the engine can run containers.

``hpctl host setup`` installs the Debian packages, makes the cgroup layout
usable by crun, enables IP forwarding and creates the engine root;
``hpctl host info`` reports what the host has. Stdlib only, so that
``python3 -m engine.host.packages`` works before the virtualenv exists.
"""
