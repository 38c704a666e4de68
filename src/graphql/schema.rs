//! The GraphQL schema, generated from the data model: for every table an object type
//! (every column but secrets, its parents, its children, its many-to-many links), a filter
//! input, an ordering, a connection and an edge; root fields `x(id)` and `xs(…)`; `me`,
//! `node(id)`; the dashboard fields. Built once at start with async-graphql's dynamic
//! schema; every resolver is one of a handful of generic functions below, reading
//! [`Record`]s and batching through the per-request [`GraphLoader`].

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface, InterfaceField, Object,
    ResolverContext, Scalar, Schema, SchemaBuilder, TypeRef,
};
use async_graphql::{Name, Value as GqlValue};

use crate::catalog::{self, Column, Kind, Table};
use crate::db::Db;
use crate::error::AppError;
use crate::graphql::access::{has_workspace_lists, Access};
use crate::graphql::analytics;
use crate::graphql::filter;
use crate::graphql::lists::{encode_cursor, ListArgs, ListQuery, Page, Total};
use crate::graphql::loader::{GraphLoader, RowKey};
use crate::graphql::names::{self, Link, Relation, Through};
use crate::graphql::projection;
use crate::graphql::records::{self, Record, Slot};
use crate::sql::{Columns, Cond, OrderKey, Projection, Select};

/// The caller's access for this request; absent for anonymous requests.
#[derive(Clone)]
pub struct RequestAccess(pub Option<Arc<Access>>);

/// The access of the request, or `UNAUTHENTICATED`.
pub fn access(ctx: &ResolverContext<'_>) -> async_graphql::Result<Arc<Access>> {
    match ctx.data::<RequestAccess>()? {
        RequestAccess(Some(access)) => Ok(access.clone()),
        RequestAccess(None) => Err(AppError::unauthenticated().into()),
    }
}

/// The request's loader of root lookups.
pub fn loader<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a DataLoader<GraphLoader>> {
    access(ctx)?;
    ctx.data::<DataLoader<GraphLoader>>()
}

/// The request's reader of relations.
pub fn reader<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a GraphLoader> {
    Ok(loader(ctx)?.loader())
}

fn record<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a Record> {
    ctx.parent_value.try_downcast_ref::<Record>()
}

fn list_args(ctx: &ResolverContext<'_>) -> ListArgs {
    let arg = |name: &str| ctx.args.get(name).filter(|v| !v.is_null());
    ListArgs {
        first: arg("first").and_then(|v| v.i64().ok()),
        after: arg("after").and_then(|v| v.string().ok().map(str::to_owned)),
        last: arg("last").and_then(|v| v.i64().ok()),
        before: arg("before").and_then(|v| v.string().ok().map(str::to_owned)),
        filter: arg("filter").map(|v| v.as_value().clone()),
        order_by: arg("orderBy").map(|v| v.as_value().clone()),
    }
}

/// The GraphQL type of a column's values (without `!`).
pub fn column_type(table: &Table, column: &Column) -> String {
    if names::is_id(table, column) {
        return TypeRef::ID.into();
    }
    match column.kind {
        Kind::Id => TypeRef::ID.into(),
        Kind::Text | Kind::Date => TypeRef::STRING.into(),
        Kind::Int if column.big => BIG_INT.into(),
        Kind::Int => TypeRef::INT.into(),
        Kind::Real => TypeRef::FLOAT.into(),
        Kind::Bool => TypeRef::BOOLEAN.into(),
        Kind::Timestamp => "DateTime".into(),
        Kind::Json => "JSON".into(),
        Kind::Enum(_) => names::enum_type(table, column),
    }
}

/// A stored value as the GraphQL value of its column (`Err` when the read did not load it:
/// a bug in the projection, never shown as a NULL).
fn output(column: &Column, slot: &Slot) -> Result<Option<FieldValue<'static>>, AppError> {
    let value = match slot {
        Slot::Absent => return Err(AppError::internal(format!("column `{}` was not loaded", column.name))),
        Slot::Json(text, _) => serde_json::from_str::<GqlValue>(text).map_err(AppError::internal)?,
        Slot::Value(serde_json::Value::Null) => return Ok(None),
        Slot::Value(serde_json::Value::String(text)) => match column.kind {
            Kind::Enum(_) => GqlValue::Enum(Name::new(names::enum_value(text))),
            _ => GqlValue::String(text.clone()),
        },
        Slot::Value(serde_json::Value::Number(n)) => GqlValue::Number(n.clone()),
        Slot::Value(serde_json::Value::Bool(b)) => GqlValue::Boolean(*b),
        Slot::Value(other) => GqlValue::from_json(other.clone()).unwrap_or(GqlValue::Null),
    };
    Ok(if value == GqlValue::Null { None } else { Some(FieldValue::value(value)) })
}

fn nn_if(ty: String, non_null: bool) -> TypeRef {
    if non_null {
        TypeRef::named_nn(ty)
    } else {
        TypeRef::named(ty)
    }
}

fn list_arguments(field: Field, table: &Table) -> Field {
    field
        .argument(
            InputValue::new("first", TypeRef::named(TypeRef::INT))
                .description("Return the first N rows (default 20, at most 100)."),
        )
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)).description("Rows after this cursor."))
        .argument(
            InputValue::new("last", TypeRef::named(TypeRef::INT)).description("Return the last N rows (at most 100)."),
        )
        .argument(InputValue::new("before", TypeRef::named(TypeRef::STRING)).description("Rows before this cursor."))
        .argument(
            InputValue::new("filter", TypeRef::named(format!("{}Filter", table.type_name)))
                .description("Only rows that match."),
        )
        .argument(
            InputValue::new("orderBy", TypeRef::named_nn_list(format!("{}OrderBy", table.type_name))).description(
                "The order (default: newest first); the id breaks ties, in the direction of the last key.",
            ),
        )
}

/// Builds the schema.
/// The schema's types and roots, ready for limits and `finish()` ([`crate::graphql::build_schema`]).
pub fn builder() -> SchemaBuilder {
    let mut builder = Schema::build("Query", crate::graphql::mutations::ROOT, crate::graphql::subscriptions::ROOT);
    builder = crate::graphql::mutations::register(builder);
    builder = crate::graphql::subscriptions::register(builder);
    builder = register_shared(builder);
    let mut query = Object::new("Query").description("The root of every read.");
    query = query.field(
        Field::new("me", TypeRef::named("User"), |ctx| {
            FieldFuture::new(async move {
                let access = access(&ctx)?;
                let Some(user_id) = access.user_id() else {
                    return Ok(None);
                };
                let users = table("users");
                let columns = projection::of_object(users, ctx.field().selection_set());
                let found = loader(&ctx)?
                    .load_one(RowKey { table: users, column: "id", value: user_id.to_owned(), columns })
                    .await?;
                Ok(found.map(FieldValue::owned_any))
            })
        })
        .description("The authenticated user; null under the admin secret."),
    );
    query = query.field(
        Field::new("node", TypeRef::named("Node"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let Some(table) = catalog::table_of_id(&id) else {
                    access(&ctx)?;
                    return Ok(None);
                };
                let columns = projection::of_object(table, ctx.field().selection_set());
                let found = loader(&ctx)?.load_one(RowKey { table, column: "id", value: id, columns }).await?;
                Ok(found.map(|r| FieldValue::owned_any(r).with_type(table.type_name)))
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .description("Any row by its id (ids carry their type's name as prefix)."),
    );
    for table in catalog::TABLES.iter() {
        let names = names::table_names(table);
        builder = register_table(builder, table);
        if !table.view {
            query = query.field(
                Field::new(names.one.clone(), TypeRef::named(table.type_name), move |ctx| {
                    FieldFuture::new(async move {
                        let id = ctx.args.try_get("id")?.string()?.to_owned();
                        if catalog::table_of_id(&id).map(|t| t.name) != Some(table.name) {
                            access(&ctx)?;
                            return Ok(None);
                        }
                        let columns = projection::of_object(table, ctx.field().selection_set());
                        let found = loader(&ctx)?.load_one(RowKey { table, column: "id", value: id, columns }).await?;
                        Ok(found.map(FieldValue::owned_any))
                    })
                })
                .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
                .description(format!(
                    "A {} by id: null when it does not exist or is not visible to the caller.",
                    table.type_name
                )),
            );
        }
        let mut list =
            Field::new(names.list.clone(), TypeRef::named_nn(format!("{}Connection", table.type_name)), move |ctx| {
                FieldFuture::new(async move { root_list(ctx, table).await })
            })
            .description(if has_workspace_lists(table) {
                format!("The {} rows of a workspace.", table.type_name)
            } else {
                format!("The {} rows the caller may see.", table.type_name)
            });
        if has_workspace_lists(table) {
            list = list
                .argument(InputValue::new("workspaceId", TypeRef::named_nn(TypeRef::ID)).description("The workspace."));
        }
        query = query.field(list_arguments(list, table));
    }
    builder.register(query)
}

fn table(name: &str) -> &'static Table {
    catalog::table(name).expect("a catalog table")
}

async fn root_list<'a>(
    ctx: ResolverContext<'a>,
    table: &'static Table,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let access = access(&ctx)?;
    let db = ctx.data::<Db>()?;
    let query = list_args(&ctx).parse(table)?;
    let visible = if has_workspace_lists(table) {
        let workspace_id = ctx.args.try_get("workspaceId")?.string()?;
        access.in_workspace(table, workspace_id)
    } else {
        access.scope(table)
    };
    let base = Cond::all(vec![visible, query.filter.clone()]);
    let (columns, wanted) = projection::of_connection(table, ctx.field(), &query.order);
    let rows = if wanted {
        let select = Select {
            order: query.sql_order(),
            limit: Some(query.fetch()),
            ..Select::rows(table, Cond::all(vec![base.clone(), query.cursor.clone()])).columns(columns)
        };
        records::load(db, select).await?
    } else {
        Vec::new()
    };
    let total = Total::Count(Select { projection: Projection::Count, ..Select::rows(table, base) });
    Ok(Some(FieldValue::owned_any(query.page(rows, total))))
}

async fn children<'a>(
    ctx: ResolverContext<'a>,
    relation: &'static Relation,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let parent = record(&ctx)?.clone();
    let query = Arc::new(list_args(&ctx).parse(relation.child)?);
    let (columns, wanted) = projection::of_connection(relation.child, ctx.field(), &query.order);
    let rows = if wanted { reader(&ctx)?.children(&parent, relation, &query, columns).await? } else { Vec::new() };
    let page = query.page(rows, Total::Children(parent, relation, query.clone()));
    Ok(Some(FieldValue::owned_any(page)))
}

async fn linked<'a>(ctx: ResolverContext<'a>, link: &'static Link) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let parent = record(&ctx)?.clone();
    let query: Arc<ListQuery> = Arc::new(list_args(&ctx).parse(link.to)?);
    let (columns, wanted) = projection::of_connection(link.to, ctx.field(), &query.order);
    let (rows, _) =
        if wanted { reader(&ctx)?.linked(&parent, link, &query, false, columns).await? } else { Default::default() };
    let page = query.page(rows, Total::Linked(parent, link, query.clone()));
    Ok(Some(FieldValue::owned_any(page)))
}

async fn through<'a>(
    ctx: ResolverContext<'a>,
    through: &'static Through,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let parent = record(&ctx)?.clone();
    let query: Arc<ListQuery> = Arc::new(list_args(&ctx).parse(through.to)?);
    let (columns, wanted) = projection::of_connection(through.to, ctx.field(), &query.order);
    let rows = if wanted { reader(&ctx)?.through(&parent, through, &query, columns).await? } else { Vec::new() };
    let page = query.page(rows, Total::Through(parent, through, query.clone()));
    Ok(Some(FieldValue::owned_any(page)))
}

/// Registers a table's object, filter, ordering, connection and edge types.
fn register_table(mut builder: SchemaBuilder, table: &'static Table) -> SchemaBuilder {
    let type_name = table.type_name;
    let mut object = Object::new(type_name).description(table.doc);
    if !table.view {
        object = object.implement("Node");
    }
    let mut filter_input = InputObject::new(format!("{type_name}Filter"))
        .description(format!("Which {type_name} rows to return: every given condition must hold."));
    let mut order_fields = Enum::new(format!("{type_name}OrderField"))
        .description(format!("Columns a {type_name} list can be ordered by."));
    for column in table.columns.iter().filter(|c| !names::is_secret(c)) {
        let field_name = names::column_field(column);
        let non_null = !column.nullable;
        let index = table.columns.iter().position(|c| c.name == column.name).unwrap_or(usize::MAX);
        object = object.field(
            Field::new(field_name.clone(), nn_if(column_type(table, column), non_null), move |ctx| {
                let value = match record(&ctx) {
                    Ok(record) => output(column, record.slot(index)).map_err(async_graphql::Error::from),
                    Err(e) => Err(e),
                };
                match value {
                    Ok(value) => FieldFuture::Value(value),
                    Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) }),
                }
            })
            .description(column.doc),
        );
        filter_input =
            filter_input.field(InputValue::new(field_name, TypeRef::named(filter::filter_type(table, column))));
        if column.kind != Kind::Json {
            order_fields = order_fields.item(EnumItem::new(column.name.to_ascii_uppercase()));
        }
        if let Kind::Enum(values) = column.kind {
            builder = register_enum(builder, table, column, values);
        }
    }
    filter_input = filter_input
        .field(
            InputValue::new("and", TypeRef::named_nn_list(format!("{type_name}Filter")))
                .description("Every one of these holds."),
        )
        .field(
            InputValue::new("or", TypeRef::named_nn_list(format!("{type_name}Filter")))
                .description("At least one of these holds."),
        )
        .field(InputValue::new("not", TypeRef::named(format!("{type_name}Filter"))).description("This does not hold."));
    for relation in names::relations().iter().filter(|r| r.child.name == table.name) {
        let parent_type = relation.parent.type_name;
        let guaranteed = !relation.column.nullable
            && (relation.column.parent_in_workspace
                || matches!(table.scope, catalog::Scope::Parent { column, .. } | catalog::Scope::Workspace(column) if column == relation.column.name));
        object = object.field(
            Field::new(relation.parent_field.clone(), nn_if(parent_type.into(), guaranteed), move |ctx| {
                FieldFuture::new(async move {
                    let columns = projection::of_object(relation.parent, ctx.field().selection_set());
                    let found = reader(&ctx)?.parent(record(&ctx)?, relation, columns).await?;
                    Ok(found.map(FieldValue::owned_any))
                })
            })
            .description(format!("The {parent_type} of `{}`.", names::column_field(relation.column))),
        );
    }
    for relation in names::relations().iter().filter(|r| r.parent.name == table.name) {
        let child_type = relation.child.type_name;
        if relation.one_to_one {
            object = object.field(
                Field::new(relation.children_field.clone(), TypeRef::named(child_type), move |ctx| {
                    FieldFuture::new(async move {
                        let columns = projection::of_object(relation.child, ctx.field().selection_set());
                        let found = reader(&ctx)?.only_child(record(&ctx)?, relation, columns).await?;
                        Ok(found.map(FieldValue::owned_any))
                    })
                })
                .description(format!("Its {child_type}, if any.")),
            );
        } else {
            let field = Field::new(
                relation.children_field.clone(),
                TypeRef::named_nn(format!("{child_type}Connection")),
                move |ctx| FieldFuture::new(async move { children(ctx, relation).await }),
            )
            .description(format!(
                "The {child_type} rows whose `{}` is this row.",
                names::column_field(relation.column)
            ));
            object = object.field(list_arguments(field, relation.child));
        }
    }
    for link in names::links().iter().filter(|l| l.from.name == table.name) {
        let target = link.to.type_name;
        let field = Field::new(link.field.clone(), TypeRef::named_nn(format!("{target}Connection")), move |ctx| {
            FieldFuture::new(async move { linked(ctx, link).await })
        })
        .description(format!("The {target} rows linked to this row through `{}`.", link.link.name));
        object = object.field(list_arguments(field, link.to));
    }
    for through in names::throughs().iter().filter(|t| t.from.name == table.name) {
        let target = through.to.type_name;
        let field = Field::new(through.field.clone(), TypeRef::named_nn(format!("{target}Connection")), move |ctx| {
            FieldFuture::new(async move { self::through(ctx, through).await })
        })
        .description(format!(
            "The {target} rows whose `{}` names one of this row's {} rows.",
            names::camel(through.to_column),
            through.via.type_name
        ));
        object = object.field(list_arguments(field, through.to));
    }
    object = analytics::fields(object, table);
    let order_by = InputObject::new(format!("{type_name}OrderBy"))
        .description(format!("One key of a {type_name} ordering."))
        .field(InputValue::new("field", TypeRef::named_nn(format!("{type_name}OrderField"))))
        .field(
            InputValue::new("direction", TypeRef::named("OrderDirection"))
                .default_value(GqlValue::Enum(Name::new("ASC"))),
        );
    register_aggregate(builder, table)
        .register(object)
        .register(filter_input)
        .register(order_fields)
        .register(order_by)
        .register(connection(table))
        .register(edge(type_name))
}

fn register_enum(
    builder: SchemaBuilder,
    table: &Table,
    column: &Column,
    values: &'static [&'static str],
) -> SchemaBuilder {
    let name = names::enum_type(table, column);
    let mut enum_type = Enum::new(name.clone()).description(format!("Values of `{}.{}`.", table.name, column.name));
    for value in values {
        enum_type = enum_type.item(EnumItem::new(names::enum_value(value)).description(format!("`{value}`")));
    }
    let filter_input = InputObject::new(format!("{name}Filter"))
        .description(format!("Conditions on a {name} value."))
        .field(InputValue::new("eq", TypeRef::named(name.clone())).description("Equal to."))
        .field(InputValue::new("ne", TypeRef::named(name.clone())).description("Not equal to (NULL does not match)."))
        .field(InputValue::new("in", TypeRef::named_nn_list(name.clone())).description("One of."))
        .field(
            InputValue::new("notIn", TypeRef::named_nn_list(name.clone()))
                .description("None of (NULL does not match)."),
        )
        .field(
            InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN)).description("NULL (true) or not NULL (false)."),
        );
    builder.register(enum_type).register(filter_input)
}

struct Edge {
    record: Record,
    order: Arc<Vec<OrderKey>>,
}

struct PageInfo {
    has_next: bool,
    has_prev: bool,
    start: Option<String>,
    end: Option<String>,
}

fn page<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a Page> {
    ctx.parent_value.try_downcast_ref::<Page>()
}

/// The numeric columns of a table (what `aggregate` sums).
fn numeric_columns(table: &Table) -> Vec<&'static str> {
    table.columns.iter().filter(|c| matches!(c.kind, Kind::Int | Kind::Real)).map(|c| c.name).collect()
}

/// `<Type>Aggregate` and `<Type>NumericFields`, for tables with numeric columns.
fn register_aggregate(builder: SchemaBuilder, table: &'static Table) -> SchemaBuilder {
    let columns = numeric_columns(table);
    if columns.is_empty() {
        return builder;
    }
    let type_name = table.type_name;
    let mut numeric = Object::new(format!("{type_name}NumericFields"))
        .description(format!("A value per numeric column of {type_name} (null when no row has one)."));
    for column in table.columns.iter().filter(|c| columns.contains(&c.name)) {
        numeric = numeric.field(
            Field::new(names::column_field(column), TypeRef::named(TypeRef::FLOAT), move |ctx| {
                FieldFuture::new(async move {
                    let values = ctx.parent_value.try_downcast_ref::<serde_json::Map<String, serde_json::Value>>()?;
                    Ok(values.get(column.name).and_then(|v| v.as_f64()).map(FieldValue::value))
                })
            })
            .description(column.doc),
        );
    }
    let mut aggregate = Object::new(format!("{type_name}Aggregate"))
        .description(format!("Aggregates over the {type_name} rows that match the filter (all pages)."))
        .field(
            Field::new("count", TypeRef::named_nn(TypeRef::INT), |ctx| {
                FieldFuture::new(async move {
                    Ok(Some(FieldValue::value(ctx.parent_value.try_downcast_ref::<records::Aggregate>()?.count)))
                })
            })
            .description("How many rows."),
        );
    for (i, name) in records::AGGREGATES.iter().enumerate() {
        aggregate = aggregate.field(
            Field::new(*name, TypeRef::named_nn(format!("{type_name}NumericFields")), move |ctx| {
                FieldFuture::new(async move {
                    let values = ctx.parent_value.try_downcast_ref::<records::Aggregate>()?.values[i].clone();
                    Ok(Some(FieldValue::owned_any(values)))
                })
            })
            .description(match *name {
                "sum" => "Sums.",
                "avg" => "Averages.",
                "min" => "Minima.",
                _ => "Maxima.",
            }),
        );
    }
    builder.register(numeric).register(aggregate)
}

fn connection(table: &'static Table) -> Object {
    let type_name = table.type_name;
    let connection = connection_fields(type_name);
    if numeric_columns(table).is_empty() {
        return connection;
    }
    connection.field(
        Field::new("aggregate", TypeRef::named_nn(format!("{type_name}Aggregate")), move |ctx| {
            FieldFuture::new(async move {
                let columns = numeric_columns(table);
                let aggregate = match &page(&ctx)?.total {
                    Total::Known(_) => records::Aggregate::default(),
                    Total::Count(select) => {
                        let projection = Projection::Aggregate(None, columns);
                        records::aggregate(ctx.data::<Db>()?, Select { projection, ..select.clone() }).await?
                    }
                    Total::Children(parent, relation, query) => {
                        reader(&ctx)?.child_aggregate(parent, relation, &query.filter, &columns).await?
                    }
                    Total::Linked(parent, link, query) => {
                        let all = Columns::all(link.to);
                        let (rows, _) = reader(&ctx)?.linked(parent, link, query, true, all).await?;
                        records::aggregate_records(&rows, &columns)
                    }
                    Total::Through(parent, through, query) => {
                        reader(&ctx)?.through_aggregate(parent, through, &query.filter, &columns).await?
                    }
                };
                Ok(Some(FieldValue::owned_any(aggregate)))
            })
        })
        .description("Count, sum, average, minimum and maximum over every row that matches the filter."),
    )
}

fn connection_fields(type_name: &'static str) -> Object {
    Object::new(format!("{type_name}Connection"))
        .description(format!("A page of {type_name} rows."))
        .field(
            Field::new("edges", TypeRef::named_nn_list_nn(format!("{type_name}Edge")), |ctx| {
                FieldFuture::new(async move {
                    let page = page(&ctx)?;
                    Ok(Some(FieldValue::list(
                        page.records
                            .iter()
                            .map(|r| FieldValue::owned_any(Edge { record: r.clone(), order: page.order.clone() })),
                    )))
                })
            })
            .description("The rows with their cursors."),
        )
        .field(
            Field::new("nodes", TypeRef::named_nn_list_nn(type_name), |ctx| match page(&ctx) {
                // The rows are borrowed from the page: no copy, no future.
                Ok(page) => FieldFuture::Value(Some(FieldValue::list(
                    page.records.iter().map(|r| FieldValue::borrowed_any(r as &(dyn std::any::Any + Send + Sync))),
                ))),
                Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) }),
            })
            .description("The rows."),
        )
        .field(
            Field::new("pageInfo", TypeRef::named_nn("PageInfo"), |ctx| {
                FieldFuture::new(async move {
                    let page = page(&ctx)?;
                    Ok(Some(FieldValue::owned_any(PageInfo {
                        has_next: page.has_next,
                        has_prev: page.has_prev,
                        start: page.records.first().map(|r| encode_cursor(r, &page.order)),
                        end: page.records.last().map(|r| encode_cursor(r, &page.order)),
                    })))
                })
            })
            .description("Where this page is."),
        )
        .field(
            Field::new("totalCount", TypeRef::named_nn(TypeRef::INT), |ctx| {
                FieldFuture::new(async move {
                    let total = match &page(&ctx)?.total {
                        Total::Known(n) => *n,
                        Total::Count(select) => records::count(ctx.data::<Db>()?, select.clone()).await?,
                        Total::Children(parent, relation, query) => {
                            reader(&ctx)?.child_count(parent, relation, &query.filter).await?
                        }
                        Total::Linked(parent, link, query) => {
                            reader(&ctx)?.linked(parent, link, query, true, Columns::none()).await?.1
                        }
                        Total::Through(parent, through, query) => {
                            reader(&ctx)?.through_count(parent, through, &query.filter).await?
                        }
                    };
                    Ok(Some(FieldValue::value(total)))
                })
            })
            .description("How many rows match the filter, on every page (counted only when asked for)."),
        )
}

fn edge(type_name: &'static str) -> Object {
    Object::new(format!("{type_name}Edge"))
        .description(format!("A {type_name} in a page, with its cursor."))
        .field(
            Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move {
                    let edge = ctx.parent_value.try_downcast_ref::<Edge>()?;
                    Ok(Some(FieldValue::value(encode_cursor(&edge.record, &edge.order))))
                })
            })
            .description("An opaque cursor: pass it as `after` or `before`."),
        )
        .field(
            Field::new("node", TypeRef::named_nn(type_name), |ctx| {
                FieldFuture::new(async move {
                    Ok(Some(FieldValue::owned_any(ctx.parent_value.try_downcast_ref::<Edge>()?.record.clone())))
                })
            })
            .description("The row."),
        )
}

/// The scalar of integer columns that may need 64 bits.
pub const BIG_INT: &str = "BigInt";

/// Whether a value is a `BigInt`: a 64-bit integer, as a number or a decimal string.
pub fn is_big_int(value: &GqlValue) -> bool {
    match value {
        GqlValue::Number(n) => n.as_i64().is_some(),
        GqlValue::String(text) => text.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}

/// Scalars, the `Node` interface, `PageInfo`, `OrderDirection` and the shared filters.
fn register_shared(builder: SchemaBuilder) -> SchemaBuilder {
    let page_info = Object::new("PageInfo")
        .description("Where a page is in its list.")
        .field(bool_field("hasNextPage", |p| p.has_next, "Whether rows follow this page."))
        .field(bool_field("hasPreviousPage", |p| p.has_prev, "Whether rows precede this page."))
        .field(cursor_field("startCursor", |p| p.start.clone(), "The cursor of the first row."))
        .field(cursor_field("endCursor", |p| p.end.clone(), "The cursor of the last row."));
    let direction = Enum::new("OrderDirection")
        .description("Ascending (NULLs last) or descending (NULLs first).")
        .item(EnumItem::new("ASC"))
        .item(EnumItem::new("DESC"));
    let node = Interface::new("Node")
        .description("A row of any table; `node(id)` finds it by id.")
        .field(InterfaceField::new("id", TypeRef::named_nn(TypeRef::ID)));
    let mut builder = builder
        .register(
            Scalar::new("DateTime")
                .description("A point in time: RFC 3339 in UTC with microseconds, e.g. `2026-01-15T09:00:00.000000Z`. Input may use any offset."),
        )
        .register(Scalar::new("JSON").description("Any JSON value, sent as a value (not as a string)."))
        .register(Scalar::new(BIG_INT).validator(is_big_int).description(
            "A 64-bit signed integer (-9223372036854775808 to 9223372036854775807), for counts and \
             measures that may pass 32 bits. Sent as a JSON number; accepted as a number or as a \
             decimal string (JavaScript numbers are exact only up to 2^53 - 1).",
        ))
        .register(page_info)
        .register(direction)
        .register(node);
    let ordered = |name: &str, ty: &str, extra: &[(&str, &str)]| {
        let mut input = InputObject::new(name)
            .description(format!("Conditions on a {ty} value; all given must hold."))
            .field(InputValue::new("eq", TypeRef::named(ty)).description("Equal to."))
            .field(InputValue::new("ne", TypeRef::named(ty)).description("Not equal to (NULL does not match)."))
            .field(InputValue::new("in", TypeRef::named_nn_list(ty)).description("One of."))
            .field(InputValue::new("notIn", TypeRef::named_nn_list(ty)).description("None of (NULL does not match)."))
            .field(InputValue::new("lt", TypeRef::named(ty)).description("Less than."))
            .field(InputValue::new("lte", TypeRef::named(ty)).description("Less than or equal to."))
            .field(InputValue::new("gt", TypeRef::named(ty)).description("Greater than."))
            .field(InputValue::new("gte", TypeRef::named(ty)).description("Greater than or equal to."))
            .field(
                InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN))
                    .description("NULL (true) or not NULL (false)."),
            );
        for (name, description) in extra {
            input = input.field(InputValue::new(*name, TypeRef::named(TypeRef::STRING)).description(*description));
        }
        input
    };
    builder = builder
        .register(ordered(
            "StringFilter",
            TypeRef::STRING,
            &[
                ("like", "Matches a pattern, case-sensitive: `%` any run, `_` one character, `\\` escapes."),
                ("ilike", "Like `like`, ignoring ASCII case."),
            ],
        ))
        .register(ordered("IntFilter", TypeRef::INT, &[]))
        .register(ordered("BigIntFilter", BIG_INT, &[]))
        .register(ordered("FloatFilter", TypeRef::FLOAT, &[]))
        .register(ordered("DateTimeFilter", "DateTime", &[]))
        .register(
            InputObject::new("IDFilter")
                .description("Conditions on an id.")
                .field(InputValue::new("eq", TypeRef::named(TypeRef::ID)).description("Equal to."))
                .field(
                    InputValue::new("ne", TypeRef::named(TypeRef::ID))
                        .description("Not equal to (NULL does not match)."),
                )
                .field(InputValue::new("in", TypeRef::named_nn_list(TypeRef::ID)).description("One of."))
                .field(
                    InputValue::new("notIn", TypeRef::named_nn_list(TypeRef::ID))
                        .description("None of (NULL does not match)."),
                )
                .field(
                    InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN))
                        .description("NULL (true) or not NULL (false)."),
                ),
        )
        .register(
            InputObject::new("BooleanFilter")
                .description("Conditions on a boolean.")
                .field(InputValue::new("eq", TypeRef::named(TypeRef::BOOLEAN)).description("Equal to."))
                .field(
                    InputValue::new("ne", TypeRef::named(TypeRef::BOOLEAN))
                        .description("Not equal to (NULL does not match)."),
                )
                .field(
                    InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN))
                        .description("NULL (true) or not NULL (false)."),
                ),
        )
        .register(
            InputObject::new("JSONFilter")
                .description("Conditions on a JSON value.")
                .field(InputValue::new("contains", TypeRef::named("JSON")).description(
                    "An object: every top-level key is present with an exactly equal value (JSON types included).",
                ))
                .field(
                    InputValue::new("hasKey", TypeRef::named(TypeRef::STRING))
                        .description("The object has this top-level key."),
                )
                .field(
                    InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN))
                        .description("NULL (true) or not NULL (false)."),
                ),
        );
    analytics::register(builder)
}

fn bool_field(name: &'static str, get: fn(&PageInfo) -> bool, description: &'static str) -> Field {
    Field::new(name, TypeRef::named_nn(TypeRef::BOOLEAN), move |ctx| {
        FieldFuture::new(
            async move { Ok(Some(FieldValue::value(get(ctx.parent_value.try_downcast_ref::<PageInfo>()?)))) },
        )
    })
    .description(description)
}

fn cursor_field(name: &'static str, get: fn(&PageInfo) -> Option<String>, description: &'static str) -> Field {
    Field::new(name, TypeRef::named(TypeRef::STRING), move |ctx| {
        FieldFuture::new(
            async move { Ok(get(ctx.parent_value.try_downcast_ref::<PageInfo>()?).map(FieldValue::value)) },
        )
    })
    .description(description)
}
