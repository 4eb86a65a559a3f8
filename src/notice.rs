//! What people read: a message with a plain text and an HTML form, built
//! together so the two never disagree, and the [`Sink`] that delivers it.
//!
//! Below every front-end and job kind: commands and kinds return a
//! [`Notice`]; where it goes (the admin room today, a scheduled room or the
//! web dashboard later) is the sink's business.

use async_trait::async_trait;
use ruma::events::Mentions;
use ruma::events::relation::Reply;
use ruma::events::room::ImageInfo;
use ruma::events::room::message::{
    ImageMessageEventContent, MessageType, Relation, ReplacementMetadata, RoomMessageEventContent,
};
use ruma::{EventId, OwnedMxcUri, UInt};

/// A message under construction. Commands and job kinds return one; sending is separate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notice {
    pub plain: String,
    pub html: String,
}

/// Bytes `c` takes inside a JSON string.
fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes `text` takes inside a JSON string.
fn json_len(text: &str) -> usize {
    text.chars().map(json_char_len).sum()
}

/// The first `hex_chars` hex characters of the SHA-256 of `text`: a part
/// of a post's key (its transaction ID) that names something longer than a
/// key should carry (a room ID and a schedule, a rule's list and state key).
pub fn hashed_key(text: &str, hex_chars: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut hex = hex::encode(Sha256::digest(text.as_bytes()));
    hex.truncate(hex_chars);
    hex
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Notice {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bold first line.
    pub fn title(mut self, text: &str) -> Self {
        self.push_line(text, &format!("<strong>{}</strong>", escape(text)));
        self
    }

    /// A plain paragraph line.
    pub fn line(mut self, text: &str) -> Self {
        self.push_line(text, &escape(text));
        self
    }

    /// `key: value`, the key in bold.
    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.push_line(&format!("{key}: {value}"), &format!("<b>{}</b>: {}", escape(key), escape(value)));
        self
    }

    /// Another reply's content, as the next line.
    pub fn append(mut self, other: Notice) -> Self {
        self.push_line(&other.plain, &other.html);
        self
    }

    /// A bulleted list.
    pub fn list<I: IntoIterator<Item = String>>(mut self, items: I) -> Self {
        let items: Vec<String> = items.into_iter().collect();
        if items.is_empty() {
            return self;
        }
        let plain: Vec<String> = items.iter().map(|i| format!("- {i}")).collect();
        let html: String = items.iter().map(|i| format!("<li>{}</li>", escape(i))).collect();
        self.push_block(&plain.join("\n"), &format!("<ul>{html}</ul>"));
        self
    }

    /// Preformatted text (usage, help, tables).
    pub fn code(mut self, text: &str) -> Self {
        self.push_block(text, &format!("<pre><code>{}</code></pre>", escape(text)));
        self
    }

    fn push_line(&mut self, plain: &str, html: &str) {
        if !self.plain.is_empty() {
            self.plain.push('\n');
            self.html.push_str("<br>");
        }
        self.plain.push_str(plain);
        self.html.push_str(html);
    }

    fn push_block(&mut self, plain: &str, html: &str) {
        if !self.plain.is_empty() {
            self.plain.push('\n');
        }
        self.plain.push_str(plain);
        self.html.push_str(html);
    }

    /// This notice cut to fit in a Matrix event (64 KiB in all): past
    /// `max_bytes` of text as it is sent (JSON-encoded), the plain text is
    /// cut and the HTML becomes its escaped copy, so no tag is left open.
    /// The cut is measured after HTML and JSON escaping, which can make a
    /// character up to six times longer (`'` → `&#39;`, a control character
    /// → `\u0001`).
    pub fn limited(&self, max_bytes: usize) -> std::borrow::Cow<'_, Notice> {
        if json_len(&self.plain) + json_len(&self.html) <= max_bytes {
            return std::borrow::Cow::Borrowed(self);
        }
        const CUT: &str = "\n… (cut: too long for one message)";
        let budget = max_bytes.saturating_sub(2 * json_len(CUT) + "<pre></pre>".len());
        let mut used = 0;
        let mut end = 0;
        for (index, c) in self.plain.char_indices() {
            let cost = json_char_len(c) + escape(c.encode_utf8(&mut [0; 4])).chars().map(json_char_len).sum::<usize>();
            if used + cost > budget {
                break;
            }
            used += cost;
            end = index + c.len_utf8();
        }
        let plain = format!("{}{CUT}", &self.plain[..end]);
        let html = format!("<pre>{}</pre>", escape(&plain));
        std::borrow::Cow::Owned(Notice { plain, html })
    }

    /// The `m.notice` content (plain `body`, HTML `formatted_body`), a
    /// reply to `in_reply_to` when given. It mentions nobody: an empty
    /// `m.mentions`, so neither the reply nor a user ID in the text pings.
    pub fn content(&self, in_reply_to: Option<&EventId>) -> RoomMessageEventContent {
        let mut content = RoomMessageEventContent::notice_html(&self.plain, &self.html).add_mentions(Mentions::new());
        // What `make_reply_to` makes (with ForwardThread::No and
        // AddMentions::No) without the sender it asks for, which a
        // destination does not carry.
        content.relates_to = in_reply_to.map(|event_id| Relation::Reply(Reply::with_event_id(event_id.to_owned())));
        content
    }

    /// An edit (`m.replace`) of `original` that makes it read as this
    /// notice: a `* ` fallback, the new text in `m.new_content`, no mentions.
    pub fn edit_content(&self, original: &EventId) -> RoomMessageEventContent {
        self.content(None).make_replacement(ReplacementMetadata::new(original.to_owned(), Some(Mentions::new())))
    }
}

/// Where a notice goes: a room, and the message it answers, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub room_id: String,
    pub in_reply_to: Option<String>,
}

/// Delivers notices to people. The job runner and the chat front-end are
/// given one; they never talk to a room directly.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Posts `notice` and returns its message ID. The same `key` is the same
    /// transaction ID, so a retry soon after is deduplicated by Synapse (its
    /// cache keeps them 30 to 60 minutes, in memory): a notice re-sent after a
    /// long outage or a Synapse restart can appear twice.
    async fn post(&self, to: &Destination, key: &str, notice: &Notice) -> anyhow::Result<String>;

    /// Makes the earlier message `message_id` in `room_id` read as `notice`.
    async fn edit(&self, room_id: &str, message_id: &str, key: &str, notice: &Notice) -> anyhow::Result<String>;

    /// Posts a picture (a chart) and returns its message ID; `key` as for [`Sink::post`].
    async fn post_image(&self, to: &Destination, key: &str, image: &Image) -> anyhow::Result<String>;
}

/// A picture to post beside a notice: PNG bytes and what they show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The file name, also the message's text for clients that show no images.
    pub name: String,
}

impl Image {
    /// The `m.image` content once uploaded to `url`, mentioning nobody.
    pub fn content(&self, url: OwnedMxcUri) -> RoomMessageEventContent {
        let mut info = ImageInfo::new();
        info.width = Some(UInt::from(self.width));
        info.height = Some(UInt::from(self.height));
        info.size = UInt::new(self.png.len() as u64);
        info.mimetype = Some("image/png".to_owned());
        let mut image = ImageMessageEventContent::plain(self.name.clone(), url).info(Some(Box::new(info)));
        image.filename = Some(self.name.clone());
        RoomMessageEventContent::new(MessageType::Image(image)).add_mentions(Mentions::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_html_carry_the_same_text() {
        let reply = Notice::new()
            .title("Job <k1>")
            .field("state", "running")
            .list(["a & b".to_owned()])
            .code("usage: !purge <room>");
        assert_eq!(reply.plain, "Job <k1>\nstate: running\n- a & b\nusage: !purge <room>");
        assert_eq!(
            reply.html,
            "<strong>Job &lt;k1&gt;</strong><br><b>state</b>: running<ul><li>a &amp; b</li></ul>\
             <pre><code>usage: !purge &lt;room&gt;</code></pre>"
        );
    }

    #[test]
    fn long_replies_are_cut_to_fit_an_event() {
        let long = Notice::new().list((0..5000).map(|i| format!("mxc://hs/é{i}")));
        let cut = long.limited(48 * 1024);
        assert!(cut.plain.len() + cut.html.len() <= 48 * 1024, "{}", cut.plain.len() + cut.html.len());
        assert!(cut.plain.ends_with("(cut: too long for one message)"));
        assert!(cut.html.starts_with("<pre>") && cut.html.ends_with("</pre>"));
        // Escaping can grow text sixfold: the cut is measured after it.
        let quotes = Notice::new().line(&"'\"".repeat(20_000));
        let cut = quotes.limited(48 * 1024);
        let sent = serde_json::to_string(&cut.content(None)).unwrap();
        assert!(sent.len() < 48 * 1024 + 200, "{}", sent.len());
        assert!(cut.plain.len() > 4 * 1024, "still says something: {}", cut.plain.len());
        let controls = Notice::new().line(&"\u{1}<".repeat(20_000));
        let cut = controls.limited(48 * 1024);
        let sent = serde_json::to_string(&cut.content(None)).unwrap();
        assert!(sent.len() < 48 * 1024 + 200, "{}", sent.len());
        let short = Notice::new().line("ok");
        assert_eq!(*short.limited(100), short);
    }

    fn json(content: &RoomMessageEventContent) -> serde_json::Value {
        serde_json::to_value(content).unwrap()
    }

    #[test]
    fn replies_and_edits_have_matrix_shapes() {
        let reply = Notice::new().title("Job <1>").line("hi @alice:hs");
        let command = EventId::parse("$cmd").unwrap();
        let content = json(&reply.content(Some(&command)));
        assert_eq!(
            content,
            serde_json::json!({
                "msgtype": "m.notice",
                "body": "Job <1>\nhi @alice:hs",
                "format": "org.matrix.custom.html",
                "formatted_body": "<strong>Job &lt;1&gt;</strong><br>hi @alice:hs",
                "m.mentions": {},
                "m.relates_to": { "m.in_reply_to": { "event_id": "$cmd" } },
            })
        );
        assert!(json(&reply.content(None)).get("m.relates_to").is_none());
        let edit = json(&reply.edit_content(&EventId::parse("$progress").unwrap()));
        assert_eq!(edit["m.relates_to"], serde_json::json!({ "rel_type": "m.replace", "event_id": "$progress" }));
        assert_eq!(
            (edit["body"].as_str(), edit["msgtype"].as_str()),
            (Some("* Job <1>\nhi @alice:hs"), Some("m.notice"))
        );
        assert_eq!(edit["formatted_body"], "* <strong>Job &lt;1&gt;</strong><br>hi @alice:hs");
        assert_eq!(edit["m.mentions"], serde_json::json!({}), "the edit pings nobody");
        assert_eq!(edit["m.new_content"]["body"], "Job <1>\nhi @alice:hs");
        assert_eq!(edit["m.new_content"]["m.mentions"], serde_json::json!({}));
        assert!(edit["m.new_content"].get("m.relates_to").is_none());
    }

    #[test]
    fn images_carry_their_size_and_name() {
        let image = Image { png: vec![0; 1234], width: 800, height: 400, name: "chart.png".to_owned() };
        let content = json(&image.content(OwnedMxcUri::from("mxc://hs/abc")));
        assert_eq!(
            content,
            serde_json::json!({
                "msgtype": "m.image",
                "body": "chart.png",
                "filename": "chart.png",
                "url": "mxc://hs/abc",
                "info": { "w": 800, "h": 400, "size": 1234, "mimetype": "image/png" },
                "m.mentions": {},
            })
        );
    }
}
