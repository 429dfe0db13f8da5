# Sourced by the scripts that test a running devmesh from outside (conformance.sh,
# schemathesis.sh). `start_devmesh LISTENER [VAR=value ...]` builds the debug binary and
# starts it with a fresh data directory, both listeners on ports the system picks, JSON
# logs and the given settings; it waits until LISTENER (mcp or api) is ready and sets
# DEVMESH_ADDR to its address and DEVMESH_WORK to a scratch directory. At exit devmesh is
# stopped, its log copied to $DEVMESH_LOG_COPY when set, and the scratch directory removed.

start_devmesh() {
  local listener=$1; shift
  cargo build --quiet --bin devmesh
  local binary="${CARGO_TARGET_DIR:-target}/debug/devmesh"
  DEVMESH_WORK=$(mktemp -d)
  env DEVMESH_DATA_DIR="$DEVMESH_WORK/data" DEVMESH_MCP__LISTEN=127.0.0.1:0 \
    DEVMESH_API__LISTEN=127.0.0.1:0 DEVMESH_LOG__FORMAT=json "$@" \
    "$binary" serve >"$DEVMESH_WORK/devmesh.log" 2>&1 &
  DEVMESH_PID=$!
  trap 'kill $DEVMESH_PID 2>/dev/null; wait $DEVMESH_PID 2>/dev/null;
        [ -n "${DEVMESH_LOG_COPY:-}" ] && cp "$DEVMESH_WORK/devmesh.log" "$DEVMESH_LOG_COPY";
        rm -rf "$DEVMESH_WORK"' EXIT
  DEVMESH_ADDR=""
  for _ in $(seq 1 100); do
    DEVMESH_ADDR=$(grep -o "\"listener\":\"$listener\",\"addr\":\"[^\"]*\"" "$DEVMESH_WORK/devmesh.log" \
      | sed 's/.*"addr":"\([^"]*\)"/\1/' || true)
    [ -n "$DEVMESH_ADDR" ] && curl -fs "http://$DEVMESH_ADDR/ready" >/dev/null && return 0
    kill -0 $DEVMESH_PID 2>/dev/null || break
    sleep 0.1
  done
  echo "devmesh did not start:" >&2
  cat "$DEVMESH_WORK/devmesh.log" >&2
  exit 1
}
