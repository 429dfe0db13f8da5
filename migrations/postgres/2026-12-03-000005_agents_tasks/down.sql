ALTER TABLE api_keys DROP COLUMN agent_id;
DROP TABLE task_events;
DROP TABLE tasks;
DROP TABLE agent_stats;
DROP TABLE agents;
