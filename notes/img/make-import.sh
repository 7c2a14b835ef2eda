#!/bin/sh
# builds grove-test/busybox:import from /usr/bin/busybox via docker import (no registry)
set -e
cd "$(dirname "$0")"
tar -C rootfs -c . | docker import \
  -c 'CMD ["/bin/httpd","-f","-v","-p","8080","-h","/www"]' \
  -c 'EXPOSE 8080' \
  -c 'LABEL dev.grove.test=1' \
  - grove-test/busybox:import
