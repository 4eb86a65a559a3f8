//! Sends one event of every media-reference shape housekeep indexes, and
//! says which index rows each one must produce.

use serde_json::json;

use super::MatrixUser;

/// One `media_refs` row the index must hold after seeding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedRef {
    pub mxc: String,
    pub event_id: String,
    pub kind: &'static str,
}

/// What [`seed_every_media_kind`] sent.
#[derive(Debug, Default)]
pub struct Seeded {
    pub refs: Vec<ExpectedRef>,
    /// Every media uploaded, referenced or not.
    pub uploads: Vec<String>,
}

/// Distinct bytes per upload: Synapse quarantines by hash, so shared bytes
/// would tie unrelated media together.
fn unique_png(label: &str) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(format!("housekeep-seed {label} {}", rand::random::<u64>()).as_bytes());
    bytes
}

/// Uploads media as `user` and sends, into `room`: an image with a thumbnail,
/// an encrypted-shape file with an encrypted thumbnail, a sticker, a room
/// avatar, a member avatar, an HTML message with `<img>`, an edit that swaps
/// in new media, and a custom event with a nested mxc URI.
pub async fn seed_every_media_kind(user: &MatrixUser, room: &str) -> anyhow::Result<Seeded> {
    let mut seeded = Seeded::default();
    let mut upload = async |label: &str| -> anyhow::Result<String> {
        let mxc = user.upload(unique_png(label), "image/png", &format!("{label}.png")).await?;
        seeded.uploads.push(mxc.clone());
        Ok(mxc)
    };
    let image = upload("image").await?;
    let thumbnail = upload("thumbnail").await?;
    let encrypted = upload("encrypted-file").await?;
    let encrypted_thumb = upload("encrypted-thumbnail").await?;
    let sticker = upload("sticker").await?;
    let room_avatar = upload("room-avatar").await?;
    let member_avatar = upload("member-avatar").await?;
    let inline = upload("html-img").await?;
    let edited = upload("edit").await?;
    let nested = upload("nested").await?;
    let _never_sent = upload("never-sent").await?;
    let mut refs = Vec::new();
    let mut expect = |mxc: &str, event_id: &str, kind| {
        refs.push(ExpectedRef { mxc: mxc.to_owned(), event_id: event_id.to_owned(), kind });
    };

    let event = user
        .send(
            room,
            "m.room.message",
            json!({"msgtype": "m.image", "body": "cat.png", "url": image,
                   "info": {"mimetype": "image/png", "size": 10, "thumbnail_url": thumbnail}}),
        )
        .await?;
    expect(&image, &event, "url");
    expect(&thumbnail, &event, "thumbnail");

    let key = json!({"kty": "oct", "key_ops": ["encrypt", "decrypt"], "alg": "A256CTR", "k": "AAAA", "ext": true});
    let event = user
        .send(
            room,
            "m.room.message",
            json!({"msgtype": "m.file", "body": "secret.bin",
                   "file": {"url": encrypted, "key": key, "iv": "AAAAAAAAAAAAAAAAAAAAAA", "hashes": {"sha256": "x"}, "v": "v2"},
                   "info": {"thumbnail_file": {"url": encrypted_thumb, "key": key, "iv": "AAAAAAAAAAAAAAAAAAAAAA",
                                               "hashes": {"sha256": "y"}, "v": "v2"}}}),
        )
        .await?;
    expect(&encrypted, &event, "file");
    expect(&encrypted_thumb, &event, "thumbnail_file");

    let event = user.send(room, "m.sticker", json!({"body": "wave", "url": sticker, "info": {}})).await?;
    expect(&sticker, &event, "sticker");

    let event = user.send_state(room, "m.room.avatar", "", json!({"url": room_avatar})).await?;
    expect(&room_avatar, &event, "room_avatar");

    let event = user
        .send_state(
            room,
            "m.room.member",
            &user.user_id,
            json!({"membership": "join", "displayname": "seed", "avatar_url": member_avatar}),
        )
        .await?;
    expect(&member_avatar, &event, "member_avatar");

    let event = user
        .send(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "look: inline",
                   "format": "org.matrix.custom.html",
                   "formatted_body": format!("<p>look: <img src=\"{inline}\" alt=\"inline\" height=\"32\"></p>")}),
        )
        .await?;
    expect(&inline, &event, "html_img");

    let original = user.send(room, "m.room.message", json!({"msgtype": "m.image", "body": "v1", "url": image})).await?;
    expect(&image, &original, "url");
    let event = user
        .send(
            room,
            "m.room.message",
            json!({"msgtype": "m.image", "body": "* v2", "url": edited,
                   "m.new_content": {"msgtype": "m.image", "body": "v2", "url": edited},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": original}}),
        )
        .await?;
    expect(&edited, &event, "url");

    let event = user.send(room, "org.example.custom", json!({"deeply": {"nested": [{"picture": nested}]}})).await?;
    expect(&nested, &event, "other");

    seeded.refs = refs;
    Ok(seeded)
}
