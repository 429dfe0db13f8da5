DROP TABLE settings;
DROP TABLE context_items;
DROP TABLE contexts;
DROP TABLE audit_log;
DROP TABLE refresh_tokens;
DROP TABLE api_keys;
DROP TABLE users;
DROP TABLE organizations;
