"""Live logs: the host agent follows container log files, the Channels layer carries bounded
batches, a WebSocket consumer forwards them to viewers allowed to see them.

Modules: ``cursors`` (resumable line positions), ``publish`` (any producer -> a group),
``access`` (who may watch what, per kind), ``follower`` (agent side), ``consumers`` (browser side).
"""
