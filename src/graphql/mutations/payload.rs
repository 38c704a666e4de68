//! Mutation payloads: objects whose fields are named values ([`Payload`]), rows as the
//! graph's object types, so a client selects from a mutation's result as from a query.

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, Object, TypeRef};
use async_graphql::Value as GqlValue;

use crate::graphql::records::Record;

/// A field's value in a payload.
pub enum Out {
    /// A row.
    Row(Record),
    /// Rows.
    Rows(Vec<Record>),
    /// A scalar.
    Value(GqlValue),
}

/// A mutation's result: its fields by name.
#[derive(Default)]
pub struct Payload(Vec<(String, Out)>);

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field.
    pub fn with(mut self, name: impl Into<String>, out: Out) -> Self {
        self.0.push((name.into(), out));
        self
    }

    /// Adds a row.
    pub fn row(self, name: impl Into<String>, record: Record) -> Self {
        self.with(name, Out::Row(record))
    }

    /// Adds rows.
    pub fn rows(self, name: impl Into<String>, records: Vec<Record>) -> Self {
        self.with(name, Out::Rows(records))
    }

    /// Adds a scalar.
    pub fn value(self, name: impl Into<String>, value: impl Into<GqlValue>) -> Self {
        self.with(name, Out::Value(value.into()))
    }

    /// The rows it carries (what a subscription may want to hear about).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.0.iter().flat_map(|(_, out)| match out {
            Out::Row(record) => std::slice::from_ref(record),
            Out::Rows(records) => records.as_slice(),
            Out::Value(_) => &[],
        })
    }

    /// As the result of a mutation field.
    pub fn done<'a>(self) -> async_graphql::Result<Option<FieldValue<'a>>> {
        Ok(Some(FieldValue::owned_any(self)))
    }

    fn get(&self, name: &str) -> Option<FieldValue<'static>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, out)| match out {
            Out::Row(record) => FieldValue::owned_any(record.clone()),
            Out::Rows(records) => FieldValue::list(records.iter().cloned().map(FieldValue::owned_any)),
            Out::Value(value) => FieldValue::value(value.clone()),
        })
    }
}

/// A payload type: `(field, type, description)` each.
pub fn object(
    name: impl Into<String>,
    description: impl Into<String>,
    fields: Vec<(String, TypeRef, String)>,
) -> Object {
    let mut object = Object::new(name).description(description);
    for (field, ty, doc) in fields {
        let key = field.clone();
        object = object.field(
            Field::new(field, ty, move |ctx| {
                let key = key.clone();
                FieldFuture::new(async move { Ok(ctx.parent_value.try_downcast_ref::<Payload>()?.get(&key)) })
            })
            .description(doc),
        );
    }
    object
}

/// `(field, type, description)`.
pub fn field(name: impl Into<String>, ty: TypeRef, doc: impl Into<String>) -> (String, TypeRef, String) {
    (name.into(), ty, doc.into())
}
