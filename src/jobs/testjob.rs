//! A synthetic job kind for exercising the framework end to end (kill -9
//! and resume, cancel, failures). Compiled into debug builds only.

use std::time::Duration;

use serde_json::{Value, json};

use super::Batch;
use crate::bot::reply::Reply;
use crate::commands::TestJobArgs;
use crate::store::{AuditEntry, Job};

pub fn plan(args: &TestJobArgs) -> Value {
    json!({ "items": args.items, "batch": args.batch, "delay_ms": args.delay_ms, "fail_at": args.fail_at })
}

pub fn describe(plan: &Value) -> Reply {
    Reply::new().line(&format!(
        "Would process {} synthetic items in batches of {}, waiting {} ms per batch.",
        plan["items"], plan["batch"], plan["delay_ms"]
    ))
}

/// Processes the next batch of items after the cursor. Each item is one
/// audited action, committed with the cursor: after a crash the batch in
/// flight is redone and nothing is recorded twice.
pub async fn run_batch(job: &Job) -> anyhow::Result<Batch> {
    let number = |key: &str| job.plan[key].as_u64().ok_or_else(|| anyhow::anyhow!("testjob plan lacks {key}"));
    let (items, batch, delay_ms) = (number("items")?, number("batch")?, number("delay_ms")?);
    let fail_at = job.plan["fail_at"].as_u64();
    let start = job.cursor.as_ref().and_then(Value::as_u64).unwrap_or(0);
    let end = (start + batch).min(items);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut result = Batch { cursor: json!(end), finished: end >= items, ..Batch::default() };
    for item in start..end {
        let failed = fail_at == Some(item);
        if failed {
            result.failed += 1;
        } else {
            result.done += 1;
        }
        result.audit.push(AuditEntry {
            actor: job.requested_by.clone(),
            room_id: Some(job.room_id.clone()),
            job_id: Some(job.id.clone()),
            action: "testjob.item".to_owned(),
            target: Some(format!("item-{item}")),
            outcome: if failed { "failed: asked to fail (--fail-at)" } else { "done" }.to_owned(),
            ..AuditEntry::default()
        });
    }
    Ok(result)
}
