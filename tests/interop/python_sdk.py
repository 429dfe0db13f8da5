"""Drives devmesh with the official MCP Python SDK (PyPI `mcp` 2.x).

    python_sdk.py legacy URL   # a 2025-11-25 session: streamable_http_client + ClientSession
    python_sdk.py modern URL   # protocol 2026-07-28 through mcp.Client
    python_sdk.py gateway URL TOOL ARGS_JSON  # a converted HTTP tool, listed and called in both eras
    python_sdk.py agent URL AGENT_ID  # an agent: hears of its task on its inbox, takes it, finishes it

The API key comes from DEVMESH_API_KEY. Each mode lists tools, calls tools with the key,
reads a resource, waits for a notification caused by its own write, and prints what it
saw as one JSON object on stdout, for the Rust test that runs it to check.
"""

import json
import os
import sys

import anyio
import httpx2
import mcp_types as types
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client


def http_client() -> httpx2.AsyncClient:
    key = os.environ["DEVMESH_API_KEY"]
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)


def structured(result) -> dict:
    if result.is_error:
        raise SystemExit(f"tool error: {result.content}")
    return result.structured_content


async def legacy(url: str) -> dict:
    updates: list[str] = []
    updated = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)
            updated.set()

    async with http_client() as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                created = structured(
                    await session.call_tool(
                        "devmesh_context_create",
                        {"name": "python legacy", "items": [{"role": "user", "content": "hello"}]},
                    )
                )
                uri = f"devmesh://contexts/{created['id']}"
                read_result = await session.read_resource(uri)
                await session.subscribe_resource(uri)
                appended = structured(
                    await session.call_tool(
                        "devmesh_context_append",
                        {"id": created["id"], "items": [{"role": "assistant", "content": "hi"}]},
                    )
                )
                with anyio.fail_after(10):
                    await updated.wait()
                return {
                    "protocol_version": init.protocol_version,
                    "server_name": init.server_info.name,
                    "tools": [t.name for t in tools.tools],
                    "context_id": created["id"],
                    "resource_text": read_result.contents[0].text,
                    "appended_seq": appended["items"][0]["seq"],
                    "updates": updates,
                }


async def modern(url: str) -> dict:
    async with http_client() as client:
        transport = streamable_http_client(url, http_client=client)
        async with Client(transport, mode="2026-07-28") as mcp:
            tools = await mcp.list_tools()
            whoami = structured(await mcp.call_tool("devmesh_whoami", {}))
            created = structured(
                await mcp.call_tool(
                    "devmesh_context_create",
                    {"name": "python modern", "items": [{"role": "user", "content": "hello"}]},
                )
            )
            uri = f"devmesh://contexts/{created['id']}"
            read_result = await mcp.read_resource(uri)
            events = []
            async with mcp.listen(resource_subscriptions=[uri]) as sub:
                await mcp.call_tool(
                    "devmesh_context_append",
                    {"id": created["id"], "items": [{"role": "assistant", "content": "hi"}]},
                )
                with anyio.fail_after(10):
                    async for event in sub:
                        events.append(type(event).__name__ + ":" + str(getattr(event, "uri", "")))
                        break
            return {
                "protocol_version": whoami["protocol_version"],
                "organization_id": whoami["organization_id"],
                "tools": [t.name for t in tools.tools],
                "context_id": created["id"],
                "resource_text": read_result.contents[0].text,
                "updates": events,
            }


async def gateway(url: str, tool: str, arguments: dict) -> dict:
    """Lists the tools and calls `tool` in each era; what the SDK saw of it."""
    seen = {}
    async with http_client() as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                called = await session.call_tool(tool, arguments)
                seen["legacy"] = {
                    "schema": next(t.input_schema for t in listed.tools if t.name == tool),
                    "is_error": called.is_error,
                    "structured": called.structured_content,
                }
    async with http_client() as client:
        transport = streamable_http_client(url, http_client=client)
        async with Client(transport, mode="2026-07-28") as mcp:
            listed = await mcp.list_tools()
            called = await mcp.call_tool(tool, arguments)
            seen["modern"] = {
                "schema": next(t.input_schema for t in listed.tools if t.name == tool),
                "is_error": called.is_error,
                "structured": called.structured_content,
            }
    return seen


async def agent(url: str, agent_id: str, ready_path: str) -> dict:
    """An agent on a 2025-11-25 session (its GET stream keeps it online): subscribes to
    its inbox, waits for the notification of new work, takes the task with
    devmesh_task_next, reports progress and completes it."""
    inbox = f"devmesh://agents/{agent_id}/tasks"
    told = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == inbox:
            told.set()

    async with http_client() as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await session.initialize()
                tools = [t.name for t in (await session.list_tools()).tools]
                await session.subscribe_resource(inbox)
                # The test creates the task once this agent is subscribed and shows online.
                with open(ready_path, "w") as ready:
                    ready.write("subscribed")
                with anyio.fail_after(60):
                    await told.wait()
                inbox_text = (await session.read_resource(inbox)).contents[0].text
                taken = structured(await session.call_tool("devmesh_task_next", {}))["task"]
                progress = structured(
                    await session.call_tool(
                        "devmesh_task_progress", {"id": taken["id"], "percent": 40, "message": "scanning"}
                    )
                )
                done = structured(
                    await session.call_tool(
                        "devmesh_task_complete",
                        {"id": taken["id"], "output": {"findings": 0, "by": "python"}, "tokens": 1200},
                    )
                )
                return {
                    "tools": tools,
                    "inbox": json.loads(inbox_text),
                    "taken": taken,
                    "progress": progress["progress"],
                    "done": done,
                }


def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "agent":
        result = anyio.run(agent, url, sys.argv[3], sys.argv[4])
    elif mode == "gateway":
        result = anyio.run(gateway, url, sys.argv[3], json.loads(sys.argv[4]))
    else:
        result = anyio.run(legacy if mode == "legacy" else modern, url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
