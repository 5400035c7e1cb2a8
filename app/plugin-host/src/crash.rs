//! A trace for in-process plugin crashes. Each in-process call records, for its thread, which
//! plugin and component it is in (a pointer set on entry and restored after: cheap enough for
//! per-token sampler calls). Fatal-signal handlers (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT),
//! installed once with `sigaction` on the alternate signal stack, write
//! "plugin <name> (<lib>) crashed in <kind> <component> (<signal>)" with `write(2)` to stderr
//! and to the crash log of the run ([`set_crash_log`]), then hand the signal to the previous
//! action, so the process still dies of it. The launcher reports the log at the next start.

use std::cell::Cell;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Once;

/// The crash log's file name in a run folder.
pub const CRASH_LOG: &str = "plugin-crash.log";

/// What a crash in one component's calls reports (leaked: one per instantiated component).
pub(crate) struct CallSite {
    msg: Box<[u8]>,
}

impl CallSite {
    pub(crate) fn leak(plugin: &str, lib: &Path, kind: &str, component: &str) -> &'static Self {
        let lib = lib.file_name().map_or_else(
            || lib.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        let msg = format!("plugin {plugin} ({lib}) crashed in {kind} {component}");
        // Kept short so the handler's fixed buffer always holds it.
        let msg: String = msg.chars().take(400).collect();
        Box::leak(Box::new(Self {
            msg: msg.into_bytes().into_boxed_slice(),
        }))
    }
}

thread_local! {
    static CURRENT: Cell<*const CallSite> = const { Cell::new(std::ptr::null()) };
}

/// Restores the thread's previous call site when dropped.
pub(crate) struct Entered(*const CallSite);

impl Drop for Entered {
    fn drop(&mut self) {
        let prev = self.0;
        let _ = CURRENT.try_with(|c| c.set(prev));
    }
}

/// Marks this thread as inside a call of `site` until the guard is dropped.
pub(crate) fn enter(site: &'static CallSite) -> Entered {
    install();
    let prev = CURRENT
        .try_with(|c| c.replace(site as *const CallSite))
        .unwrap_or(std::ptr::null());
    Entered(prev)
}

/// The crash log path (a leaked C string), null = none.
static LOG_PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Where the handler also writes the crash line: the run folder's [`CRASH_LOG`] (`None`: only
/// stderr). The file is created only when a plugin crashes.
pub fn set_crash_log(path: Option<&Path>) {
    let new = path
        .and_then(|p| CString::new(p.as_os_str().as_bytes()).ok())
        .map_or(std::ptr::null_mut(), CString::into_raw);
    // The previous string is leaked: a handler may be reading it right now.
    LOG_PATH.store(new, Ordering::SeqCst);
}

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// The actions the handlers replaced, by index in [`SIGNALS`].
static mut PREVIOUS: [std::mem::MaybeUninit<libc::sigaction>; 5] =
    [std::mem::MaybeUninit::uninit(); 5];

static INSTALL: Once = Once::new();

/// Installs the handlers once (and an alternate signal stack for this thread if it has none;
/// threads started by std have one).
fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain libc calls on zeroed/valid structs; PREVIOUS is written only here,
        // before any handler can read it (the handler is installed after its slot is filled).
        unsafe {
            ensure_altstack();
            for (i, &sig) in SIGNALS.iter().enumerate() {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_fatal as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut act.sa_mask);
                let prev = &raw mut PREVIOUS[i];
                libc::sigaction(sig, &act, (*prev).as_mut_ptr());
            }
        }
    });
}

/// # Safety
/// Plain libc calls.
unsafe fn ensure_altstack() {
    // SAFETY: querying and setting this thread's alternate stack with valid pointers.
    unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) == 0
            && cur.ss_flags & libc::SS_DISABLE == 0
        {
            return;
        }
        let size = 64 * 1024;
        let mem = Box::leak(vec![0u8; size].into_boxed_slice());
        let st = libc::stack_t {
            ss_sp: mem.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&st, std::ptr::null_mut());
    }
}

fn signal_name(sig: libc::c_int) -> &'static [u8] {
    match sig {
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGILL => b"SIGILL",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGABRT => b"SIGABRT",
        _ => b"signal",
    }
}

/// Copies `parts` into `buf`; returns the length (truncated to fit).
fn assemble(buf: &mut [u8], parts: &[&[u8]]) -> usize {
    let mut n = 0;
    for p in parts {
        let take = p.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&p[..take]);
        n += take;
    }
    n
}

/// Async-signal-safe: only `write`, `open`, `close`, `sigaction` and `raise`.
extern "C" fn on_fatal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let site = CURRENT.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    if !site.is_null() {
        // SAFETY: call sites are leaked, never freed.
        let msg: &[u8] = unsafe { &(*site).msg };
        let mut buf = [0u8; 512];
        let n = assemble(&mut buf, &[msg, b" (", signal_name(sig), b")\n"]);
        // SAFETY: write(2) of a valid buffer; open/close of a leaked C string.
        unsafe {
            libc::write(2, b"error: ".as_ptr().cast(), 7);
            libc::write(2, buf.as_ptr().cast(), n);
            let path = LOG_PATH.load(Ordering::SeqCst);
            if !path.is_null() {
                let fd = libc::open(
                    path,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                    0o644 as libc::c_uint,
                );
                if fd >= 0 {
                    libc::write(fd, buf.as_ptr().cast(), n);
                    libc::close(fd);
                }
            }
        }
    }
    let i = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    // SAFETY: restores the action this handler replaced (filled before it was installed).
    unsafe {
        let prev = &raw const PREVIOUS[i];
        libc::sigaction(sig, (*prev).as_ptr(), std::ptr::null_mut());
        // A fault re-occurs when the handler returns; a signal sent (raise, abort, kill) is sent
        // again, to be delivered under the previous action once the handler returns.
        if info.is_null() || (*info).si_code <= 0 {
            libc::raise(sig);
        }
    }
}
