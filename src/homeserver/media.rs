//! Media through the Client-Server API: upload (charts) and the
//! authenticated download the media worker streams through its hash.

use ruma::api::client::media::create_content;

use super::{HomeserverClient, HsError};

impl HomeserverClient {
    /// Uploads a file as this client's user; returns its `mxc://` URI.
    pub async fn upload(&self, bytes: Vec<u8>, content_type: &str, filename: &str) -> Result<String, HsError> {
        let mut request = create_content::v3::Request::new(bytes);
        request.content_type = Some(content_type.to_owned());
        request.filename = Some(filename.to_owned());
        Ok(self.call(request).await?.content_uri.to_string())
    }

    /// Starts downloading a media as the bot (authenticated media,
    /// `GET /_matrix/client/v1/media/download/{server}/{id}`), within
    /// `timeout` for the whole download. One attempt: the media queue
    /// decides when to try again.
    pub async fn download_media(
        &self,
        server_name: &str,
        media_id: &str,
        timeout: std::time::Duration,
    ) -> Result<reqwest::Response, HsError> {
        let mut url = self.url(&["_matrix", "client", "v1", "media", "download", server_name, media_id]);
        // Media created but not uploaded yet: an answer (M_NOT_YET_UPLOADED)
        // at once, rather than a download slot held for Synapse's 20 s.
        url.query_pairs_mut().append_pair("timeout_ms", "1000");
        let response =
            self.http.get(url).bearer_auth(&self.token).timeout(timeout).send().await.map_err(HsError::Transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(HsError::from_response(response).await)
    }
}
