//! WeChat's job-finish reports: MASSSENDJOBFINISH (per mass batch: total, filtered, sent, errors)
//! and TEMPLATESENDJOBFINISH (per template message: delivered or not), matched back to their
//! broadcast by msg_id (`keys::broadcast_msgids`) and added to its `finished` counts.

use std::sync::Arc;

use redis::AsyncCommands;
use wxoa_runtime::consumer::Delivery;
use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Detail;
use wxoa_wire::names::{keys, notices};

use crate::{BroadcastError, Shared, job};

/// Handles one job-finish event.
pub(crate) async fn handle(shared: Arc<Shared>, delivery: Delivery) -> Result<(), BroadcastError> {
    let envelope = Envelope::from_stream(&shared.prefix, &delivery.subject, &delivery.payload)
        .map_err(BroadcastError::Invalid)?;
    let app_id = envelope.app_id.as_str();
    if !shared.served.contains(app_id) {
        return Ok(());
    }
    let Some(msg_id) = envelope.message.msg_id.as_deref() else {
        return Ok(());
    };
    let prefix = &shared.key_prefix;
    let job: Option<String> = shared
        .redis
        .clone()
        .hget(keys::broadcast_msgids(prefix, app_id), msg_id)
        .await?;
    let Some(job) = job else {
        tracing::debug!(
            app_id,
            msg_id,
            "a job-finish report of no broadcast of ours"
        );
        return Ok(());
    };
    let counts: Vec<(&str, i64)> = match &envelope.message.detail {
        Detail::MassSendJobFinish {
            total_count,
            filter_count,
            sent_count,
            error_count,
            ..
        } => {
            let n = |c: &Option<u64>| c.unwrap_or(0) as i64;
            vec![
                ("fin_total", n(total_count)),
                ("fin_filtered", n(filter_count)),
                ("fin_sent", n(sent_count)),
                ("fin_errors", n(error_count)),
            ]
        }
        Detail::TemplateSendJobFinish { status } => {
            if status.as_deref() == Some("success") {
                vec![("fin_sent", 1)]
            } else {
                vec![("fin_errors", 1)]
            }
        }
        _ => return Ok(()),
    };
    let key = keys::broadcast(prefix, app_id, &job);
    let mut pipe = redis::pipe();
    pipe.hincr(&key, "fin_reports", 1).ignore();
    for (field, n) in counts {
        pipe.hincr(&key, field, n).ignore();
    }
    pipe.query_async::<()>(&mut shared.redis.clone()).await?;
    job::announce(&shared, app_id, &job, notices::BROADCAST_FINISHED).await;
    Ok(())
}
