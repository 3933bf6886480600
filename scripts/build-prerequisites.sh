# Sourced by scripts/test.sh and scripts/start-dev.sh: what a fresh machine lacks to build Dura.
# librocksdb-sys generates its bindings with bindgen, which needs libclang.
if ! ldconfig -p | grep -q 'libclang\(-[0-9.]*\)\?\.so'; then
  echo "installing libclang-dev (needed to build RocksDB's bindings)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
fi
