#!/usr/bin/env bash
# Prints the path of a Go toolchain able to build Kiln (Go >= 1.21, which fetches the exact toolchain
# go.mod asks for from the module proxy). On a machine without one it installs Debian's golang-go and
# uses it once to fetch the toolchain module from the proxy into $GOMODCACHE.
set -euo pipefail
want=go1.26.8
ok() { # true if $1 is a go binary of version >= 1.21
  local v; v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}; local minor=${v#1.}; minor=${minor%%.*}
  [[ $v == 1.* && $minor =~ ^[0-9]+$ && $minor -ge 21 ]]
}
for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
  if [ -n "$g" ] && [ -x "$g" ] && ok "$g"; then echo "$g"; exit 0; fi
done
if ! command -v go >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "go: installing Debian's golang-go to bootstrap $want" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends golang-go ca-certificates >&2
fi
old=$(command -v go)
mod="golang.org/toolchain@v0.0.1-$want.linux-$(dpkg --print-architecture 2>/dev/null || echo amd64)"
dir=$(cd /tmp && GO111MODULE=on GOFLAGS=-modcacherw "$old" mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* 2>/dev/null || true
echo "$dir/bin/go"
