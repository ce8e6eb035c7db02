-- Browse → DAG runs lists every DAG's runs newest first, a page at a time by keyset
-- (logical_date, id): this index serves each page from where the last one ended.
CREATE INDEX dag_run_newest ON dag_run (logical_date DESC, id DESC);
