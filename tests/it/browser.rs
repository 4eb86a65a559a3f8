//! A headless Chromium for tests that look at a page as a person would:
//! chromedriver (Debian's `chromium-driver`) on a free port on 127.0.0.1,
//! driven over WebDriver with fantoccini. `.ci/run` installs both packages.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

tests! {
    plain: [
        the_browser_renders_a_local_page,
    ],
    sync: [
        a_blank_png_is_refused,
    ],
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to listen, and Chromium to start a session.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A screenshot is blank unless at least this share of its pixels differ
/// from its most common colour …
const MIN_CONTENT_SHARE: f64 = 0.02;
/// … and it has more than this many distinct colours.
const MIN_DISTINCT_COLOURS: usize = 8;

/// A headless Chromium behind its own chromedriver. Dropping it kills
/// chromedriver and the browser; [`Browser::close`] ends the session first.
pub struct Browser {
    client: Option<Client>,
    driver: tokio::process::Child,
    /// chromedriver's process group (it is started as the leader of its own),
    /// which Chromium's processes join: killed whole on drop.
    driver_group: Option<u32>,
    /// Chromium's profile (--user-data-dir) and chromedriver's log.
    dir: tempfile::TempDir,
}

/// Debian's packages that provide the two binaries, installed on first use
/// when missing, as the testbed installs Synapse, so that `cargo test` needs
/// nothing set up by hand (apt-get, as root). `.ci/run` installs them first.
const PACKAGES: &str = "chromium chromium-driver fonts-liberation";

async fn ensure_installed() -> anyhow::Result<()> {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let present = || Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    INSTALLED
        .get_or_try_init(|| async {
            if present() {
                return Ok(());
            }
            eprintln!("{CHROMIUM} or {CHROMEDRIVER} is missing: installing Debian's {PACKAGES} (once)");
            let script = format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                 -o DPkg::Lock::Timeout=300 --no-install-recommends {PACKAGES}"
            );
            let status = tokio::process::Command::new("sh").arg("-c").arg(&script).status().await;
            if !matches!(status, Ok(status) if status.success()) || !present() {
                bail!(
                    "the browser tests need {CHROMIUM} and {CHROMEDRIVER} (Debian's chromium and chromium-driver) \
                     and installing them failed ({status:?}); as root: {script}"
                );
            }
            Ok(())
        })
        .await
        .copied()
}

impl Browser {
    /// Starts /usr/bin/chromedriver on a free port and a headless Chromium
    /// (/usr/bin/chromium) with a fresh profile in a temporary folder.
    pub async fn start() -> anyhow::Result<Browser> {
        ensure_installed().await?;
        let dir = tempfile::Builder::new().prefix("housekeep-browser-").tempdir()?;
        let port = housekeep::testbed::free_port()?;
        let log_path = dir.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path)?;
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let driver_group = driver.id();
        let mut browser = Browser { client: None, driver, driver_group, dir };
        let client = browser.connect(port).await.with_context(|| {
            format!("starting headless Chromium through chromedriver; its log:\n{}", browser.driver_log())
        })?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// Waits for chromedriver to listen, then opens a session with a headless Chromium.
    async fn connect(&mut self, port: u16) -> anyhow::Result<Client> {
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = self.driver.try_wait()? {
                bail!("chromedriver exited ({status}) before listening on port {port}");
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not listen on port {port} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = self.dir.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--metrics-recording-only",
                    "--password-store=basic",
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            START_TIMEOUT,
            ClientBuilder::new(connector).capabilities(capabilities).connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .with_context(|| format!("no WebDriver session within {START_TIMEOUT:?}"))??;
        Ok(client)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a started browser has a session")
    }

    /// chromedriver's log so far (for error messages).
    pub fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client().goto(url).await.with_context(|| format!("opening {url}"))
    }

    /// The page's visible text (the body element's rendered text, like `innerText`).
    pub async fn text(&self) -> anyhow::Result<String> {
        // Read in one script: a live refresh may swap the page's parts
        // between two WebDriver calls (a "stale element").
        let text = self.execute("return document.body ? document.body.innerText : '';").await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Waits (up to `timeout`) until the visible text contains `needle`; returns the text.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            // The page may be between two documents: take an error as "not yet".
            let text = self.text().await;
            match text {
                Ok(text) if text.contains(needle) => return Ok(text),
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(text) => {
                    let url = self.current_url().await.unwrap_or_default();
                    bail!("no {needle:?} on {url} within {timeout:?}; its text:\n{}", shorten(&text, 2000))
                }
                Err(e) => return Err(e.context(format!("waiting for {needle:?}"))),
            }
        }
    }

    /// Clicks the first element matching a CSS selector.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.client().find(Locator::Css(css)).await.with_context(|| format!("finding {css:?}"))?;
        element.click().await.with_context(|| format!("clicking {css:?}"))
    }

    /// The text of every element matching a CSS selector, in document order.
    pub async fn texts(&self, css: &str) -> anyhow::Result<Vec<String>> {
        // One script for all of them, for the same reason as `text`.
        let script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim());";
        let texts = self
            .client()
            .execute(script, vec![serde_json::Value::from(css)])
            .await
            .with_context(|| format!("reading the texts of {css:?}"))?;
        serde_json::from_value(texts).with_context(|| format!("the texts of {css:?}"))
    }

    /// Runs a script in the page (WebDriver's `execute`); its return value.
    pub async fn execute(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        self.client().execute(script, Vec::new()).await.with_context(|| format!("running {script:?}"))
    }

    /// The value of the current site's cookie `name` (`HttpOnly` ones too:
    /// WebDriver sees what the page's scripts cannot).
    pub async fn cookie(&self, name: &str) -> anyhow::Result<Option<String>> {
        let cookies = self.client().get_all_cookies().await.context("reading the cookies")?;
        Ok(cookies.into_iter().find(|cookie| cookie.name() == name).map(|cookie| cookie.value().to_owned()))
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        Ok(self.client().current_url().await?.to_string())
    }

    /// Screenshot of the viewport as PNG, written to `path` (parent folders
    /// created) even when blank, so that it can be looked at; an error if
    /// it is blank (see [`PngStats::is_blank`]). Returns the PNG bytes.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<Vec<u8>> {
        let png = self.client().screenshot().await.context("taking a screenshot")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, &png).with_context(|| format!("writing {}", path.display()))?;
        let stats = PngStats::of(&png)?;
        if stats.is_blank() {
            bail!("the screenshot {} is blank: {stats:?}", path.display());
        }
        Ok(png)
    }

    /// Ends the WebDriver session (Chromium quits) and kills chromedriver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let ended = match self.client.take() {
            Some(client) => client.close().await.context("ending the WebDriver session"),
            None => Ok(()),
        };
        self.driver.kill().await.context("killing chromedriver")?;
        ended
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium outlives a killed chromedriver: kill the whole process group.
        if let Some(group) = self.driver_group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.start_kill();
    }
}

fn shorten(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Where tests put their screenshots: `target/test-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, wherever the target dir is.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("test-screenshots")
}

/// What a PNG's pixels look like, to tell a blank image from one with content.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PngStats {
    pub width: u32,
    pub height: u32,
    /// How many distinct colours (RGBA) it has.
    pub distinct_colours: usize,
    /// The share of pixels whose colour is not the most common one.
    pub content_share: f64,
}

impl PngStats {
    pub fn of(png: &[u8]) -> anyhow::Result<PngStats> {
        let mut decoder = png::Decoder::new(png);
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().context("not a PNG")?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).context("decoding the PNG")?;
        let data = &buf[..frame.buffer_size()];
        let mut counts: HashMap<u32, u64> = HashMap::new();
        let channels = frame.color_type.samples();
        for row in data.chunks_exact(frame.line_size) {
            for pixel in row[..frame.width as usize * channels].chunks_exact(channels) {
                let [r, g, b, a] = match *pixel {
                    [v] => [v, v, v, 255],
                    [v, a] => [v, v, v, a],
                    [r, g, b] => [r, g, b, 255],
                    [r, g, b, a] => [r, g, b, a],
                    _ => bail!("unexpected PNG colour type {:?}", frame.color_type),
                };
                *counts.entry(u32::from_be_bytes([r, g, b, a])).or_default() += 1;
            }
        }
        let pixels = u64::from(frame.width) * u64::from(frame.height);
        let most_common = counts.values().copied().max().unwrap_or(0);
        Ok(PngStats {
            width: frame.width,
            height: frame.height,
            distinct_colours: counts.len(),
            content_share: if pixels == 0 { 0.0 } else { (pixels - most_common) as f64 / pixels as f64 },
        })
    }

    /// Blank: fewer than 2% of the pixels differ from the most common colour,
    /// or it has no more than a handful of colours.
    pub fn is_blank(&self) -> bool {
        self.content_share < MIN_CONTENT_SHARE || self.distinct_colours <= MIN_DISTINCT_COLOURS
    }
}

/// Whether a PNG is blank (see [`PngStats::is_blank`]).
pub fn is_blank_png(png: &[u8]) -> anyhow::Result<bool> {
    Ok(PngStats::of(png)?.is_blank())
}

/// An RGB PNG of `width`×`height` with the given colour at each pixel.
fn png_of(width: u32, height: u32, colour: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            data.extend_from_slice(&colour(x, y));
        }
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    png
}

fn a_blank_png_is_refused() {
    let white = png_of(200, 100, |_, _| [255, 255, 255]);
    assert!(is_blank_png(&white).unwrap());
    let stats = PngStats::of(&white).unwrap();
    assert_eq!((stats.width, stats.height, stats.distinct_colours), (200, 100, 1));
    assert_eq!(stats.content_share, 0.0);

    // A dot of a few colours on white: too little to be a page.
    let speck = png_of(200, 100, |x, y| if x < 5 && y < 5 { [(x * 40) as u8, (y * 40) as u8, 0] } else { [255; 3] });
    assert!(is_blank_png(&speck).unwrap());

    // Two colours over half the image each: not blank by share, but too few colours.
    let halves = png_of(200, 100, |x, _| if x < 100 { [0, 0, 0] } else { [255; 3] });
    assert!(is_blank_png(&halves).unwrap());

    // A gradient box on white: content.
    let content = png_of(200, 100, |x, y| {
        if (20..120).contains(&x) && (20..80).contains(&y) { [x as u8, y as u8, 128] } else { [255; 3] }
    });
    let stats = PngStats::of(&content).unwrap();
    assert!(!stats.is_blank(), "{stats:?}");
    assert!(!is_blank_png(&content).unwrap());

    assert!(is_blank_png(b"not a png").is_err());
}

/// Serves two tiny pages on 127.0.0.1: `/` with a link to `/second`.
async fn serve_smoke_pages() -> anyhow::Result<String> {
    use axum::response::Html;
    use axum::routing::get;

    const STYLE: &str = "body { font: 16px sans-serif; margin: 2em; } \
        .box { width: 400px; height: 200px; background: linear-gradient(90deg, #2a6, #26a); } \
        a { display: inline-block; padding: 1em 2em; background: #333; color: #fff; }";
    let first = format!(
        "<!doctype html><html><head><title>Smoke</title><style>{STYLE}</style></head><body>\
         <h1>Housekeep browser smoke test</h1><div class=box></div>\
         <p><a id=next href=/second>Next page</a></p></body></html>"
    );
    let second = format!(
        "<!doctype html><html><head><title>Second</title><style>{STYLE}</style></head><body>\
         <h1>Second page</h1><div class=box></div>\
         <ul><li>alpha</li><li>beta</li><li>gamma</li></ul></body></html>"
    );
    let app = axum::Router::new()
        .route("/", get(move || async move { Html(first) }))
        .route("/second", get(move || async move { Html(second) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

async fn the_browser_renders_a_local_page() -> anyhow::Result<()> {
    let base = serve_smoke_pages().await?;
    let browser = Browser::start().await?;

    browser.goto(&format!("{base}/")).await?;
    let text = browser.text().await?;
    assert!(text.contains("Housekeep browser smoke test"), "{text}");
    assert!(text.contains("Next page"), "{text}");

    browser.click("a#next").await?;
    let text = browser.wait_for_text("Second page", Duration::from_secs(10)).await?;
    assert!(!text.contains("Next page"), "{text}");
    assert_eq!(browser.current_url().await?, format!("{base}/second"));
    assert_eq!(browser.texts("li").await?, ["alpha", "beta", "gamma"]);
    assert_eq!(browser.texts("table").await?, Vec::<String>::new());

    let path = screenshot_dir().join("smoke.png");
    let png = browser.screenshot(&path).await?;
    let stats = PngStats::of(&png)?;
    // --window-size is the window's: headless Chromium keeps room for its
    // (invisible) toolbars, so the viewport is 1280×757 for 1280×900.
    assert_eq!(stats.width, 1280, "{stats:?}");
    assert!((600..=900).contains(&stats.height), "{stats:?}");
    assert!(!stats.is_blank(), "{stats:?}");
    assert_eq!(std::fs::read(&path)?, png);

    browser.close().await
}
