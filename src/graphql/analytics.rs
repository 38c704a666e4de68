//! Dashboard fields from the seeds: `Workspace.evalAccuracyBuckets`,
//! `Workspace.integrationHealth`, `Workspace.jobStats`, `Workspace.jobFailureRate` and
//! `Agent.feedbackCounts`. Each is
//! batched per level like every relation: one grouped statement for all the workspaces (or
//! agents) of a page, written in Diesel's DSL.

use std::collections::HashMap;

use async_graphql::dynamic::{Enum, EnumItem, Field, FieldFuture, FieldValue, Object, SchemaBuilder, TypeRef};
use async_graphql::{Name, Value as GqlValue};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::catalog::Table;
use crate::db::sql_types::Timestamp;
use crate::error::AppResult;
use crate::graphql::loader::GraphLoader;
use crate::graphql::records::Record;
use crate::graphql::schema::reader;
use crate::models::{FeedbackRating, IntegrationPlatform, IntegrationStatus, JobStatus, JobType};
use crate::schema::{agents, evals, feedback, integrations, jobs};
use crate::with_conn;

/// A job type and status.
type JobKind = (JobType, JobStatus);
/// Jobs counted, seconds summed, jobs timed.
type JobTally = (i64, f64, i64);

/// The values of one dashboard row, by field name.
type Fields = Vec<(&'static str, GqlValue)>;

/// A workspace dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkspaceStat {
    /// Eval accuracy buckets.
    Accuracy,
    /// Integrations by platform and status.
    Health,
    /// Jobs by type and status.
    Jobs,
    /// Failed jobs among the jobs that started.
    FailureRate,
}

fn enum_value(text: &str) -> GqlValue {
    GqlValue::Enum(Name::new(text.to_ascii_uppercase()))
}

/// The accuracy band of an eval: HIGH ≥ 0.9, MEDIUM 0.8–0.9, LOW < 0.8 or no accuracy
/// (an eval nobody has measured is not known to be good: it counts in the lowest band).
pub fn band(accuracy: Option<f64>) -> &'static str {
    match accuracy {
        Some(a) if a >= 0.9 => "HIGH",
        Some(a) if a >= 0.8 => "MEDIUM",
        _ => "LOW",
    }
}

impl GraphLoader {
    /// A dashboard of every workspace in `ids`, in one statement.
    async fn workspace_stats(&self, stat: WorkspaceStat, ids: Vec<String>) -> AppResult<HashMap<String, Vec<Fields>>> {
        let mut out = HashMap::new();
        match stat {
            WorkspaceStat::Accuracy => {
                let rows: Vec<(String, Option<f64>)> = with_conn!(&self.db, |conn| {
                    evals::table
                        .inner_join(agents::table.on(agents::id.eq(evals::agent_id)))
                        .filter(agents::workspace_id.eq_any(&ids))
                        .select((agents::workspace_id, evals::accuracy))
                        .load(conn)
                        .await?
                });
                for workspace in ids {
                    let mut counts = [("HIGH", 0i64), ("MEDIUM", 0), ("LOW", 0)];
                    for (_, value) in rows.iter().filter(|(w, _)| *w == workspace) {
                        let name = band(*value);
                        if let Some(slot) = counts.iter_mut().find(|(b, _)| *b == name) {
                            slot.1 += 1;
                        }
                    }
                    let buckets = counts
                        .iter()
                        .map(|(b, n)| vec![("bucket", GqlValue::Enum(Name::new(*b))), ("count", GqlValue::from(*n))])
                        .collect();
                    out.insert(workspace, buckets);
                }
            }
            WorkspaceStat::Health => {
                let rows: Vec<(String, IntegrationPlatform, IntegrationStatus, i64)> = with_conn!(&self.db, |conn| {
                    integrations::table
                        .filter(integrations::workspace_id.eq_any(&ids))
                        .group_by((integrations::workspace_id, integrations::platform, integrations::status))
                        .select((
                            integrations::workspace_id,
                            integrations::platform,
                            integrations::status,
                            diesel::dsl::count_star(),
                        ))
                        .order((integrations::workspace_id, integrations::platform, integrations::status))
                        .load(conn)
                        .await?
                });
                for workspace in ids {
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
                    out.insert(workspace, stats);
                }
            }
            WorkspaceStat::Jobs => {
                type JobRow = (String, JobType, JobStatus, Option<Timestamp>, Option<Timestamp>);
                let rows: Vec<JobRow> = with_conn!(&self.db, |conn| {
                    jobs::table
                        .filter(jobs::workspace_id.eq_any(&ids))
                        .select((jobs::workspace_id, jobs::r#type, jobs::status, jobs::started_at, jobs::completed_at))
                        .load(conn)
                        .await?
                });
                for workspace in ids {
                    // (type, status) → (count, summed seconds, timed jobs).
                    let mut groups: Vec<(JobKind, JobTally)> = Vec::new();
                    for (_, kind, status, started, completed) in rows.iter().filter(|(w, ..)| *w == workspace) {
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
                            let micros = (end.as_datetime() - start.as_datetime()).num_microseconds().unwrap_or(0);
                            entry.1 += micros as f64 / 1e6;
                            entry.2 += 1;
                        }
                    }
                    groups.sort_by_key(|((k, s), _)| (k.as_str(), s.as_str()));
                    let stats = groups
                        .into_iter()
                        .map(|((kind, status), (count, seconds, timed))| {
                            let average =
                                if timed > 0 { GqlValue::from(seconds / timed as f64) } else { GqlValue::Null };
                            vec![
                                ("type", enum_value(kind.as_str())),
                                ("status", enum_value(status.as_str())),
                                ("count", GqlValue::from(count)),
                                ("avgDurationSeconds", average),
                            ]
                        })
                        .collect();
                    out.insert(workspace, stats);
                }
            }
            WorkspaceStat::FailureRate => {
                // Only jobs that started count: a job cancelled while queued never ran, so it
                // neither failed nor succeeded.
                let rows: Vec<(String, JobStatus, i64)> = with_conn!(&self.db, |conn| {
                    jobs::table
                        .filter(jobs::workspace_id.eq_any(&ids))
                        .filter(jobs::started_at.is_not_null())
                        .group_by((jobs::workspace_id, jobs::status))
                        .select((jobs::workspace_id, jobs::status, diesel::dsl::count_star()))
                        .load(conn)
                        .await?
                });
                for workspace in ids {
                    let mine = rows.iter().filter(|(w, ..)| *w == workspace);
                    let (started, failed) = mine.fold((0i64, 0i64), |(started, failed), (_, status, n)| {
                        (started + n, failed + if *status == JobStatus::Failed { *n } else { 0 })
                    });
                    let rate =
                        if started > 0 { GqlValue::from(failed as f64 / started as f64) } else { GqlValue::Null };
                    let fields =
                        vec![("started", GqlValue::from(started)), ("failed", GqlValue::from(failed)), ("rate", rate)];
                    out.insert(workspace, vec![fields]);
                }
            }
        }
        Ok(out)
    }

    /// The feedback counts of every agent in `ids`, in one statement.
    async fn feedback_counts(&self, ids: Vec<String>) -> AppResult<HashMap<String, Fields>> {
        let rows: Vec<(Option<String>, FeedbackRating, i64)> = with_conn!(&self.db, |conn| {
            feedback::table
                .filter(feedback::agent_id.eq_any(&ids))
                .group_by((feedback::agent_id, feedback::rating))
                .select((feedback::agent_id, feedback::rating, diesel::dsl::count_star()))
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
                let (positive, negative, neutral) =
                    (count(FeedbackRating::Positive), count(FeedbackRating::Negative), count(FeedbackRating::Neutral));
                let fields = vec![
                    ("positive", GqlValue::from(positive)),
                    ("negative", GqlValue::from(negative)),
                    ("neutral", GqlValue::from(neutral)),
                    ("total", GqlValue::from(positive + negative + neutral)),
                ];
                (agent, fields)
            })
            .collect())
    }
}

/// An object whose fields read a [`Fields`] parent.
fn value_object(name: &str, description: &str, fields: &[(&'static str, TypeRef, &'static str)]) -> Object {
    let mut object = Object::new(name).description(description);
    for (field, ty, doc) in fields {
        let field_name = *field;
        object = object.field(
            Field::new(field_name, ty.clone(), move |ctx| {
                FieldFuture::new(async move {
                    let values = ctx.parent_value.try_downcast_ref::<Fields>()?;
                    let value =
                        values.iter().find(|(n, _)| *n == field_name).map(|(_, v)| v.clone()).unwrap_or(GqlValue::Null);
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
                .item(EnumItem::new("LOW").description("accuracy < 0.8, or no accuracy yet")),
        )
        .register(value_object(
            "AccuracyBucket",
            "How many evals of a workspace fall in an accuracy band (an eval without accuracy counts as LOW).",
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
            "JobFailureRate",
            "How often a workspace's jobs fail, among the jobs that started (`startedAt` set): a job cancelled \
             before it ran is left out.",
            &[
                ("started", TypeRef::named_nn(TypeRef::INT), "Jobs that started (any status)."),
                ("failed", TypeRef::named_nn(TypeRef::INT), "Of those, jobs whose status is FAILED."),
                ("rate", TypeRef::named(TypeRef::FLOAT), "`failed / started`, 0–1; null when no job started."),
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

fn workspace_stat(name: &'static str, item: &'static str, stat: WorkspaceStat, description: &'static str) -> Field {
    Field::new(name, TypeRef::named_nn_list_nn(item), move |ctx| {
        FieldFuture::new(async move {
            let record = ctx.parent_value.try_downcast_ref::<Record>()?;
            let reader = reader(&ctx)?;
            let all = record
                .group
                .memo(format!("stat|{stat:?}"), || reader.workspace_stats(stat, record.group.texts("id")))
                .await?;
            let rows = all.get(record.id()).cloned().unwrap_or_default();
            Ok(Some(FieldValue::list(rows.into_iter().map(FieldValue::owned_any))))
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
                "Evals by accuracy band: HIGH, MEDIUM, LOW (each present, possibly 0; evals without accuracy count as \
                 LOW).",
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
            ))
            .field(
                Field::new("jobFailureRate", TypeRef::named_nn("JobFailureRate"), |ctx| {
                    FieldFuture::new(async move {
                        let record = ctx.parent_value.try_downcast_ref::<Record>()?;
                        let reader = reader(&ctx)?;
                        let stat = WorkspaceStat::FailureRate;
                        let all = record
                            .group
                            .memo(format!("stat|{stat:?}"), || reader.workspace_stats(stat, record.group.texts("id")))
                            .await?;
                        let fields =
                            all.get(record.id()).and_then(|rows| rows.iter().next().cloned()).unwrap_or_default();
                        Ok(Some(FieldValue::owned_any(fields)))
                    })
                })
                .description("Failed jobs among the jobs that started (a job cancelled while queued is left out)."),
            ),
        "agents" => object.field(
            Field::new("feedbackCounts", TypeRef::named_nn("FeedbackCounts"), |ctx| {
                FieldFuture::new(async move {
                    let record = ctx.parent_value.try_downcast_ref::<Record>()?;
                    let reader = reader(&ctx)?;
                    let all = record
                        .group
                        .memo(String::from("stat|feedback"), || reader.feedback_counts(record.group.texts("id")))
                        .await?;
                    Ok(Some(FieldValue::owned_any(all.get(record.id()).cloned().unwrap_or_default())))
                })
            })
            .description("The human ratings of this agent's traces by value."),
        ),
        _ => object,
    }
}
