//! Mutations (not yet served: the schema has no `Mutation` root until they are).

use async_graphql::dynamic::SchemaBuilder;

/// The name of the mutation root type, once there is one.
pub const ROOT: Option<&str> = None;

/// Registers the mutation root and its input and payload types.
pub fn register(builder: SchemaBuilder) -> SchemaBuilder {
    builder
}
