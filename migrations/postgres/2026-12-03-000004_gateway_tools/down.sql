DROP TABLE gateway_credentials;
DROP TABLE gateway_learned_paths;
DROP TABLE gateway_tools;
