//! Dashboard fields from the seeds: `Workspace.evalAccuracyBuckets`,
//! `Workspace.integrationHealth`, `Workspace.jobStats` and `Agent.feedbackCounts`. Each is
//! batched per level like every relation: one grouped statement for all the workspaces (or
//! agents) of a page, written in Diesel's DSL.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, Object, ResolverContext, SchemaBuilder, TypeRef,
};
use async_graphql::{Name, Value as GqlValue};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::catalog::Table;
use crate::db::sql_types::Timestamp;
use crate::error::AppError;
use crate::graphql::loader::GraphLoader;
use crate::graphql::records::Record;
use crate::graphql::schema::loader;
use crate::models::{FeedbackRating, IntegrationPlatform, IntegrationStatus, JobStatus, JobType};
use crate::schema::{agents, evals, feedback, integrations, jobs};
use crate::with_conn;

/// The values of one dashboard row, by field name.
type Fields = Vec<(&'static str, GqlValue)>;

/// A workspace's dashboards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkspaceStat {
    /// Eval accuracy buckets.
    Accuracy(String),
    /// Integrations by platform and status.
    Health(String),
    /// Jobs by type and status.
    Jobs(String),
}

/// An agent's feedback counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedbackOf(pub String);

fn enum_value(text: &str) -> GqlValue {
    GqlValue::Enum(Name::new(text.to_ascii_uppercase()))
}

/// The accuracy band of an eval: HIGH ≥ 0.9, MEDIUM 0.8–0.9, LOW < 0.8.
pub fn band(accuracy: f64) -> &'static str {
    if accuracy >= 0.9 {
        "HIGH"
    } else if accuracy >= 0.8 {
        "MEDIUM"
    } else {
        "LOW"
    }
}

impl Loader<WorkspaceStat> for GraphLoader {
    type Value = Vec<Fields>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[WorkspaceStat],
    ) -> Result<HashMap<WorkspaceStat, Vec<Fields>>, AppError> {
        let ids = |wanted: fn(&WorkspaceStat) -> Option<&String>| {
            keys.iter().filter_map(wanted).cloned().collect::<Vec<_>>()
        };
        let mut out = HashMap::new();
        let accuracy = ids(|k| {
            if let WorkspaceStat::Accuracy(id) = k {
                Some(id)
            } else {
                None
            }
        });
        if !accuracy.is_empty() {
            let rows: Vec<(String, Option<f64>)> = with_conn!(&self.db, |conn| {
                evals::table
                    .inner_join(agents::table.on(agents::id.eq(evals::agent_id)))
                    .filter(agents::workspace_id.eq_any(&accuracy))
                    .select((agents::workspace_id, evals::accuracy))
                    .load(conn)
                    .await?
            });
            for workspace in accuracy {
                let mut counts = [("HIGH", 0i64), ("MEDIUM", 0), ("LOW", 0)];
                for (_, value) in rows.iter().filter(|(w, _)| *w == workspace) {
                    if let Some(value) = value {
                        let name = band(*value);
                        if let Some(slot) = counts.iter_mut().find(|(b, _)| *b == name) {
                            slot.1 += 1;
                        }
                    }
                }
                let buckets = counts
                    .iter()
                    .map(|(b, n)| {
                        vec![
                            ("bucket", GqlValue::Enum(Name::new(*b))),
                            ("count", GqlValue::from(*n)),
                        ]
                    })
                    .collect();
                out.insert(WorkspaceStat::Accuracy(workspace), buckets);
            }
        }
        let health = ids(|k| {
            if let WorkspaceStat::Health(id) = k {
                Some(id)
            } else {
                None
            }
        });
        if !health.is_empty() {
            let rows: Vec<(String, IntegrationPlatform, IntegrationStatus, i64)> =
                with_conn!(&self.db, |conn| {
                    integrations::table
                        .filter(integrations::workspace_id.eq_any(&health))
                        .group_by((
                            integrations::workspace_id,
                            integrations::platform,
                            integrations::status,
                        ))
                        .select((
                            integrations::workspace_id,
                            integrations::platform,
                            integrations::status,
                            diesel::dsl::count_star(),
                        ))
                        .order((
                            integrations::workspace_id,
                            integrations::platform,
                            integrations::status,
                        ))
                        .load(conn)
                        .await?
                });
            for workspace in health {
                let stats = rows
                    .iter()
                    .filter(|(w, ..)| *w == workspace)
                    .map(|(_, platform, status, n)| {
                        vec![
                            ("platform", enum_value(platform.as_str())),
                            ("status", enum_value(status.as_str())),
                            ("count", GqlValue::from(*n)),
                        ]
                    })
                    .collect();
                out.insert(WorkspaceStat::Health(workspace), stats);
            }
        }
        let job_ids = ids(|k| {
            if let WorkspaceStat::Jobs(id) = k {
                Some(id)
            } else {
                None
            }
        });
        if !job_ids.is_empty() {
            type JobRow = (
                String,
                JobType,
                JobStatus,
                Option<Timestamp>,
                Option<Timestamp>,
            );
            let rows: Vec<JobRow> = with_conn!(&self.db, |conn| {
                jobs::table
                    .filter(jobs::workspace_id.eq_any(&job_ids))
                    .select((
                        jobs::workspace_id,
                        jobs::r#type,
                        jobs::status,
                        jobs::started_at,
                        jobs::completed_at,
                    ))
                    .load(conn)
                    .await?
            });
            for workspace in job_ids {
                // (type, status) → (count, summed seconds, timed jobs), in a stable order.
                let mut groups: Vec<((JobType, JobStatus), (i64, f64, i64))> = Vec::new();
                for (_, kind, status, started, completed) in
                    rows.iter().filter(|(w, ..)| *w == workspace)
                {
                    let index = match groups.iter().position(|(k, _)| *k == (*kind, *status)) {
                        Some(index) => index,
                        None => {
                            groups.push(((*kind, *status), (0, 0.0, 0)));
                            groups.len() - 1
                        }
                    };
                    let entry = &mut groups[index].1;
                    entry.0 += 1;
                    if let (Some(start), Some(end)) = (started, completed) {
                        entry.1 += (end.as_datetime() - start.as_datetime())
                            .num_microseconds()
                            .unwrap_or(0) as f64
                            / 1e6;
                        entry.2 += 1;
                    }
                }
                groups.sort_by_key(|((k, s), _)| (k.as_str(), s.as_str()));
                let stats = groups
                    .into_iter()
                    .map(|((kind, status), (count, seconds, timed))| {
                        let average = if timed > 0 {
                            GqlValue::from(seconds / timed as f64)
                        } else {
                            GqlValue::Null
                        };
                        vec![
                            ("type", enum_value(kind.as_str())),
                            ("status", enum_value(status.as_str())),
                            ("count", GqlValue::from(count)),
                            ("avgDurationSeconds", average),
                        ]
                    })
                    .collect();
                out.insert(WorkspaceStat::Jobs(workspace), stats);
            }
        }
        Ok(out)
    }
}

impl Loader<FeedbackOf> for GraphLoader {
    type Value = Fields;
    type Error = AppError;

    async fn load(&self, keys: &[FeedbackOf]) -> Result<HashMap<FeedbackOf, Fields>, AppError> {
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows: Vec<(Option<String>, FeedbackRating, i64)> = with_conn!(&self.db, |conn| {
            feedback::table
                .filter(feedback::agent_id.eq_any(&ids))
                .group_by((feedback::agent_id, feedback::rating))
                .select((
                    feedback::agent_id,
                    feedback::rating,
                    diesel::dsl::count_star(),
                ))
                .load(conn)
                .await?
        });
        Ok(ids
            .into_iter()
            .map(|agent| {
                let count = |rating: FeedbackRating| {
                    rows.iter()
                        .filter(|(a, r, _)| a.as_deref() == Some(agent.as_str()) && *r == rating)
                        .map(|(_, _, n)| n)
                        .sum::<i64>()
                };
                let (positive, negative, neutral) = (
                    count(FeedbackRating::Positive),
                    count(FeedbackRating::Negative),
                    count(FeedbackRating::Neutral),
                );
                let fields = vec![
                    ("positive", GqlValue::from(positive)),
                    ("negative", GqlValue::from(negative)),
                    ("neutral", GqlValue::from(neutral)),
                    ("total", GqlValue::from(positive + negative + neutral)),
                ];
                (FeedbackOf(agent), fields)
            })
            .collect())
    }
}

/// An object whose fields read a [`Fields`] parent.
fn value_object(
    name: &str,
    description: &str,
    fields: &[(&'static str, TypeRef, &'static str)],
) -> Object {
    let mut object = Object::new(name).description(description);
    for (field, ty, doc) in fields {
        let field_name = *field;
        object = object.field(
            Field::new(field_name, ty.clone(), move |ctx| {
                FieldFuture::new(async move {
                    let values = ctx.parent_value.try_downcast_ref::<Fields>()?;
                    let value = values
                        .iter()
                        .find(|(n, _)| *n == field_name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or(GqlValue::Null);
                    Ok((value != GqlValue::Null).then(|| FieldValue::value(value)))
                })
            })
            .description(*doc),
        );
    }
    object
}

/// Registers the dashboard types.
pub fn register(builder: SchemaBuilder) -> SchemaBuilder {
    builder
        .register(
            Enum::new("AccuracyBand")
                .description("Eval accuracy bands.")
                .item(EnumItem::new("HIGH").description("accuracy ≥ 0.9"))
                .item(EnumItem::new("MEDIUM").description("0.8 ≤ accuracy < 0.9"))
                .item(EnumItem::new("LOW").description("accuracy < 0.8")),
        )
        .register(value_object(
            "AccuracyBucket",
            "How many evals of a workspace fall in an accuracy band (evals without accuracy are not counted).",
            &[
                ("bucket", TypeRef::named_nn("AccuracyBand"), "The band."),
                ("count", TypeRef::named_nn(TypeRef::INT), "How many evals."),
            ],
        ))
        .register(value_object(
            "IntegrationHealth",
            "How many integrations of a workspace have a platform and status.",
            &[
                ("platform", TypeRef::named_nn("IntegrationPlatform"), "The platform."),
                ("status", TypeRef::named_nn("IntegrationStatus"), "The status."),
                ("count", TypeRef::named_nn(TypeRef::INT), "How many integrations."),
            ],
        ))
        .register(value_object(
            "JobStat",
            "How many jobs of a workspace have a type and status, and how long they ran.",
            &[
                ("type", TypeRef::named_nn("JobType"), "The job type."),
                ("status", TypeRef::named_nn("JobStatus"), "The status."),
                ("count", TypeRef::named_nn(TypeRef::INT), "How many jobs."),
                (
                    "avgDurationSeconds",
                    TypeRef::named(TypeRef::FLOAT),
                    "The average of completed_at − started_at over the jobs that have both; null when none has.",
                ),
            ],
        ))
        .register(value_object(
            "FeedbackCounts",
            "An agent's human ratings by value.",
            &[
                ("positive", TypeRef::named_nn(TypeRef::INT), "Positive ratings."),
                ("negative", TypeRef::named_nn(TypeRef::INT), "Negative ratings."),
                ("neutral", TypeRef::named_nn(TypeRef::INT), "Neutral ratings."),
                ("total", TypeRef::named_nn(TypeRef::INT), "All ratings."),
            ],
        ))
}

fn parent_id(ctx: &ResolverContext<'_>) -> async_graphql::Result<String> {
    Ok(ctx
        .parent_value
        .try_downcast_ref::<Record>()?
        .id()
        .to_owned())
}

fn workspace_stat(
    name: &'static str,
    item: &'static str,
    key: fn(String) -> WorkspaceStat,
    description: &'static str,
) -> Field {
    Field::new(name, TypeRef::named_nn_list_nn(item), move |ctx| {
        FieldFuture::new(async move {
            let rows = loader(&ctx)?
                .load_one(key(parent_id(&ctx)?))
                .await?
                .unwrap_or_default();
            Ok(Some(FieldValue::list(
                rows.into_iter().map(FieldValue::owned_any),
            )))
        })
    })
    .description(description)
}

/// Adds the dashboard fields of `table`'s object type.
pub fn fields(object: Object, table: &Table) -> Object {
    match table.name {
        "workspaces" => object
            .field(workspace_stat(
                "evalAccuracyBuckets",
                "AccuracyBucket",
                WorkspaceStat::Accuracy,
                "Evals by accuracy band: HIGH, MEDIUM, LOW (each present, possibly 0).",
            ))
            .field(workspace_stat(
                "integrationHealth",
                "IntegrationHealth",
                WorkspaceStat::Health,
                "Integrations by platform and status.",
            ))
            .field(workspace_stat(
                "jobStats",
                "JobStat",
                WorkspaceStat::Jobs,
                "Jobs by type and status, with their average duration.",
            )),
        "agents" => object.field(
            Field::new(
                "feedbackCounts",
                TypeRef::named_nn("FeedbackCounts"),
                |ctx| {
                    FieldFuture::new(async move {
                        let fields = loader(&ctx)?
                            .load_one(FeedbackOf(parent_id(&ctx)?))
                            .await?
                            .unwrap_or_default();
                        Ok(Some(FieldValue::owned_any(fields)))
                    })
                },
            )
            .description("The human ratings of this agent's traces by value."),
        ),
        _ => object,
    }
}
