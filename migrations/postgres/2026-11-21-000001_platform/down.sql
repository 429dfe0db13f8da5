-- The vector extension stays: other database objects may use it.
DROP TABLE job_dedup;
DROP TABLE jobs;
DROP TABLE nodes;
