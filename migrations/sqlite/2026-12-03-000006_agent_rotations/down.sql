DROP TABLE agent_rotations;
