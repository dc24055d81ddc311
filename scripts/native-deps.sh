#!/usr/bin/env bash
# What the native SQLCipher build needs from Debian (sourced by test.sh and
# node/build.sh): OpenSSL's libcrypto headers and pkg-config, for rusqlite's
# `bundled-sqlcipher` (SQLCipher itself is compiled from the crate).
if ! dpkg -s libssl-dev pkg-config >/dev/null 2>&1; then
  echo "installing libssl-dev pkg-config (SQLCipher's libcrypto)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi
