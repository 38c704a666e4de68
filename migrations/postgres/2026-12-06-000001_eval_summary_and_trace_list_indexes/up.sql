-- Two indexes the design documents name, on PostgreSQL.
--
-- The per-eval summary: one eval's executions counted and timed by predicted result
--   SELECT predicted_result, COUNT(*), AVG(execution_time_ms) FROM eval_executions
--   WHERE eval_id = $1 GROUP BY predicted_result
-- With (eval_id, predicted_result, execution_time_ms) one eval's rows come out of the index
-- already grouped, and the index covers the query (an index-only scan once vacuumed).
CREATE INDEX idx_eval_executions_eval_summary ON eval_executions (eval_id, predicted_result, execution_time_ms);

-- The trace list's index is covering here already (2026-11-21-000001: idx_traces_list
-- INCLUDE (trace_id, source, step_count, has_errors, assignment_status, input_preview,
-- output_preview)); the SQLite migration of this version gives SQLite the same columns.
