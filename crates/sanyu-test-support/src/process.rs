//! The real service binaries, run as child processes with their own env.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// Path of a workspace binary next to the running test (`target/<profile>/<name>`).
/// The test command builds them first (`cargo build --workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe
        .parent()
        .map(std::path::Path::to_path_buf)
        .expect("exe dir");
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
        path.display()
    );
    path
}

pub struct ServiceProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl ServiceProcess {
    /// Start binary `name` with `env` (added to a clean `SANYU_*`-free environment).
    pub fn spawn(name: &str, env: &[(String, String)]) -> Self {
        Self::spawn_path(name, &binary(name), env)
    }

    /// As [`Self::spawn`], the binary `name` from `dir` when given (e.g. an
    /// earlier release's binaries), else the workspace's.
    pub fn spawn_from(dir: Option<&std::path::Path>, name: &str, env: &[(String, String)]) -> Self {
        match dir {
            Some(dir) => Self::spawn_path(name, &dir.join(name), env),
            None => Self::spawn(name, env),
        }
    }

    fn spawn_path(name: &str, path: &std::path::Path, env: &[(String, String)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sanyu-proc-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut cmd = Command::new(path);
        for (k, _) in std::env::vars() {
            if k.starts_with("SANYU_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        let child = cmd.spawn().expect("spawn service");
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to ack, flush or drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after `deadline`).
    pub async fn terminate(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = kill(pid, Signal::SIGTERM);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running (`false` once it exited or was stopped).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.logs());
        }
        self.kill();
    }
}
