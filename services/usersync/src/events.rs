//! The directory from events: `subscribe` and `SCAN` fetch the user from WeChat
//! (`user/info`) and write them; `unsubscribe` marks them as left. Each change is announced on
//! `<prefix>.<appid>.notice.user.updated`.

use std::sync::Arc;

use wxoa_runtime::consumer::Delivery;
use wxoa_runtime::now_ms;
use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Detail;
use wxoa_wire::names::notices;
use wxoa_wire::users::{UserChange, UserRecord, UserUpdated};

use crate::{Shared, UsersyncError};

/// Handles one inbound event.
pub(crate) async fn handle(shared: Arc<Shared>, delivery: Delivery) -> Result<(), UsersyncError> {
    let envelope = Envelope::from_stream(&shared.prefix, &delivery.subject, &delivery.payload)
        .map_err(UsersyncError::Invalid)?;
    let app_id = envelope.app_id.as_str();
    if !shared.serves(app_id) {
        return Ok(());
    }
    let message = &envelope.message;
    let openid = message.from_user_name.clone();
    let (change, scene) = match &message.detail {
        Detail::Subscribe { scene, .. } => (UserChange::Subscribed, scene.clone()),
        Detail::Scan { event_key, .. } => (UserChange::Scanned, event_key.clone()),
        Detail::Unsubscribe => (UserChange::Unsubscribed, None),
        _ => return Ok(()),
    };
    let user = if change == UserChange::Unsubscribed {
        // A later follow already in the directory wins over this older unfollow.
        if let Some(user) = shared.dir.get(app_id, &openid).await?
            && user.subscribed
            && user.subscribe_time.is_some_and(|t| t > message.create_time)
        {
            return Ok(());
        }
        let now = now_ms();
        shared
            .dir
            .mark_left(
                app_id,
                std::slice::from_ref(&openid),
                message.create_time,
                now,
            )
            .await?;
        shared
            .dir
            .get(app_id, &openid)
            .await?
            .unwrap_or(UserRecord {
                openid,
                ..UserRecord::default()
            })
    } else {
        let info = shared
            .wechat
            .get(
                app_id,
                "/cgi-bin/user/info",
                &[("openid", openid.as_str()), ("lang", "zh_CN")],
            )
            .await?;
        let user = UserRecord::from_wechat(&info, now_ms()).ok_or_else(|| {
            UsersyncError::Invalid(format!("user/info without an openid: {info}"))
        })?;
        shared
            .dir
            .put(app_id, std::slice::from_ref(&user), None)
            .await?;
        user
    };
    tracing::debug!(app_id, openid = %user.openid, ?change, "directory updated");
    shared
        .notify(
            app_id,
            notices::USER_UPDATED,
            &UserUpdated {
                change,
                user,
                scene,
            },
        )
        .await;
    Ok(())
}
