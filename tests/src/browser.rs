//! Headless Chromium driven over the Chrome DevTools Protocol: a page is
//! opened, scripts evaluated in it, the mouse moved and a screenshot taken.
//!
//! The protocol is JSON over a WebSocket (`tungstenite`, synchronous):
//! Chromium prints its endpoint on stderr, a page target is created and
//! attached to, and every command goes to that session. This is all the
//! tests need of a browser driver, without an async runtime or a
//! WebDriver server.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The browser binary: `$CHROMIUM`, or `chromium` on `PATH` (Debian's).
fn binary() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| "chromium".into(), PathBuf::from)
}

/// How long one command may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page, killed when dropped.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (`width x height` window) with an empty page.
    pub fn launch(width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("temporary profile: {e}"))?;
        let mut child = Command::new(binary())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--no-default-browser-check", "--hide-scrollbars", "--remote-debugging-port=0"])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {} ({e}): install Chromium (Debian/Ubuntu: `apt-get install --no-install-recommends chromium`) \
                     or name the binary in $CHROMIUM",
                    binary().display()
                )
            })?;
        // Chromium names its DevTools endpoint on stderr; keep draining it.
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                return Err("Chromium did not open its DevTools endpoint".into());
            }
        };
        let (ws, _) =
            tungstenite::connect(&url).map_err(|e| format!("connecting to {url}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
        }
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }))?;
        let target = target["targetId"]
            .as_str()
            .ok_or("no target id")?
            .to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_owned();
        browser.call("Page.enable", json!({}))?;
        Ok(browser)
    }

    /// Sends one command (to the page, once attached) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("{method}: {e}"))?;
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let text = match self.ws.read().map_err(|e| format!("{method}: {e}"))? {
                Message::Text(t) => t,
                _ => continue,
            };
            let reply: Value =
                serde_json::from_str(text.as_str()).map_err(|e| format!("{method}: {e}"))?;
            // Events (no id) and other replies are skipped.
            if reply["id"].as_u64() == Some(id) {
                if let Some(e) = reply.get("error") {
                    return Err(format!("{method}: {e}"));
                }
                return Ok(reply["result"].clone());
            }
        }
        Err(format!("{method}: no reply within {TIMEOUT:?}"))
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({ "url": url }))?;
        self.wait_for("document.readyState === 'complete'", TIMEOUT)
    }

    /// The value of a JavaScript expression (a promise is awaited).
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("`{expression}` threw: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until `expression` is true.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression)? == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("`{expression}` not true within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses the left button at the first point, moves through the
    /// others and releases it at the last: one stroke of a pen.
    pub fn stroke(&mut self, points: &[(f64, f64)]) -> Result<(), String> {
        let mouse = |kind: &str, (x, y): (f64, f64), buttons: u32| json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1 });
        let (first, last) = (points[0], points[points.len() - 1]);
        self.call("Input.dispatchMouseEvent", mouse("mousePressed", first, 1))?;
        for &p in &points[1..] {
            self.call("Input.dispatchMouseEvent", mouse("mouseMoved", p, 1))?;
        }
        self.call("Input.dispatchMouseEvent", mouse("mouseReleased", last, 0))?;
        Ok(())
    }

    /// The same stroke with a finger: one touch point pressed at the first
    /// point, moved through the others, lifted at the last.
    pub fn touch_stroke(&mut self, points: &[(f64, f64)]) -> Result<(), String> {
        let touch = |kind: &str, pts: &[(f64, f64)]| {
            let pts: Vec<Value> = pts
                .iter()
                .map(|&(x, y)| json!({ "x": x, "y": y, "id": 1 }))
                .collect();
            json!({ "type": kind, "touchPoints": pts })
        };
        self.call(
            "Emulation.setTouchEmulationEnabled",
            json!({ "enabled": true, "maxTouchPoints": 1 }),
        )?;
        self.call(
            "Input.dispatchTouchEvent",
            touch("touchStart", &points[..1]),
        )?;
        for &p in &points[1..] {
            self.call("Input.dispatchTouchEvent", touch("touchMove", &[p]))?;
        }
        self.call("Input.dispatchTouchEvent", touch("touchEnd", &[]))?;
        Ok(())
    }

    /// A PNG screenshot of the page.
    pub fn screenshot(&mut self) -> Result<Vec<u8>, String> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        data_encoding::BASE64
            .decode(data.as_bytes())
            .map_err(|e| format!("screenshot: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
