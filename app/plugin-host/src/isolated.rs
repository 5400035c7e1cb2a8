//! Isolated mode: a component hosted in a child process (`rlvr-studio plugin-host LIB`) and
//! spoken to over stdin/stdout with length-prefixed JSON frames (u32 little-endian length, then
//! the JSON document). A crash (segfault, abort) or a missed deadline kills only the child: the
//! call returns an error, and the next call starts a new child and instantiates the component
//! again.
//!
//! Requests: `{"op":"instantiate","kind":…,"name":…,"params_json":…}` first, then `score`,
//! `transform` or `advantages`; every response is `{"Ok": value}` or `{"Err": message}`.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use rlvr_core::extensions::{
    AlgoBatch, AlgoOutput, ComponentKind, ComponentScore, Instance, RewardComponent, ScoreItem,
    TokenAlgorithm, TokenSampler,
};
use serde::{Deserialize, Serialize};

/// Largest frame accepted (guards against a corrupted length).
const MAX_FRAME: usize = 1 << 30;

/// A completion to score, owned (for the wire).
#[derive(Serialize, Deserialize)]
struct WireItem {
    prompt: String,
    completion: String,
    answer: String,
    meta: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Instantiate {
        kind: ComponentKind,
        name: String,
        params_json: String,
    },
    Score {
        items: Vec<WireItem>,
    },
    Transform {
        logits: Vec<f32>,
        position: usize,
        generated: Vec<u32>,
    },
    Advantages {
        batch: AlgoBatch,
    },
}

type Reply = Result<serde_json::Value, String>;

fn write_frame(w: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_bytes(w, &bytes, MAX_FRAME)
}

/// Writes one frame; a frame over `max` bytes is refused before anything is written (the
/// reader would refuse it, and a length over 4 GiB would not fit the prefix).
fn write_bytes(w: &mut impl Write, bytes: &[u8], max: usize) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|_| bytes.len() <= max)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "frame of {} bytes is too large (at most {max})",
                bytes.len()
            ))
        })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)?;
    w.flush()
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    read_frame_max(r, MAX_FRAME)
}

/// Reads one frame; `None` at a clean end of input (no byte of a new frame).
fn read_frame_max(r: &mut impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the input ended inside a frame's length",
                ))
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > max {
        return Err(std::io::Error::other(format!(
            "frame of {n} bytes is too large (at most {max})"
        )));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// Serves one component of the library at `lib` over `input`/`output` until `input` closes.
pub fn serve(lib: &Path, input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    let plugin = crate::check(lib).map_err(|e| e.to_string())?;
    let mut instance: Option<Instance> = None;
    while let Some(frame) = read_frame(input).map_err(|e| format!("reading a request: {e}"))? {
        let reply: Reply = match serde_json::from_slice::<Request>(&frame) {
            Err(e) => Err(format!("bad request: {e}")),
            Ok(Request::Instantiate {
                kind,
                name,
                params_json,
            }) => crate::inproc::instantiate(
                plugin.module,
                kind,
                &name,
                &params_json,
                Duration::from_secs(u64::from(u32::MAX)),
                &crate::inproc::Origin {
                    plugin: &plugin.manifest.name,
                    lib,
                },
            )
            .map(|i| {
                instance = Some(i);
                serde_json::Value::Null
            }),
            Ok(req) => handle(instance.as_ref(), req),
        };
        write_frame(output, &reply).map_err(|e| format!("writing a reply: {e}"))?;
    }
    Ok(())
}

fn to_value<T: Serialize>(v: T) -> Reply {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

fn handle(instance: Option<&Instance>, req: Request) -> Reply {
    match (instance, req) {
        (None, _) => Err("no component instantiated".into()),
        (Some(Instance::Reward(r)), Request::Score { items }) => {
            let borrowed: Vec<ScoreItem<'_>> = items
                .iter()
                .map(|i| ScoreItem {
                    prompt: &i.prompt,
                    completion: &i.completion,
                    answer: &i.answer,
                    meta: &i.meta,
                })
                .collect();
            // JSON has no NaN: a non-finite score is reported here as the error it is.
            let scores: Vec<Result<ComponentScore, String>> = r
                .score_batch(&borrowed)
                .into_iter()
                .map(|x| match x {
                    Ok(s) if !s.score.is_finite() => {
                        Err(format!("returned a non-finite score ({})", s.score))
                    }
                    other => other,
                })
                .collect();
            to_value(scores)
        }
        (
            Some(Instance::Sampler(s)),
            Request::Transform {
                mut logits,
                position,
                generated,
            },
        ) => s
            .transform(&mut logits, position, &generated)
            .and_then(|()| {
                // JSON has no infinities: a masked token (-inf) travels as the lowest finite value.
                for x in &mut logits {
                    if *x == f32::NEG_INFINITY {
                        *x = f32::MIN;
                    }
                }
                to_value(logits)
            }),
        (Some(Instance::Algorithm(a)), Request::Advantages { batch }) => {
            a.compute(&batch).and_then(to_value)
        }
        _ => Err("request does not match the component's kind".into()),
    }
}

/// The child's entry point: serves on stdin/stdout. The protocol gets a private copy of the
/// stdout descriptor ([`private_stdout`]), so a plugin that prints cannot corrupt the frames.
pub fn serve_stdio(lib: &Path) -> Result<(), String> {
    let out = private_stdout().map_err(|e| format!("cannot set up the protocol pipe: {e}"))?;
    let mut out = std::io::BufWriter::new(out);
    let mut input = BufReader::new(std::io::stdin());
    serve(lib, &mut input, &mut out)
}

/// Takes the process's standard output for the caller alone: returns a handle on a copy of
/// descriptor 1 and points descriptor 1 at stderr. From then on whatever anything else in the
/// process prints to stdout (`println!` in plugin code, C `printf`) lands on stderr, and only
/// the caller writes to the real stdout. Call it once, early, before other threads print.
/// Elsewhere than on Unix it returns the ordinary stdout (no redirection).
pub fn private_stdout() -> std::io::Result<Box<dyn Write + Send>> {
    // Anything already buffered belongs to the real stdout.
    std::io::stdout().flush()?;
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd as _;
        // SAFETY: dup/dup2 on the process's own standard descriptors; the new descriptor is
        // owned by the File from here on and closed only by it.
        unsafe {
            let fd = libc::dup(1);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let file = std::fs::File::from_raw_fd(fd);
            if libc::dup2(2, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Box::new(file))
        }
    }
    #[cfg(not(unix))]
    {
        Ok(Box::new(std::io::stdout()))
    }
}

// ---------------------------------------------------------------------------------------------
// The parent side.

struct Proc {
    child: Child,
    stdin: ChildStdin,
    frames: Receiver<Option<Vec<u8>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writing to a child that died raises SIGPIPE in the writing thread, and the binary keeps
/// SIGPIPE's default action (ending the process) for its `| head` use. Blocking it in the
/// threads that talk to children turns it into an `EPIPE` error on the write instead.
fn block_sigpipe() {
    #[cfg(unix)]
    {
        thread_local! {
            static BLOCKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if BLOCKED.with(|b| b.replace(true)) {
            return;
        }
        // SAFETY: changes only this thread's signal mask, with a properly initialised set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// A component hosted in a child process.
struct Isolated {
    program: PathBuf,
    lib: PathBuf,
    kind: ComponentKind,
    name: String,
    params_json: String,
    deadline: Duration,
    proc: Mutex<Option<Proc>>,
}

fn describe_exit(child: &mut Child) -> String {
    match child.wait() {
        Ok(s) => describe_status(s),
        Err(e) => format!("its status is unknown ({e})"),
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            let name = match sig {
                libc::SIGILL => " (SIGILL)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGFPE => " (SIGFPE)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGSEGV => " (SIGSEGV: the plugin crashed)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    format!("exited with {status}")
}

impl Isolated {
    fn start(&self) -> Result<Proc, String> {
        let mut child = Command::new(&self.program)
            .arg("plugin-host")
            .arg(&self.lib)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err("child process has no pipes".into()),
        };
        let (tx, frames) = bounded(1);
        std::thread::Builder::new()
            .name(format!("plugin-pipe-{}", self.name))
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                loop {
                    let f = read_frame(&mut r).ok().flatten();
                    let end = f.is_none();
                    if tx.send(f).is_err() || end {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start a pipe thread: {e}"))?;
        let mut p = Proc {
            child,
            stdin,
            frames,
        };
        let req = Request::Instantiate {
            kind: self.kind,
            name: self.name.clone(),
            params_json: self.params_json.clone(),
        };
        self.exchange(&mut p, &req)?;
        Ok(p)
    }

    fn exchange(&self, p: &mut Proc, req: &Request) -> Reply {
        block_sigpipe();
        if write_frame(&mut p.stdin, req).is_err() {
            return Err(format!("plugin process {}", describe_exit(&mut p.child)));
        }
        match p.frames.recv_timeout(self.deadline) {
            Ok(Some(bytes)) => serde_json::from_slice::<Reply>(&bytes)
                .map_err(|e| format!("bad reply from the plugin process: {e}"))?,
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                Err(format!("plugin process {}", describe_exit(&mut p.child)))
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = p.child.kill();
                Err(format!(
                    "missed its deadline of {} ms; the plugin process was killed and will be \
                     restarted",
                    self.deadline.as_millis()
                ))
            }
        }
    }

    /// One call; a dead or stuck child is dropped (killed) and restarted on the next call.
    fn call(&self, req: &Request) -> Reply {
        let mut guard = self
            .proc
            .lock()
            .map_err(|_| "plugin process lock poisoned")?;
        let mut p = match guard.take() {
            Some(p) => p,
            None => self.start()?,
        };
        let r = self.exchange(&mut p, req);
        let alive = matches!(p.child.try_wait(), Ok(None));
        if alive {
            *guard = Some(p);
        }
        r
    }
}

pub(crate) fn instantiate(
    program: &Path,
    lib: &Path,
    kind: ComponentKind,
    name: &str,
    params_json: &str,
    deadline: Duration,
) -> Result<Instance, String> {
    let iso = Isolated {
        program: program.to_path_buf(),
        lib: lib.to_path_buf(),
        kind,
        name: name.to_string(),
        params_json: params_json.to_string(),
        deadline,
        proc: Mutex::new(None),
    };
    // Start now so that a constructor error is a setup error, not a per-call one.
    let p = iso.start()?;
    if let Ok(mut g) = iso.proc.lock() {
        *g = Some(p);
    }
    let iso = Arc::new(iso);
    Ok(match kind {
        ComponentKind::Verifier | ComponentKind::Rubric => Instance::Reward(iso),
        ComponentKind::Sampler => Instance::Sampler(iso),
        ComponentKind::Algorithm => Instance::Algorithm(iso),
    })
}

impl RewardComponent for Isolated {
    fn score_batch(&self, items: &[ScoreItem<'_>]) -> Vec<Result<ComponentScore, String>> {
        let n = items.len();
        let req = Request::Score {
            items: items
                .iter()
                .map(|i| WireItem {
                    prompt: i.prompt.into(),
                    completion: i.completion.into(),
                    answer: i.answer.into(),
                    meta: i.meta.clone(),
                })
                .collect(),
        };
        match self.call(&req).and_then(|v| {
            serde_json::from_value::<Vec<Result<ComponentScore, String>>>(v)
                .map_err(|e| e.to_string())
        }) {
            Ok(v) => v,
            Err(e) => vec![Err(e); n],
        }
    }
}

impl TokenSampler for Isolated {
    fn transform(
        &self,
        logits: &mut [f32],
        position: usize,
        generated: &[u32],
    ) -> Result<(), String> {
        let req = Request::Transform {
            logits: logits.to_vec(),
            position,
            generated: generated.to_vec(),
        };
        let out: Vec<f32> = self
            .call(&req)
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))?;
        if out.len() != logits.len() {
            return Err(format!(
                "returned {} logits for {}",
                out.len(),
                logits.len()
            ));
        }
        logits.copy_from_slice(&out);
        Ok(())
    }
}

impl TokenAlgorithm for Isolated {
    fn compute(&self, batch: &AlgoBatch) -> Result<AlgoOutput, String> {
        let req = Request::Advantages {
            batch: batch.clone(),
        };
        self.call(&req)
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &serde_json::json!({"a": [1, 2, 3]})).unwrap();
        write_frame(&mut buf, &"second").unwrap();
        write_bytes(&mut buf, b"", MAX_FRAME).unwrap();
        // Length prefix: u32 little-endian, then the JSON text.
        assert_eq!(&buf[..4], &13u32.to_le_bytes());
        assert_eq!(&buf[4..17], br#"{"a":[1,2,3]}"#);
        let mut r = buf.as_slice();
        let a: serde_json::Value =
            serde_json::from_slice(&read_frame(&mut r).unwrap().unwrap()).unwrap();
        assert_eq!(a, serde_json::json!({"a": [1, 2, 3]}));
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), br#""second""#);
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"");
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_frames_are_errors_not_a_clean_end() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &"hello").unwrap();
        // Inside the body.
        let e = read_frame(&mut &buf[..buf.len() - 1]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        // Inside the length prefix.
        let e = read_frame(&mut &buf[..2]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn frames_over_the_limit_are_refused_on_both_sides() {
        // A corrupted length is refused before anything is allocated.
        let huge = u32::MAX.to_le_bytes();
        let e = read_frame(&mut huge.as_slice()).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let over = u32::try_from(MAX_FRAME + 1).unwrap().to_le_bytes();
        assert!(read_frame(&mut over.as_slice()).is_err());
        // At the limit is fine.
        let mut at = 8u32.to_le_bytes().to_vec();
        at.extend_from_slice(b"12345678");
        assert_eq!(
            read_frame_max(&mut at.as_slice(), 8).unwrap().unwrap(),
            b"12345678"
        );
        assert!(read_frame_max(&mut at.as_slice(), 7).is_err());
        // The writer refuses what the reader would refuse, and writes nothing.
        let mut out = Vec::new();
        let e = write_bytes(&mut out, b"123456789", 8).unwrap_err();
        assert!(
            e.to_string().contains("frame of 9 bytes is too large"),
            "{e}"
        );
        assert!(out.is_empty());
        write_bytes(&mut out, b"12345678", 8).unwrap();
        assert_eq!(out.len(), 12);
    }

    #[cfg(unix)]
    #[test]
    fn exit_statuses_are_described_with_the_signal_name() {
        use std::os::unix::process::ExitStatusExt as _;
        use std::process::ExitStatus;
        // A raw wait status: the signal number in the low bits, an exit code in the next byte.
        let killed = |sig: i32| describe_status(ExitStatus::from_raw(sig));
        assert_eq!(
            killed(libc::SIGSEGV),
            format!(
                "killed by signal {} (SIGSEGV: the plugin crashed)",
                libc::SIGSEGV
            )
        );
        assert_eq!(
            killed(libc::SIGABRT),
            format!("killed by signal {} (SIGABRT)", libc::SIGABRT)
        );
        for (sig, name) in [
            (libc::SIGILL, "SIGILL"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
        ] {
            assert_eq!(killed(sig), format!("killed by signal {sig} ({name})"));
        }
        assert_eq!(
            killed(libc::SIGTERM),
            format!("killed by signal {}", libc::SIGTERM)
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exited with exit status: 3"
        );
    }
}
