#!/bin/sh
# the compose invocation grove would make for env feat-01
exec docker compose -p grove-ws-feat-01 --project-directory /tmp/spike/wt-feat-01 \
  -f /tmp/spike/repo/docker-compose.yml -f /tmp/spike/envs/feat-01/override.yml "$@"
