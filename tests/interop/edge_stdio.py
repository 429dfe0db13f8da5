"""Drives `devmesh edge` with the official MCP Python SDK's stdio client, and restarts
the devmesh server underneath it.

    edge_stdio.py DEVMESH_BINARY TRANSPORT     # TRANSPORT: http or ws

It starts `devmesh serve` (SQLite in a temporary directory), registers an organization,
then through `stdio_client` + `ClientSession` on `devmesh edge`: lists tools, calls one,
reads a resource; stops the server and sees a clear error; starts it again on the same
ports and data, and goes on in the same session (and is told the catalog may have
changed). It prints what it saw as one JSON object for the Rust test to check.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import anyio
import mcp_types as types
from mcp import ClientSession, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, data: str) -> None:
        self.binary = binary
        self.data = data
        self.api = free_port()
        self.mcp = free_port()
        self.process = None

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "DEVMESH_DATA_DIR": self.data,
            "DEVMESH_API__LISTEN": f"127.0.0.1:{self.api}",
            "DEVMESH_MCP__LISTEN": f"127.0.0.1:{self.mcp}",
            "DEVMESH_LOG__LEVEL": "warn",
            "DEVMESH_SHUTDOWN__GRACE_PERIOD": "1s",
        }
        self.process = subprocess.Popen(
            [self.binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("devmesh did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def register(self) -> dict:
        body = json.dumps(
            {
                "organization_name": "Edge",
                "organization_slug": "edge",
                "admin_email": "edge@example.com",
                "admin_name": "Edge",
                "admin_password": "edge test password",
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api}/api/v1/auth/register/organization",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)


def structured(result) -> dict:
    if result.is_error:
        raise SystemExit(f"tool error: {result.content}")
    return result.structured_content


async def drive(binary: str, transport: str, server: Server, key: str) -> dict:
    notices: list[str] = []

    async def on_message(message) -> None:
        if isinstance(message, types.ServerNotification) or hasattr(message, "method"):
            notices.append(getattr(message, "method", type(message).__name__))

    params = StdioServerParameters(
        command=binary,
        args=["edge", "--url", f"http://127.0.0.1:{server.mcp}", "--transport", transport],
        env={"PATH": os.environ.get("PATH", ""), "DEVMESH_API_KEY": key, "DEVMESH_EDGE_LOG": "info"},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            init = await session.initialize()
            tools = [t.name for t in (await session.list_tools()).tools]
            whoami = structured(await session.call_tool("devmesh_whoami", {}))
            created = structured(
                await session.call_tool(
                    "devmesh_context_create",
                    {"name": "through the edge", "items": [{"role": "user", "content": "before restart"}]},
                )
            )
            uri = f"devmesh://contexts/{created['id']}"
            before = (await session.read_resource(uri)).contents[0].text

            server.stop()
            try:
                await session.call_tool("devmesh_whoami", {})
                down_error = None
            except MCPError as e:
                down_error = {"code": e.error.code, "message": e.error.message}

            server.start()
            # The same session goes on once the server is back.
            after_whoami = None
            with anyio.fail_after(30):
                while after_whoami is None:
                    try:
                        after_whoami = structured(await session.call_tool("devmesh_whoami", {}))
                    except MCPError:
                        await anyio.sleep(0.2)
            appended = structured(
                await session.call_tool(
                    "devmesh_context_append",
                    {"id": created["id"], "items": [{"role": "assistant", "content": "after restart"}]},
                )
            )
            after = (await session.read_resource(uri)).contents[0].text
            # The listen stream comes back too, and says the lists may have changed.
            with anyio.fail_after(30):
                while "notifications/tools/list_changed" not in notices:
                    await anyio.sleep(0.1)
            return {
                "protocol_version": init.protocol_version,
                "server_name": init.server_info.name,
                "tools": tools,
                "organization_id": whoami["organization_id"],
                "after_organization_id": after_whoami["organization_id"],
                "resource_before": before,
                "resource_after": after,
                "appended_seq": appended["items"][0]["seq"],
                "down_error": down_error,
                "notices": notices,
            }


def main() -> None:
    binary, transport = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as data:
        server = Server(binary, data)
        server.start()
        try:
            registered = server.register()
            key = registered["api_key"]["key"]
            seen = anyio.run(drive, binary, transport, server, key)
            seen["registered_organization_id"] = registered["organization"]["id"]
            print(json.dumps(seen))
        finally:
            if server.process and server.process.poll() is None:
                server.stop()


if __name__ == "__main__":
    main()
