//! `Int` arguments hold 32 bits, as the GraphQL specification says.
//!
//! async-graphql's dynamic schema takes any 64-bit integer where an `Int` is expected. Before
//! validation, [`check`] walks the operation's field arguments (literals, and variables where
//! they are used) with their types from the schema: an integer outside
//! -2147483648..=2147483647 in an `Int` position, or outside 64 bits in a `BigInt` one, is
//! `BAD_USER_INPUT` naming the field (`patch.priority`, `filter.priority.in[1]`). A value of
//! the wrong type (a string for an `Int`) is left to validation (`GRAPHQL_VALIDATION_FAILED`).

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{ErrorExtensionValues, Number, ServerError, Value, Variables};

use crate::graphql::schema::BIG_INT;

/// Refuses integers out of the range of their `Int` (or `BigInt`) argument or input field.
pub fn check(document: &ExecutableDocument, registry: &Registry, variables: &Variables) -> Result<(), ServerError> {
    for (_, operation) in document.operations.iter() {
        // Variables not given take their defaults (`query($n: Int = 3000000000)`).
        let mut given = variables.clone();
        for definition in &operation.node.variable_definitions {
            let definition = &definition.node;
            if let (false, Some(default)) = (given.contains_key(&definition.name.node), &definition.default_value) {
                given.insert(definition.name.node.clone(), default.node.clone());
            }
        }
        let mut walker = Walker { document, registry, variables: &given, visited: Vec::new() };
        let root = match operation.node.ty {
            OperationType::Query => Some(registry.query_type.as_str()),
            OperationType::Mutation => registry.mutation_type.as_deref(),
            OperationType::Subscription => registry.subscription_type.as_deref(),
        };
        if let Some(root) = root {
            walker.selection_set(&operation.node.selection_set.node, root)?;
        }
    }
    Ok(())
}

struct Walker<'a> {
    document: &'a ExecutableDocument,
    registry: &'a Registry,
    variables: &'a Variables,
    /// Fragments already walked (each once: a fragment's type condition fixes its types).
    visited: Vec<&'a str>,
}

impl<'a> Walker<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, parent: &str) -> Result<(), ServerError> {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let Some(meta) = self.registry.types.get(parent).and_then(|t| t.field_by_name(&field.name.node))
                    else {
                        continue;
                    };
                    for (name, value) in &field.arguments {
                        let Some(argument) = meta.args.get(name.node.as_str()) else { continue };
                        let value = value.node.clone().into_const_with(|v| self.variables.get(&v).cloned().ok_or(()));
                        if let Ok(value) = value {
                            self.value(&value, &argument.ty, name.node.to_string())?;
                        }
                    }
                    let child = MetaTypeName::concrete_typename(&meta.ty).to_owned();
                    self.selection_set(&field.selection_set.node, &child)?;
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment.node.type_condition.as_ref().map(|c| c.node.on.node.to_string());
                    self.selection_set(&fragment.node.selection_set.node, on.as_deref().unwrap_or(parent))?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if self.visited.contains(&name) {
                        continue;
                    }
                    if let Some(fragment) = self.document.fragments.get(name) {
                        self.visited.push(name);
                        let on = fragment.node.type_condition.node.on.node.to_string();
                        self.selection_set(&fragment.node.selection_set.node, &on)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn value(&self, value: &Value, ty: &str, path: String) -> Result<(), ServerError> {
        match (MetaTypeName::create(ty), value) {
            (MetaTypeName::NonNull(inner), _) => self.value(value, inner, path),
            (MetaTypeName::List(item), Value::List(items)) => {
                for (i, value) in items.iter().enumerate() {
                    self.value(value, item, format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            // A single value where a list is expected is a list of one.
            (MetaTypeName::List(item), _) => self.value(value, item, path),
            (MetaTypeName::Named(name), Value::Number(n)) => match name {
                "Int" if !fits_i32(n) => Err(out_of_range(path, "a 32-bit integer (-2147483648 to 2147483647)")),
                BIG_INT if n.as_i64().is_none() && n.as_u64().is_some() => Err(out_of_range(path, "a 64-bit integer")),
                _ => Ok(()),
            },
            // A `BigInt` as a decimal string: an integer, but too large.
            (MetaTypeName::Named(BIG_INT), Value::String(text))
                if text.trim().parse::<i64>().is_err() && text.trim().parse::<i128>().is_ok() =>
            {
                Err(out_of_range(path, "a 64-bit integer"))
            }
            (MetaTypeName::Named(name), Value::Object(fields)) => {
                let Some(MetaType::InputObject { input_fields, .. }) = self.registry.types.get(name) else {
                    return Ok(());
                };
                for (field, value) in fields {
                    if let Some(meta) = input_fields.get(field.as_str()) {
                        self.value(value, &meta.ty, format!("{path}.{field}"))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Whether a number is an integer of 32 bits, or no integer at all (a fraction is a type
/// error, for validation to report).
fn fits_i32(n: &Number) -> bool {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i32::try_from(i).is_ok(),
        (None, Some(_)) => false,
        (None, None) => true,
    }
}

fn out_of_range(field: String, what: &str) -> ServerError {
    let mut error = ServerError::new(format!("`{field}` must be {what}"), None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    extensions.set("field", field);
    error.extensions = Some(extensions);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_bits() {
        assert!(fits_i32(&Number::from(i32::MAX)));
        assert!(fits_i32(&Number::from(i32::MIN)));
        assert!(!fits_i32(&Number::from(i32::MAX as i64 + 1)));
        assert!(!fits_i32(&Number::from(i32::MIN as i64 - 1)));
        assert!(!fits_i32(&Number::from(u64::MAX)));
        assert!(fits_i32(&Number::from_f64(1.5).unwrap()));
    }
}
