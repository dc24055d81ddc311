#!/usr/bin/env bash
# What the scripts need from Debian (sourced by test.sh, serve.sh,
# build-pkg.sh and node/build.sh): OpenSSL's libcrypto headers and
# pkg-config, for rusqlite's `bundled-sqlcipher` (SQLCipher itself is
# compiled from the crate); python3 (build-pkg.sh, test-web.sh and
# schemathesis.sh read JSON and pick ports with it) and curl (serve.sh).
if ! dpkg -s libssl-dev pkg-config python3 curl >/dev/null 2>&1; then
  echo "installing libssl-dev pkg-config python3 curl"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config python3 curl >/dev/null
fi
