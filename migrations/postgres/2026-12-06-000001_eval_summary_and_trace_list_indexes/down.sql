-- Back to the indexes of 2026-11-21-000001 (no data is touched).
DROP INDEX IF EXISTS idx_eval_executions_eval_summary;
