-- Back to the indexes of 2026-11-21-000001 (no data is touched).
DROP INDEX idx_traces_list;
CREATE INDEX idx_traces_list ON traces (workspace_id, timestamp DESC, id DESC);
DROP INDEX idx_eval_executions_eval_summary;
