//! `host demo`: a local web page with a drawing pad. Each digit drawn on it
//! is made into the 28x28 input ([`crate::demo::digit`]), classified by every
//! network on the host at once ([`crate::demo::predict`]) and, with a device
//! attached, profiled on the firmware: one request at a time to the
//! device, a newer drawing replacing one still waiting.
//!
//! HTTP (`tiny_http`; loopback only unless `--listen` says otherwise):
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /api/info` | `{nets, device, device_state}` |
//! | `POST /api/classify`, body a PNG, JPEG or PGM picture (at most [`MAX_BODY`] bytes) | `{input, host, job}`: the 784 input bytes, each network's [`HostAnswer`], the device job's id (`null` without a device) |
//! | `GET /api/device/ID` | `{state, error, answers}`: `queued`, `running`, `done` (with each network's [`DeviceAnswer`]), `replaced` (a newer drawing took its place), `failed` (with the error), `unknown` |
//!
//! A request the server cannot serve gets a 4xx status and `{error}` naming
//! what was wrong: an unknown path (404), a wrong method (405), a body too
//! large (413), a body that is not a picture (400).

pub mod digit;
pub mod predict;

use crate::error::{Error, Result};
use device::reference::Reference;
use device::Device;
use digit::Picture;
use predict::{DeviceAnswer, HostAnswer};
use serde::Serialize;
use shared::arch::IMAGE_PIXELS;
use shared::protocol::CostUnit;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use tiny_http::{Header, Method, Request, Response, Server};

/// The largest request body taken: a drawing pad's PNG is a few KB; a
/// photo of a digit a few MB.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Device jobs remembered for polling (older ones answer `unknown`).
const JOBS_KEPT: usize = 64;

/// Threads answering HTTP requests (the device has its own).
const HTTP_THREADS: usize = 4;

const PAGE: &str = include_str!("page.html");

/// Where a device job stands.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum JobState {
    Queued,
    Running,
    Done,
    Replaced,
    Failed,
}

#[derive(Clone, Debug, Serialize)]
struct Job {
    state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    answers: Vec<DeviceAnswer>,
}

/// A drawing waiting for the device.
struct Pending {
    id: u64,
    pixels: [u8; IMAGE_PIXELS],
    host: Vec<HostAnswer>,
}

/// What the HTTP threads and the device thread share.
struct State {
    refs: Vec<Reference>,
    /// The device's board and cost unit, if one is attached.
    device: Option<(String, CostUnit)>,
    /// Why the device stopped answering, once it has.
    gone: Mutex<Option<String>>,
    /// The one drawing waiting for the device (a newer one replaces it).
    next: Mutex<Option<Pending>>,
    wake: Condvar,
    jobs: Mutex<BTreeMap<u64, Job>>,
    last_id: Mutex<u64>,
}

impl State {
    fn set_job(&self, id: u64, job: Job) {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        jobs.insert(id, job);
        while jobs.len() > JOBS_KEPT {
            jobs.pop_first();
        }
    }
}

/// Serve the demo on `listen` until the process ends, with the networks of
/// `refs` and, if given, `device`. `ready` is called with the address
/// bound (the port may have been chosen by the system).
pub fn serve(
    listen: SocketAddr,
    refs: Vec<Reference>,
    mut device: Option<Device>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let server = Server::http(listen)
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Config(format!("{listen} is not an IP address")))?;
    let info = device.as_mut().map(Device::info).transpose()?;
    let state = Arc::new(State {
        refs,
        device: info.map(|i| (i.board, i.cost_unit)),
        gone: Mutex::new(None),
        next: Mutex::new(None),
        wake: Condvar::new(),
        jobs: Mutex::new(BTreeMap::new()),
        last_id: Mutex::new(0),
    });
    if let Some(device) = device {
        let state = Arc::clone(&state);
        std::thread::spawn(move || device_loop(device, &state));
    }
    ready(bound);
    let server = Arc::new(server);
    let workers: Vec<_> = (0..HTTP_THREADS)
        .map(|_| {
            let (server, state) = (Arc::clone(&server), Arc::clone(&state));
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(request, &state);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// Runs the device's jobs one at a time, the newest waiting one next.
fn device_loop(mut device: Device, state: &State) {
    let unit = state
        .device
        .as_ref()
        .map_or(CostUnit::Instructions, |d| d.1);
    loop {
        let job = {
            let mut next = state.next.lock().expect("queue lock");
            loop {
                if let Some(job) = next.take() {
                    break job;
                }
                next = state.wake.wait(next).expect("queue lock");
            }
        };
        if let Some(why) = state.gone.lock().expect("gone lock").clone() {
            state.set_job(
                job.id,
                Job {
                    state: JobState::Failed,
                    error: Some(why),
                    answers: Vec::new(),
                },
            );
            continue;
        }
        state.set_job(
            job.id,
            Job {
                state: JobState::Running,
                error: None,
                answers: Vec::new(),
            },
        );
        let answers: Result<Vec<DeviceAnswer>> = job
            .host
            .iter()
            .map(|h| predict::on_device(&mut device, unit, h, &job.pixels, true))
            .collect();
        let done = match answers {
            Ok(answers) => Job {
                state: JobState::Done,
                error: None,
                answers,
            },
            Err(e) => {
                let why = format!("the device is gone: {e}");
                *state.gone.lock().expect("gone lock") = Some(why.clone());
                Job {
                    state: JobState::Failed,
                    error: Some(why),
                    answers: Vec::new(),
                }
            }
        };
        state.set_job(job.id, done);
    }
}

fn json<T: Serialize>(status: u16, value: &T) -> Response<std::io::Cursor<Vec<u8>>> {
    let body = serde_json::to_vec(value).expect("plain data serialises");
    Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn error(status: u16, message: impl Into<String>) -> Response<std::io::Cursor<Vec<u8>>> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn handle(mut request: Request, state: &State) {
    let response = route(&mut request, state);
    // The client may be gone; there is no one to tell.
    let _ = request.respond(response);
}

fn route(request: &mut Request, state: &State) -> Response<std::io::Cursor<Vec<u8>>> {
    let url = request.url().split('?').next().unwrap_or("").to_owned();
    let method = request.method().clone();
    match (url.as_str(), method) {
        ("/", Method::Get) => Response::from_data(PAGE.as_bytes().to_vec())
            .with_header(header("Content-Type", "text/html; charset=utf-8")),
        ("/api/info", Method::Get) => json(200, &info(state)),
        ("/api/classify", Method::Post) => match read_body(request) {
            Ok(body) => classify(&body, state),
            Err(response) => response,
        },
        (path, Method::Get) if path.starts_with("/api/device/") => {
            let Ok(id) = path["/api/device/".len()..].parse::<u64>() else {
                return error(404, format!("no such job: {path}"));
            };
            let job = state.jobs.lock().expect("jobs lock").get(&id).cloned();
            match job {
                Some(job) => json(200, &job),
                None => json(
                    200,
                    &serde_json::json!({ "state": "unknown", "answers": [] }),
                ),
            }
        }
        ("/" | "/api/info" | "/api/classify", m) => {
            error(405, format!("{m} is not allowed on {url}"))
        }
        (path, m) if path.starts_with("/api/device/") => {
            error(405, format!("{m} is not allowed on {path}"))
        }
        (path, _) => error(404, format!("no such page: {path}")),
    }
}

fn info(state: &State) -> serde_json::Value {
    let nets: Vec<&str> = state.refs.iter().map(|r| r.net().name()).collect();
    let gone = state.gone.lock().expect("gone lock").clone();
    serde_json::json!({
        "nets": nets,
        "device": state.device.as_ref().map(|(board, unit)| serde_json::json!({ "board": board, "unit": unit.name() })),
        "device_state": match (&state.device, gone) {
            (None, _) => "none".to_owned(),
            (Some(_), None) => "ready".to_owned(),
            (Some(_), Some(why)) => why,
        },
    })
}

/// The request's body, or the error response: too large, or unreadable.
fn read_body(
    request: &mut Request,
) -> std::result::Result<Vec<u8>, Response<std::io::Cursor<Vec<u8>>>> {
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(error(413, format!("the picture is over {MAX_BODY} bytes")));
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body);
    match read {
        Err(e) => Err(error(400, format!("reading the request body: {e}"))),
        Ok(_) if body.len() > MAX_BODY => {
            Err(error(413, format!("the picture is over {MAX_BODY} bytes")))
        }
        Ok(_) => Ok(body),
    }
}

fn classify(body: &[u8], state: &State) -> Response<std::io::Cursor<Vec<u8>>> {
    let picture = match Picture::decode(body) {
        Ok(p) => p,
        Err(e) => return error(400, format!("the body is not a picture of a digit: {e}")),
    };
    let pixels = digit::mnist_input(&picture);
    let host = predict::on_host(&state.refs, &pixels);
    let job = state.device.as_ref().map(|_| {
        let id = {
            let mut last = state.last_id.lock().expect("id lock");
            *last += 1;
            *last
        };
        state.set_job(
            id,
            Job {
                state: JobState::Queued,
                error: None,
                answers: Vec::new(),
            },
        );
        let replaced = state.next.lock().expect("queue lock").replace(Pending {
            id,
            pixels,
            host: host.clone(),
        });
        if let Some(old) = replaced {
            state.set_job(
                old.id,
                Job {
                    state: JobState::Replaced,
                    error: None,
                    answers: Vec::new(),
                },
            );
        }
        state.wake.notify_one();
        id
    });
    json(
        200,
        &serde_json::json!({ "input": pixels.to_vec(), "host": host, "job": job }),
    )
}
