#!/usr/bin/env bash
# Assembles the build context of each service of docker-compose.yml: the program
# Debian installed and the shared libraries `ldd` lists, under <service>/rootfs/, which
# the service's Dockerfile copies into a scratch image. Nothing is downloaded.
#
#   apt-get install nginx-light webdis redis-server && ./prepare.sh
set -euo pipefail
cd "$(dirname "$0")"

# rootfs <service> <program>...: the programs and their libraries into <service>/rootfs.
rootfs() {
  local dir="$1/rootfs"; shift
  rm -rf "$dir" && mkdir -p "$dir/tmp" "$dir/data" && chmod 1777 "$dir/tmp"
  for prog in "$@"; do
    local path; path="$(command -v "$prog")" || { echo "$prog is not installed (apt-get install it)" >&2; exit 1; }
    install -D "$path" "$dir/usr/bin/$prog"
    ldd "$path" | grep -o '/[^ ]*' | while read -r lib; do
      install -D "$(readlink -f "$lib")" "$dir$lib"
    done
  done
}

rootfs front nginx
# nginx looks its worker's user up, and opens its default log and temp folders.
mkdir -p front/rootfs/etc front/rootfs/var/log/nginx front/rootfs/var/lib/nginx
echo 'root:x:0:0:root:/root:/bin/false' > front/rootfs/etc/passwd
echo 'root:x:0:' > front/rootfs/etc/group
rootfs api webdis
rootfs store redis-server redis-cli
echo "build contexts ready: front/rootfs api/rootfs store/rootfs"
