//! The `Process <name>:` line a child prints above an uncaught error, as
//! Python prints it above a child's traceback. Its own file, naming nothing,
//! so that both the start (`child.rs`) and the targets (`target.rs`) use it.

use std::sync::Mutex;

/// This child's header; `None` in the main process.
static HEADER: Mutex<Option<String>> = Mutex::new(None);

/// Records the name of the child this process has become.
pub(crate) fn set(name: &str) {
    *HEADER.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("Process {name}:"));
}

/// The header to print above an uncaught error; `None` in the main process.
pub(crate) fn get() -> Option<String> {
    // `try_lock`: a panic raised while the header is being set must not
    // deadlock its own hook.
    HEADER.try_lock().ok()?.clone()
}

/// Makes a panic in this (child) process print its header on stderr before
/// the panic message. Installed once: a forked child inherits the hook,
/// which reads the header at the time of the panic.
pub(crate) fn name_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(header) = get() {
                eprintln!("{header}");
            }
            previous(info)
        }));
    });
}
