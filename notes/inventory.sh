#!/bin/sh
# list everything carrying a label (default: the env token)
L=${1:-label=dev.grove.token=tok-feat-01}
echo "containers: $(docker ps -a --filter $L --format '{{.Names}}({{.State}})' | sort | tr '\n' ' ')"
echo "networks:   $(docker network ls --filter $L --format '{{.Name}}' | sort | tr '\n' ' ')"
echo "volumes:    $(docker volume ls --filter $L --format '{{.Name}}' | sort | tr '\n' ' ')"
echo "images:     $(docker image ls -a --filter $L --format '{{.Repository}}:{{.Tag}}@{{.ID}}' | sort | tr '\n' ' ')"
