-- Dagster's instance storage lives in its own database, never in the content database.
CREATE DATABASE dagster;
