//! What the bot says: `m.notice` messages with a plain `body` and an HTML
//! `formatted_body`, built together so the two never disagree.

use serde_json::{Value, json};

/// A message under construction. Executors return one; sending is separate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub plain: String,
    pub html: String,
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

impl Reply {
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
    pub fn append(mut self, other: Reply) -> Self {
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

    /// This reply cut to fit in a Matrix event (64 KiB in all): past
    /// `max_bytes` of text, the plain text is cut and the HTML becomes its
    /// escaped copy, so no tag is left open.
    pub fn limited(&self, max_bytes: usize) -> std::borrow::Cow<'_, Reply> {
        if self.plain.len() + self.html.len() <= max_bytes {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut end = (max_bytes / 3).min(self.plain.len());
        while !self.plain.is_char_boundary(end) {
            end -= 1;
        }
        let plain = format!("{}\n… (cut: too long for one message)", &self.plain[..end]);
        let html = format!("<pre>{}</pre>", escape(&plain));
        std::borrow::Cow::Owned(Reply { plain, html })
    }

    /// The `m.notice` content, replying to `in_reply_to` when given.
    pub fn content(&self, in_reply_to: Option<&str>) -> Value {
        let mut content = json!({
            "msgtype": "m.notice",
            "body": self.plain,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
            // Replies do not ping anyone.
            "m.mentions": {},
        });
        if let Some(event_id) = in_reply_to {
            content["m.relates_to"] = json!({ "m.in_reply_to": { "event_id": event_id } });
        }
        content
    }

    /// An edit (`m.replace`) of `original` that makes it read as this reply.
    pub fn edit_content(&self, original: &str) -> Value {
        let mut new_content = self.content(None);
        new_content.as_object_mut().expect("object").remove("m.mentions");
        json!({
            "msgtype": "m.notice",
            "body": format!("* {}", self.plain),
            "format": "org.matrix.custom.html",
            "formatted_body": format!("* {}", self.html),
            "m.new_content": new_content,
            "m.mentions": {},
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_html_carry_the_same_text() {
        let reply = Reply::new()
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
        let long = Reply::new().list((0..5000).map(|i| format!("mxc://hs/é{i}")));
        let cut = long.limited(48 * 1024);
        assert!(cut.plain.len() + cut.html.len() <= 48 * 1024, "{}", cut.plain.len() + cut.html.len());
        assert!(cut.plain.ends_with("(cut: too long for one message)"));
        assert!(cut.html.starts_with("<pre>") && cut.html.ends_with("</pre>"));
        let short = Reply::new().line("ok");
        assert_eq!(*short.limited(100), short);
    }

    #[test]
    fn replies_and_edits_have_matrix_shapes() {
        let reply = Reply::new().line("hi");
        let content = reply.content(Some("$cmd"));
        assert_eq!(content["msgtype"], "m.notice");
        assert_eq!(content["m.relates_to"]["m.in_reply_to"]["event_id"], "$cmd");
        let edit = reply.edit_content("$progress");
        assert_eq!(edit["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(edit["m.new_content"]["body"], "hi");
        assert!(edit["m.new_content"].get("m.relates_to").is_none());
    }
}
