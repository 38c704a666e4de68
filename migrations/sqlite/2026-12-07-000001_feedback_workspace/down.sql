-- Back to 2026-12-06-000001: ratings without their workspace (it is their trace's).
DROP VIEW eval_comparison;
CREATE TABLE __new_feedback (
    id TEXT NOT NULL PRIMARY KEY,
    trace_id TEXT NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    agent_id TEXT REFERENCES agents (id) ON DELETE SET NULL,
    rating TEXT NOT NULL CONSTRAINT feedback_rating_check CHECK (rating IN ('positive', 'negative', 'neutral')),
    rating_detail TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')) CONSTRAINT feedback_created_at_check CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z' AND date(substr(created_at, 1, 10), '+0 days') IS substr(created_at, 1, 10) AND substr(created_at, 12, 2) < '24' AND substr(created_at, 15, 2) < '60' AND substr(created_at, 18, 2) < '60'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')) CONSTRAINT feedback_updated_at_check CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z' AND date(substr(updated_at, 1, 10), '+0 days') IS substr(updated_at, 1, 10) AND substr(updated_at, 12, 2) < '24' AND substr(updated_at, 15, 2) < '60' AND substr(updated_at, 18, 2) < '60'),
    CONSTRAINT feedback_trace_id_key UNIQUE (trace_id)
);
INSERT INTO __new_feedback (id, trace_id, agent_id, rating, rating_detail, created_at, updated_at)
SELECT id, trace_id, agent_id, rating, rating_detail, created_at, updated_at FROM feedback;
DROP TABLE feedback;
ALTER TABLE __new_feedback RENAME TO feedback;
CREATE INDEX idx_feedback_agent_created_trace ON feedback (agent_id, created_at, trace_id);
CREATE INDEX idx_feedback_rating ON feedback (rating);
CREATE VIEW eval_comparison AS
SELECT
    e.id AS id,
    e.id AS execution_id,
    e.eval_id AS eval_id,
    e.trace_id AS trace_id,
    e.predicted_result AS predicted_result,
    e.predicted_reason AS predicted_reason,
    e.execution_time_ms AS execution_time_ms,
    e.error AS execution_error,
    e.executed_at AS executed_at,
    f.id AS feedback_id,
    f.rating AS human_rating,
    f.rating_detail AS rating_detail,
    CASE
        WHEN f.rating IS NULL OR e.predicted_result IS NULL THEN NULL
        WHEN (f.rating = 'positive' AND e.predicted_result = 0)
          OR (f.rating = 'negative' AND e.predicted_result = 1) THEN 1
        ELSE 0
    END AS is_contradiction
FROM eval_executions e
LEFT JOIN feedback f ON f.trace_id = e.trace_id;
