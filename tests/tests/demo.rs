//! `host demo --qemu` as a person uses it: the page opened in headless
//! Chromium, digits drawn on its pad with a finger and with the mouse, and the
//! answers the page shows read back: the host's and the firmware's, equal,
//! for every network. A screenshot of the page is saved. The server's
//! answers to bad requests are checked on a plain socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tests::browser::Browser;
use tests::{host_cli, host_exe, test_set};

/// MNIST test digit `i` as a PGM file, three times larger, dark on light.
fn pgm(i: usize) -> Vec<u8> {
    let digit = test_set().image(i);
    let mut out = b"P5\n84 84\n255\n".to_vec();
    out.extend((0..84 * 84).map(|j| 255 - digit[(j / 84 / 3) * 28 + (j % 84) / 3]));
    out
}

/// `host demo` running, and the address it serves.
struct Demo {
    child: Child,
    url: String,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(host_exe())
            .args(["demo", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so that QEMU goes when it is killed.
            .process_group(0)
            .spawn()
            .expect("start host demo");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let url = lines
            .find_map(|l| {
                l.ok()?
                    .strip_prefix("demo on ")?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            })
            .expect("host demo names its address");
        Demo { child, url }
    }

    /// `POST /api/classify` with a picture: the JSON answer.
    fn classify(&self, picture: &[u8]) -> serde_json::Value {
        let mut request = format!(
            "POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            picture.len()
        )
        .into_bytes();
        request.extend(picture);
        let (status, body) = self.raw(&request);
        assert!(status.contains(" 200 "), "{status} {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /api/device/ID` until the job is over: its final JSON.
    fn job(&self, id: u64) -> serde_json::Value {
        for _ in 0..600 {
            let (_, body) = self.raw(
                format!("GET /api/device/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if !matches!(v["state"].as_str(), Some("queued" | "running")) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("job {id} never ended");
    }

    /// Sends raw bytes and returns the status line and body.
    fn raw(&self, request: &[u8]) -> (String, String) {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        let status = reply.lines().next().unwrap_or("").to_owned();
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The pad's rectangle on the page: (left, top, width, height).
fn pad(browser: &mut Browser) -> (f64, f64, f64, f64) {
    let r = browser.eval("(() => { const r = document.getElementById('pad').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()").unwrap();
    let v: Vec<f64> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (v[0], v[1], v[2], v[3])
}

/// Draws a stroke through `points` given in pad coordinates 0..1, with
/// the mouse or (`finger`) a touch.
fn draw(browser: &mut Browser, points: &[(f64, f64)], finger: bool) {
    let (left, top, w, h) = pad(browser);
    let pts: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| (left + x * w, top + y * h))
        .collect();
    if finger {
        browser.touch_stroke(&pts).unwrap();
    } else {
        browser.stroke(&pts).unwrap();
    }
}

/// Each network's card once the device has answered: (net, host's class,
/// device's class, equal).
fn answers(browser: &mut Browser) -> Vec<(String, String, String, String)> {
    browser
        .wait_for(
            "[...document.querySelectorAll('section.net')].every(c => c.dataset.state === 'done')",
            Duration::from_secs(60),
        )
        .unwrap();
    let v = browser
        .eval("[...document.querySelectorAll('section.net')].map(c => [c.dataset.net, c.dataset.hostClass, c.dataset.deviceClass, c.dataset.equal])")
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |i: usize| c[i].as_str().unwrap_or("").to_owned();
            (s(0), s(1), s(2), s(3))
        })
        .collect()
}

#[test]
fn digits_drawn_in_chromium_are_classified_equally_by_host_and_firmware() {
    let demo = Demo::start(&["--qemu"]);
    let mut browser = Browser::launch(1280, 1000).unwrap_or_else(|e| panic!("{e}"));
    browser.navigate(&demo.url).unwrap();
    browser
        .wait_for(
            "document.body.dataset.ready === 'true'",
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(
        browser
            .eval("document.querySelectorAll('section.net').length")
            .unwrap(),
        3
    );

    // A one: a single stroke of a finger down the middle.
    draw(
        &mut browser,
        &(0..=12)
            .map(|i| (0.5, 0.15 + 0.7 * i as f64 / 12.0))
            .collect::<Vec<_>>(),
        true,
    );
    for (net, host, device, equal) in answers(&mut browser) {
        assert_eq!(
            (host.as_str(), device.as_str(), equal.as_str()),
            ("1", "1", "true"),
            "{net}"
        );
    }

    // A zero: an ellipse in one stroke of the mouse, after clearing the pad.
    browser
        .eval("document.getElementById('clear').click()")
        .unwrap();
    let ellipse: Vec<(f64, f64)> = (0..=36)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / 36.0;
            (0.5 + 0.22 * a.sin(), 0.5 - 0.32 * a.cos())
        })
        .collect();
    draw(&mut browser, &ellipse, false);
    for (net, host, device, equal) in answers(&mut browser) {
        assert_eq!(
            (host.as_str(), device.as_str(), equal.as_str()),
            ("0", "0", "true"),
            "{net}"
        );
    }
    // The page shows the device's cost and profile.
    let text = browser.eval("document.body.innerText").unwrap();
    let text = text.as_str().unwrap();
    assert!(
        text.contains("equal to the host's") && text.contains("instructions per inference"),
        "{text}"
    );
    assert!(
        browser
            .eval("document.querySelectorAll('.profile .bar-row').length")
            .unwrap()
            .as_u64()
            .unwrap()
            > 10
    );

    // Drawings sent while the device is busy: the host answers each at
    // once; the device runs the first, and of those waiting behind it only
    // the newest (the others are replaced).
    let jobs: Vec<u64> = (0..4)
        .map(|i| {
            let v = demo.classify(&pgm(i));
            assert_eq!(v["host"][0]["class"], test_set().labels[i], "{v}");
            v["job"].as_u64().unwrap()
        })
        .collect();
    let states: Vec<String> = jobs
        .iter()
        .map(|&id| demo.job(id)["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["done", "replaced", "replaced", "done"]);
    let last = demo.job(jobs[3]);
    for a in last["answers"].as_array().unwrap() {
        assert_eq!(
            (a["class"].as_u64(), a["equal"].as_bool()),
            (Some(u64::from(test_set().labels[3])), Some(true)),
            "{a}"
        );
    }

    let png = browser.screenshot().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn bad_requests_get_a_4xx_and_a_message() {
    let demo = Demo::start(&[]);
    let (status, body) = demo.raw(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\ngarbage");
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("not a PNG, JPEG or PGM image"), "{body}");
    let (status, body) = demo.raw(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n");
    assert!(
        status.contains(" 413 ") && body.contains("over"),
        "{status} {body}"
    );
    let (status, body) =
        demo.raw(b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        status.contains(" 404 ") && body.contains("no such page"),
        "{status} {body}"
    );
    let (status, _) =
        demo.raw(b"DELETE /api/classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(status.contains(" 405 "), "{status}");
    let (status, _) = demo.raw(b"this is not HTTP\r\n\r\n");
    assert!(status.contains(" 400 ") || status.is_empty(), "{status}");
    // Still serving, and without a device the answers are the host's alone.
    let (status, body) =
        demo.raw(b"GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        status.contains(" 200 ") && body.contains("\"device_state\":\"none\""),
        "{status} {body}"
    );
}

#[test]
fn predict_with_qemu_shows_the_firmware_answer_beside_the_host_one() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("digit{i}.pgm"));
            std::fs::write(&path, pgm(i)).unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let args: Vec<&str> = ["predict", "--qemu", "--json"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let v: serde_json::Value = serde_json::from_str(host_cli(&args).trim()).unwrap();
    for (i, image) in v["images"].as_array().unwrap().iter().enumerate() {
        let (host, device) = (
            image["host"].as_array().unwrap(),
            image["device"].as_array().unwrap(),
        );
        assert_eq!(device.len(), host.len());
        for (h, d) in host.iter().zip(device) {
            assert_eq!(
                (&h["class"], &h["logits"]),
                (&d["class"], &d["logits"]),
                "{}",
                h["net"]
            );
            assert_eq!(d["equal"], true);
            assert_eq!(d["unit"], "instructions");
            assert!(d["cost"].as_u64().unwrap() > 1_000_000);
            assert_eq!(h["class"], test_set().labels[i]);
        }
    }
}
