//! The API's names, derived from the data model by the rules clients rely on, and the
//! relations between the tables (each foreign key seen from both ends).
//!
//! * Types are the catalog's type names; fields are the columns in camelCase.
//! * A child's parent field is its foreign-key column without `_id` in camelCase
//!   (`agent_version_id` → `agentVersion`); a key not ending in `_id` gets `User` appended
//!   (`acknowledged_by` → `acknowledgedByUser`).
//! * A parent's children field is the child's list name when the child's parent field is
//!   the parent's one-row name (`trace.workspace` → `workspace.traces`), otherwise the list
//!   name, `By` and the parent field in PascalCase (`agentVersion.agentsByActiveVersion`);
//!   a unique key makes it an object field named by the child's one-row name
//!   (`trace.feedback`).

use std::sync::OnceLock;

use crate::catalog::{self, Column, Kind, Table};

/// `snake_case` → `camelCase`.
pub fn camel(snake: &str) -> String {
    let pascal = pascal(snake);
    let mut chars = pascal.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `snake_case` → `PascalCase`.
pub fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// `PascalCase` → `camelCase` (the one-row root field of a type).
pub fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The GraphQL names of a table: type, one-row field, list field.
#[derive(Debug, Clone)]
pub struct TableNames {
    /// The object type (`Trace`).
    pub type_name: String,
    /// The one-row root field (`trace`); none for the view.
    pub one: String,
    /// The list root field (`traces`).
    pub list: String,
}

/// Plurals the names table fixes; every other list name is the one-row name and `s`.
const LIST_NAMES: &[(&str, &str)] = &[
    ("TraceSummary", "traceSummaries"),
    ("EvalLlmCacheEntry", "evalLlmCacheEntries"),
    ("JobRetry", "jobRetries"),
    ("RolloutBatch", "rolloutBatches"),
];

/// The names of a table.
pub fn table_names(table: &Table) -> TableNames {
    let one = lower_first(table.type_name);
    let list = LIST_NAMES
        .iter()
        .find(|(t, _)| *t == table.type_name)
        .map(|(_, l)| (*l).to_owned())
        .unwrap_or_else(|| format!("{one}s"));
    TableNames { type_name: table.type_name.to_owned(), one, list }
}

/// The GraphQL field of a column.
pub fn column_field(column: &Column) -> String {
    camel(column.name)
}

/// The GraphQL enum type of an enum column: `<Type><Column>`.
pub fn enum_type(table: &Table, column: &Column) -> String {
    format!("{}{}", table.type_name, pascal(column.name))
}

/// An enum value's GraphQL name: `ai_improved` → `AI_IMPROVED`.
pub fn enum_value(value: &str) -> String {
    value.to_ascii_uppercase()
}

/// Columns the API never exposes.
pub fn is_secret(column: &Column) -> bool {
    matches!(column.name, "api_key_encrypted" | "token_hash")
}

/// Whether a column is shown as an `ID` (the key and every foreign key).
pub fn is_id(table: &Table, column: &Column) -> bool {
    column.kind == Kind::Id || column.references.is_some() || view_reference(table, column).is_some()
}

/// The view's columns that point at rows (the view has no foreign keys of its own).
fn view_reference(table: &Table, column: &Column) -> Option<&'static str> {
    if !table.view {
        return None;
    }
    match column.name {
        "eval_id" => Some("evals"),
        "trace_id" => Some("traces"),
        "execution_id" => Some("eval_executions"),
        "feedback_id" => Some("feedback"),
        _ => None,
    }
}

/// A foreign key seen from both ends.
#[derive(Debug, Clone)]
pub struct Relation {
    /// The table holding the key.
    pub child: &'static Table,
    /// The key column.
    pub column: &'static Column,
    /// The referenced table.
    pub parent: &'static Table,
    /// The object field on the child that gives the parent.
    pub parent_field: String,
    /// The field on the parent that gives the children (a connection, or an object for a
    /// unique key).
    pub children_field: String,
    /// Whether the key is unique (at most one child per parent).
    pub one_to_one: bool,
}

/// A many-to-many path through a link table.
#[derive(Debug, Clone)]
pub struct Link {
    /// The table the field is on.
    pub from: &'static Table,
    /// The link table.
    pub link: &'static Table,
    /// The link column naming `from`'s row.
    pub from_column: &'static str,
    /// The link column naming the target row.
    pub to_column: &'static str,
    /// The target table.
    pub to: &'static Table,
    /// The connection field on `from`.
    pub field: String,
}

/// A one-to-many path through an intermediate table, from a row to the rows of another table
/// that reference the intermediate rows referencing it: `agent.traces` are the traces whose
/// `agent_version_id` names a version of the agent. Two foreign keys chained (`via_column`
/// on `via`, `to_column` on `to`), both declared by the catalog.
#[derive(Debug, Clone)]
pub struct Through {
    /// The table the field is on (`agents`).
    pub from: &'static Table,
    /// The intermediate table (`agent_versions`).
    pub via: &'static Table,
    /// The intermediate table's key naming `from`'s row (`agent_versions.agent_id`).
    pub via_column: &'static str,
    /// The target table (`traces`).
    pub to: &'static Table,
    /// The target's key naming the intermediate row (`traces.agent_version_id`).
    pub to_column: &'static str,
    /// The connection field on `from` (the target's list name).
    pub field: String,
}

fn parent_field(column: &str) -> String {
    match column.strip_suffix("_id") {
        Some(stem) => camel(stem),
        None => format!("{}User", camel(column)),
    }
}

fn table(name: &str) -> &'static Table {
    catalog::table(name).unwrap_or_else(|| panic!("the catalog has no table `{name}`"))
}

/// Every relation of the model (the view's included), computed once.
pub fn relations() -> &'static [Relation] {
    static RELATIONS: OnceLock<Vec<Relation>> = OnceLock::new();
    RELATIONS.get_or_init(|| {
        let mut out = Vec::new();
        for child in catalog::TABLES.iter() {
            for column in child.columns {
                let parent = match (column.references, view_reference(child, column)) {
                    (Some(fk), _) => table(fk.table),
                    (None, Some(name)) if matches!(column.name, "eval_id" | "trace_id") => table(name),
                    _ => continue,
                };
                let one_to_one = child.unique_keys.iter().any(|key| key == &[column.name]);
                let child_names = table_names(child);
                let parent_names = table_names(parent);
                let parent_field = parent_field(column.name);
                let children_field = if one_to_one {
                    child_names.one.clone()
                } else if parent_field == parent_names.one {
                    child_names.list.clone()
                } else {
                    format!("{}By{}", child_names.list, pascal_of_camel(&parent_field))
                };
                out.push(Relation { child, column, parent, parent_field, children_field, one_to_one });
            }
        }
        out
    })
}

fn pascal_of_camel(camel: &str) -> String {
    let mut chars = camel.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The many-to-many paths: `agent.tools`, `tool.agents`, `agent.functions`, `function.agents`.
pub fn links() -> &'static [Link] {
    static LINKS: OnceLock<Vec<Link>> = OnceLock::new();
    LINKS.get_or_init(|| {
        let link = |from: &str, link_table: &str, from_column: &'static str, to_column: &'static str, to: &str| {
            let to = table(to);
            Link { from: table(from), link: table(link_table), from_column, to_column, to, field: table_names(to).list }
        };
        vec![
            link("agents", "agent_tools", "agent_id", "tool_id", "tools"),
            link("tools", "agent_tools", "tool_id", "agent_id", "agents"),
            link("agents", "agent_functions", "agent_id", "function_id", "functions"),
            link("functions", "agent_functions", "function_id", "agent_id", "agents"),
        ]
    })
}

/// The paths through an intermediate table: `agent.traces` (through `agent_versions`).
pub fn throughs() -> &'static [Through] {
    static THROUGHS: OnceLock<Vec<Through>> = OnceLock::new();
    THROUGHS.get_or_init(|| {
        let through = |from: &str, via: &str, via_column: &'static str, to: &str, to_column: &'static str| {
            let to = table(to);
            Through { from: table(from), via: table(via), via_column, to, to_column, field: table_names(to).list }
        };
        vec![through("agents", "agent_versions", "agent_id", "traces", "agent_version_id")]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(child: &str, column: &str) -> &'static Relation {
        relations().iter().find(|r| r.child.name == child && r.column.name == column).unwrap()
    }

    #[test]
    fn names_follow_the_rules() {
        assert_eq!(camel("input_preview"), "inputPreview");
        assert_eq!(enum_value("ai_improved"), "AI_IMPROVED");
        assert_eq!(table_names(table("traces")).list, "traces");
        assert_eq!(table_names(table("feedback")).list, "feedbacks");
        assert_eq!(table_names(table("task_metadata")).list, "taskMetadatas");
        assert_eq!(table_names(table("eval_llm_cache")).one, "evalLlmCacheEntry");
        let r = relation("traces", "workspace_id");
        assert_eq!((r.parent_field.as_str(), r.children_field.as_str()), ("workspace", "traces"));
        let r = relation("agents", "active_version_id");
        assert_eq!((r.parent_field.as_str(), r.children_field.as_str()), ("activeVersion", "agentsByActiveVersion"));
        let r = relation("evals", "parent_eval_id");
        assert_eq!(r.children_field, "evalsByParentEval");
        let r = relation("performance_alerts", "resolved_by");
        assert_eq!(
            (r.parent_field.as_str(), r.children_field.as_str()),
            ("resolvedByUser", "performanceAlertsByResolvedByUser")
        );
        let r = relation("taskset_tasks", "source_trace_id");
        assert_eq!(r.children_field, "tasksetTasksBySourceTrace");
        let r = relation("feedback", "trace_id");
        assert!(r.one_to_one && r.children_field == "feedback");
        assert_eq!(relation("auto_refine_cooldowns", "eval_id").children_field, "autoRefineCooldown");
        assert_eq!(relation("eval_comparison", "eval_id").children_field, "evalComparisons");
    }

    #[test]
    fn throughs_chain_two_foreign_keys_and_name_no_other_field() {
        for t in throughs() {
            let via = t.via.column(t.via_column).and_then(|c| c.references).map(|fk| fk.table);
            assert_eq!(via, Some(t.from.name), "{}.{} names {}", t.via.name, t.via_column, t.from.name);
            let to = t.to.column(t.to_column).and_then(|c| c.references).map(|fk| fk.table);
            assert_eq!(to, Some(t.via.name), "{}.{} names {}", t.to.name, t.to_column, t.via.name);
            let taken = relations()
                .iter()
                .filter(|r| r.parent.name == t.from.name)
                .map(|r| &r.children_field)
                .chain(relations().iter().filter(|r| r.child.name == t.from.name).map(|r| &r.parent_field))
                .chain(links().iter().filter(|l| l.from.name == t.from.name).map(|l| &l.field));
            for name in taken {
                assert_ne!(name, &t.field, "{}.{} is taken", t.from.type_name, t.field);
            }
        }
        assert_eq!(throughs()[0].field, "traces");
    }
}
