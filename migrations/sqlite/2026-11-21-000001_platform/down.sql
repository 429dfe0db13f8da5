DROP TABLE job_dedup;
DROP TABLE jobs;
DROP TABLE nodes;
