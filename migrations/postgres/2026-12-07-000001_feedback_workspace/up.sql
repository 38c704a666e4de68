-- A rating carries its workspace (its trace's, set by the server and never changed), so a
-- member's tenancy condition on ratings is `workspace_id = ANY(...)` on the row itself. Before,
-- it was `trace_id IN (SELECT id FROM traces WHERE workspace_id = ANY(...))`: PostgreSQL read the
-- id of every trace of the member's workspaces, or probed the trace of every rating, for each
-- count of an agent's ratings (27 ms for 4,500 ratings among 100,000 traces).
ALTER TABLE feedback ADD COLUMN workspace_id TEXT COLLATE "C";
UPDATE feedback f SET workspace_id = t.workspace_id FROM traces t WHERE t.id = f.trace_id;
ALTER TABLE feedback
    ALTER COLUMN workspace_id SET NOT NULL,
    ADD CONSTRAINT feedback_workspace_id_fkey FOREIGN KEY (workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE;
-- A workspace's ratings, newest first; the foreign key's index.
CREATE INDEX idx_feedback_workspace_created ON feedback (workspace_id, created_at);
-- An agent's ratings counted under a member's scope: answered from the index alone.
DROP INDEX idx_feedback_agent_created_trace;
CREATE INDEX idx_feedback_agent_created_trace ON feedback (agent_id, created_at, trace_id) INCLUDE (workspace_id);
