//! Values the server computes from others, shared by the seed, the importers and mutations.

use serde_json::Value;

use crate::crypto::sha256_hex;

/// How many characters of a step's input or output a trace keeps as a preview.
pub const PREVIEW_CHARS: usize = 200;

/// What a trace's steps say about it, computed on import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// The first step's input: text as it is, any other value as its JSON text; at most
    /// [`PREVIEW_CHARS`] characters.
    pub input_preview: Option<String>,
    /// The last step's output, likewise.
    pub output_preview: Option<String>,
    /// How many steps there are.
    pub step_count: i64,
    /// Whether any step has a non-null `error`.
    pub has_errors: bool,
}

/// Summarises a trace's `steps` (an array of objects that may carry `input`, `output` and
/// `error`). A value that is not an array has no steps.
pub fn summarize_steps(steps: &Value) -> StepSummary {
    let steps = steps.as_array().map(Vec::as_slice).unwrap_or_default();
    let field = |step: Option<&Value>, name: &str| step.and_then(|s| s.get(name)).filter(|v| !v.is_null()).map(preview);
    StepSummary {
        input_preview: field(steps.first(), "input"),
        output_preview: field(steps.last(), "output"),
        step_count: steps.len() as i64,
        has_errors: steps.iter().any(|s| s.get("error").is_some_and(|e| !e.is_null())),
    }
}

fn preview(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    text.chars().take(PREVIEW_CHARS).collect()
}

/// A taskset task's dedup key: SHA-256 hex of `user_message`, a newline, and
/// `expected_output` (empty when null).
pub fn task_content_hash(user_message: &str, expected_output: Option<&str>) -> String {
    sha256_hex(&format!("{user_message}\n{}", expected_output.unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_summaries_follow_the_model() {
        let long = "x".repeat(300);
        let steps = json!([
            {"input": long, "output": "ignored"},
            {"input": {"q": 1}, "output": {"answer": [1, 2]}, "error": null},
            {"output": {"answer": "done"}, "error": "timeout"}
        ]);
        let summary = summarize_steps(&steps);
        assert_eq!(summary.input_preview.as_deref().map(|p| p.chars().count()), Some(200));
        assert_eq!(summary.output_preview.as_deref(), Some(r#"{"answer":"done"}"#));
        assert_eq!(summary.step_count, 3);
        assert!(summary.has_errors);
        let clean = summarize_steps(&json!([{"input": "hi", "error": null}]));
        assert_eq!((clean.input_preview.as_deref(), clean.output_preview, clean.has_errors), (Some("hi"), None, false));
        assert_eq!(summarize_steps(&json!({})).step_count, 0);
    }

    #[test]
    fn content_hash_treats_null_as_empty() {
        assert_eq!(task_content_hash("a", None), task_content_hash("a", Some("")));
        assert_ne!(task_content_hash("a", Some("b")), task_content_hash("a\nb", None));
        assert_eq!(task_content_hash("a", Some("b")), sha256_hex("a\nb"));
    }
}
