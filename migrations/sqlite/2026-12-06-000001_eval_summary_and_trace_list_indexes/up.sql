-- Two indexes the design documents name, on SQLite.
--
-- The per-eval summary: one eval's executions counted and timed by predicted result
--   SELECT predicted_result, COUNT(*), AVG(execution_time_ms) FROM eval_executions
--   WHERE eval_id = ? GROUP BY predicted_result
-- read through idx_eval_executions_eval_trace, grouped in a temporary B-tree and looked up in
-- the table row by row. With (eval_id, predicted_result, execution_time_ms) one eval's rows
-- come out of the index already grouped and the index covers the query.
CREATE INDEX idx_eval_executions_eval_summary ON eval_executions (eval_id, predicted_result, execution_time_ms);

-- The trace list (a workspace's traces, newest first) is covering on PostgreSQL through
-- INCLUDE. SQLite has no INCLUDE: the same columns become trailing key columns, so the list
-- is answered from the index alone (EXPLAIN QUERY PLAN: USING COVERING INDEX). They only
-- widen the entries (the previews are short): the order and the lookups are those of the
-- first three columns.
DROP INDEX idx_traces_list;
CREATE INDEX idx_traces_list ON traces (workspace_id, timestamp DESC, id DESC, trace_id, source, step_count, has_errors, assignment_status, input_preview, output_preview);
