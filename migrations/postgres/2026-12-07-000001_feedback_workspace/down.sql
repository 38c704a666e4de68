-- Back to 2026-12-06-000001: ratings without their workspace (it is their trace's).
DROP INDEX idx_feedback_agent_created_trace;
CREATE INDEX idx_feedback_agent_created_trace ON feedback (agent_id, created_at, trace_id);
DROP INDEX idx_feedback_workspace_created;
ALTER TABLE feedback DROP COLUMN workspace_id;
