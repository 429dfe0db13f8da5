DROP TABLE mcp_tasks;
