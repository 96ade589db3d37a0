#!/bin/sh
# Lays out the root file system of the token-authority image:
#   deploy/container/make-rootfs.sh BINARY OUTDIR
# OUTDIR/rootfs gets the binary at /usr/local/bin/token-authority, every shared
# library `ldd` says it loads (at the same paths, symlinks resolved, the
# ELF interpreter included), /etc/passwd and /etc/group with the one user
# it runs as (65532, "nonroot", as distroless does), an empty /data owned by
# that user (SQLite, KEK file) and /tmp. /data is laid out apart, as
# OUTDIR/data, because a COPY into the image sets the owner of what it
# creates, not of a directory that is already there: the Containerfile
# copies it with --chown. Run the result directly with OUTDIR/rootfs as the
# root and OUTDIR/data bound on /data. Nothing else: no shell, no libc
# tools, no CA bundle (the binary's TLS clients, sqlx's and OTLP's, use the
# web roots compiled into it; a private CA is named by a file in the config).
# Name resolution needs no NSS modules: since glibc 2.34, "files" and "dns"
# are in libc itself; the runtime provides /etc/hosts and /etc/resolv.conf.
#
# The Containerfile's builder stage runs it on the binary it just built, and
# scripts/check-deploy.sh runs it on a prebuilt binary to test the image
# without a container engine. POSIX sh: the builder image's /bin/sh.
set -eu
if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY OUTDIR" >&2
  exit 2
fi
binary=$1
root=$2/rootfs
data=$2/data
uid=65532

mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/sys" "$root/run" "$data"
cp "$binary" "$root/usr/local/bin/token-authority"
chmod 0755 "$root/usr/local/bin/token-authority"

# `ldd` prints "libc.so.6 => /lib/.../libc.so.6 (0x…)" and
# "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no path. A static
# binary ("not a dynamic executable") needs nothing.
if libs=$(ldd "$binary" 2>/dev/null); then
  if printf '%s\n' "$libs" | grep -q 'not found'; then
    echo "$0: $binary needs libraries this system lacks:" >&2
    printf '%s\n' "$libs" | grep 'not found' >&2
    exit 1
  fi
  for lib in $(printf '%s\n' "$libs" | sed -n 's#.*[[:space:]]\(/[^[:space:]]*\)[[:space:]](0x.*#\1#p; s#^[[:space:]]*\(/[^[:space:]]*\)[[:space:]](0x.*#\1#p' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
fi

printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/data:/sbin/nologin\n' "$uid" "$uid" >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$uid" >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chown "$uid:$uid" "$data"
chmod 0700 "$data"
chmod 1777 "$root/tmp"
